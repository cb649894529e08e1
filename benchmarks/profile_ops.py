"""Where the time goes: GhostNet against mmdet's MobileNetV2, per op type, in ONNX Runtime, OpenVINO and PyTorch.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv-deploy/bin/python benchmarks/profile_ops.py            # all cases
    PYTHONPATH=$PWD .venv-deploy/bin/python benchmarks/profile_ops.py --cases 320 --forms plain split --runs 5

Cases (1 thread, fp32, batch 1, random weights; BN statistics randomised so that folding does something):

* ``800x1344``: GhostNet-1.1x (RetinaNet's width) against MobileNetV2;
* ``320``: GhostNet-1.0x (SSDLite's width) against MobileNetV2 at 320x320.

GhostNet has ``out_indices=(2, 3, 4)`` and MobileNetV2 mmdet's ``(2, 4, 6)``: the same strides 8, 16, 32. GhostNet
is put in deploy mode NCHW (``mmghost.models.deploy_model(channels_last=False, form=...)``, one model per
``--forms`` entry, :mod:`mmghost.models.deploy_forms`), MobileNetV2's BNs are folded (mmcv ``fuse_conv_bn``); both
are exported with ``torch.onnx.export`` (opset 13, static shape). Profiles:

* ONNX Runtime: ``SessionOptions.enable_profiling``; the ``*_kernel_time`` events of the timed runs (after the
  warm-up) summed by ``op_name`` (after ORT's graph optimisations: ``ReorderInput``/``ReorderOutput`` are the
  blocked-layout conversions its NCHWc transformer inserts);
* OpenVINO (if importable): compiled with ``PERF_COUNT``; ``infer_request.get_profiling_info()`` summed by
  ``node_type`` and by ``exec_type`` (the kernel implementation, e.g. ``jit_avx512_FP32``, ``ref``);
* PyTorch: ``torch.profiler`` on the eager deploy mode (GhostNet: ``deploy_model()``'s default, channels_last on
  the CPU; MobileNetV2: BN folded, NCHW), self CPU time by ``aten::`` op.

Writes ``benchmarks/results/profile_ops.json``: per case and model the exported graph's conv work (GMACs, conv
nodes) and per runtime the median time per run and the time and share per op type. The machine may be shared: the shares are what to read, the absolute times drift.
"""
import argparse
import collections
import json
import os
import os.path as osp
import platform
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

CASES = {'800x1344': dict(shape=(800, 1344), widen=1.1), '320': dict(shape=(320, 320), widen=1.0)}
GHOSTNET_OUT_INDICES = (2, 3, 4)  # strides 8, 16, 32, as MobileNetV2's (2, 4, 6)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cases', nargs='+', default=list(CASES), choices=list(CASES))
    parser.add_argument('--forms', nargs='+', default=['plain', 'split'], help='GhostNet deploy forms to profile')
    parser.add_argument('--runtimes', nargs='*', default=['ort', 'openvino', 'torch'],
                        choices=['ort', 'openvino', 'torch'], help='none: only count the exported graphs\' conv work')
    parser.add_argument('--runs', type=int, default=8, help='profiled runs per model (after 2 warm-up runs)')
    parser.add_argument('--onnx', nargs='+', metavar='FILE',
                        help='profile these exported graphs instead (e.g. the detectors benchmarks/latency.py '
                        'exported under work_dirs/latency/full/*/*/model/end2end.onnx), input --shape')
    parser.add_argument('--shape', type=int, nargs=2, default=(320, 320), metavar=('H', 'W'),
                        help='input of the --onnx graphs (default: 320 320)')
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results', 'profile_ops.json'))
    return parser.parse_args(argv)


def randomize_norms(model, seed=0):
    """Random BN statistics and affine parameters (a trained network's norms are not the identity)."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.num_features, generator=generator) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=generator) * 0.2 - 0.1)
    return model


def build_ghostnet(widen, form, channels_last=False, block=16):
    from mmghost.models import GhostNet, deploy_model
    model = randomize_norms(GhostNet(widen_factor=widen, out_indices=GHOSTNET_OUT_INDICES)).eval()
    return deploy_model(model, channels_last=channels_last, form=form, block=block)


def build_mobilenetv2():
    from mmcv.cnn.utils import fuse_conv_bn
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    model = MODELS.build(dict(type='MobileNetV2', out_indices=(2, 4, 6)))
    model.eval()  # mmdet's MobileNetV2.train() returns None
    return fuse_conv_bn(randomize_norms(model))


def build_models(case, forms):
    """name -> (eager deploy model to profile in PyTorch, NCHW model to export)."""
    widen = CASES[case]['widen']
    models = {}
    for form in forms:
        models[f'ghostnet-{widen}x-{form}'] = (build_ghostnet(widen, 'plain', channels_last=None)
                                              if form == 'plain' else None, build_ghostnet(widen, form))
    mobilenet = build_mobilenetv2()
    models['mobilenetv2'] = (mobilenet, mobilenet)
    return models


def export_onnx(model, shape, path):
    import torch
    from tools.export_onnx import LEGACY_EXPORTER
    x = torch.randn(1, 3, *shape)
    with torch.no_grad():
        torch.onnx.export(model, x, path, opset_version=13, input_names=['input'], do_constant_folding=True,
                          **LEGACY_EXPORTER)
    return path


def conv_work(path):
    """Multiply-accumulates of the graph's convs (output elements x input channels per group x kernel area, from
    ONNX shape inference: what a runtime computes, zero channels included) and the number of conv nodes."""
    import numpy as np
    import onnx
    model = onnx.shape_inference.infer_shapes(onnx.load(path))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.output)}
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == 'Conv']
    macs = sum(int(np.prod(shapes[n.output[0]])) * int(np.prod(weights[n.input[1]][1:])) for n in convs)
    return dict(conv_gmacs=round(macs / 1e9, 3), conv_nodes=len(convs), nodes=len(model.graph.node))


def ort_session(path, profile=False, level=None):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if level is not None:
        options.graph_optimization_level = level
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = osp.join(osp.dirname(path), osp.basename(path) + '_profile')
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def openvino_model(path, perf_count=False):
    import openvino as ov
    config = {'INFERENCE_NUM_THREADS': 1, 'NUM_STREAMS': 1, 'PERFORMANCE_HINT': 'LATENCY',
              'INFERENCE_PRECISION_HINT': 'f32'}
    if perf_count:
        config['PERF_COUNT'] = True
    return ov.Core().compile_model(path, 'CPU', config)


def shares(totals, runs):
    """{op: ms per run} and {op: share}, largest first."""
    total = sum(totals.values())
    ordered = sorted(totals.items(), key=lambda kv: -kv[1])
    return ({k: round(v / runs, 3) for k, v in ordered}, {k: round(v / total, 4) for k, v in ordered})


def profile_ort(path, x, runs):
    session = ort_session(path, profile=True)
    name = session.get_inputs()[0].name
    for _ in range(2):
        session.run(None, {name: x})
    for _ in range(runs):
        session.run(None, {name: x})
    with open(session.end_profiling()) as f:
        events = json.load(f)
    os.remove(f.name)
    windows = [(e['ts'], e['ts'] + e['dur']) for e in events if e.get('name') == 'model_run'][-runs:]
    totals, run_ms = collections.Counter(), [(b - a) / 1e3 for a, b in windows]
    for e in events:
        if e.get('cat') == 'Node' and e.get('name', '').endswith('_kernel_time'):
            if any(a <= e['ts'] <= b for a, b in windows):
                totals[e['args']['op_name']] += e['dur'] / 1e3
    ms, share = shares(totals, runs)
    return dict(run_ms=round(sorted(run_ms)[len(run_ms) // 2], 2), op_ms=ms, op_share=share)


def profile_openvino(path, x, runs):
    compiled = openvino_model(path, perf_count=True)
    request = compiled.create_infer_request()
    for _ in range(2):
        request.infer({0: x})
    by_type, by_exec, run_ms = collections.Counter(), collections.Counter(), []
    for _ in range(runs):
        start = time.perf_counter()
        request.infer({0: x})
        run_ms.append((time.perf_counter() - start) * 1e3)
        for info in request.get_profiling_info():
            ms = info.real_time.total_seconds() * 1e3
            by_type[info.node_type] += ms
            by_exec[info.exec_type] += ms
    type_ms, type_share = shares(by_type, runs)
    exec_ms, exec_share = shares(by_exec, runs)
    return dict(run_ms=round(sorted(run_ms)[len(run_ms) // 2], 2), op_ms=type_ms, op_share=type_share,
                exec_ms=exec_ms, exec_share=exec_share)


def profile_torch(model, x, runs):
    import torch
    from torch.profiler import ProfilerActivity, profile
    with torch.no_grad():
        for _ in range(2):
            model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                model(x)
    totals = collections.Counter()
    for event in prof.key_averages():
        if event.key.startswith('aten::'):
            totals[event.key] += event.self_cpu_time_total / 1e3
    ms, share = shares(totals, runs)
    return dict(run_ms=round(sum(totals.values()) / runs, 2), op_ms=ms, op_share=share)


def openvino_available():
    try:
        import openvino  # noqa: F401
        return True
    except ImportError:
        return False


def environment():
    import onnxruntime
    import torch
    env = dict(python=platform.python_version(), torch=torch.__version__, onnxruntime=onnxruntime.__version__,
               cpu=platform.processor() or platform.machine(), cpus=os.cpu_count(), threads=1)
    if openvino_available():
        import openvino
        env['openvino'] = openvino.__version__
    return env


def print_top(case, name, runtime, result, top=6):
    ops = ', '.join(f'{op} {share * 100:.0f}%' for op, share in list(result['op_share'].items())[:top])
    print(f'{case:9s} {name:24s} {runtime:9s} {result["run_ms"]:8.1f} ms  {ops}', flush=True)


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import torch
    torch.set_num_threads(1)
    import mmghost  # noqa: F401
    runtimes = [r for r in args.runtimes if r != 'openvino' or openvino_available()]
    if 'openvino' in args.runtimes and 'openvino' not in runtimes:
        print('openvino is not importable: its profile is skipped')
    results = dict(environment=environment(), command=' '.join(sys.argv), cases={})
    if args.onnx:  # graphs exported elsewhere (whole detectors): profile them as they are
        x = np.random.default_rng(0).standard_normal((1, 3, *args.shape)).astype(np.float32)
        case = 'x'.join(map(str, args.shape))
        results['cases'][case] = case_results = {}
        for path in args.onnx:
            name = osp.relpath(path, ROOT)
            case_results[name] = dict(graph=conv_work(path))
            if 'ort' in runtimes:
                case_results[name]['ort'] = profile_ort(path, x, args.runs)
            if 'openvino' in runtimes:
                case_results[name]['openvino'] = profile_openvino(path, x, args.runs)
            for runtime, result in case_results[name].items():
                if runtime != 'graph':
                    print_top(case, name, runtime, result)
        args.cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            shape = CASES[case]['shape']
            x = np.random.default_rng(0).standard_normal((1, 3, *shape)).astype(np.float32)
            results['cases'][case] = case_results = {}
            for name, (eager, exported) in build_models(case, args.forms).items():
                case_results[name] = {}
                path = export_onnx(exported, shape, osp.join(tmp, f'{case}-{name}.onnx'))
                case_results[name]['graph'] = conv_work(path)
                print(f'{case:9s} {name:24s} graph     {case_results[name]["graph"]}', flush=True)
                if 'ort' in runtimes:
                    case_results[name]['ort'] = profile_ort(path, x, args.runs)
                if 'openvino' in runtimes:
                    case_results[name]['openvino'] = profile_openvino(path, x, args.runs)
                if 'torch' in runtimes and eager is not None:
                    case_results[name]['torch'] = profile_torch(eager, torch.from_numpy(x), args.runs)
                for runtime, result in case_results[name].items():
                    if runtime != 'graph':
                        print_top(case, name, runtime, result)
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(results, f, indent=1)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
