"""Ghost neck and head against plain ones, side by side in one run: detector FLOPs, CPU latency, demo mAP.

    .venv-deploy/bin/python benchmarks/ghost_head.py                     # every part (ORT needs the mmdeploy stack)
    .venv/bin/python benchmarks/ghost_head.py --parts flops latency      # without mmdeploy: eager latency only
    nohup .venv/bin/python benchmarks/ghost_head.py --parts demo > /tmp/logs/ghost_head_demo.log 2>&1 &

Each set is a config of ours with plain convs and its twins with ``conv_cfg=dict(type='GhostConv', ratio=s,
dw_size=3)`` in the FPN and the head: ``ghost`` (s=2, the paper's default) for every detector and ``ghost-s3`` (s=3)
for the RetinaNets (configs/ghost_head/, configs/demo/retinanet_ghostnet-ghost-head*_shapes.py).

Parts (``--parts``; each is written to the JSON as soon as it is done, and a part already there is skipped unless
``--force``, so an interrupted run resumes; the demo trainings are recorded one by one):

* ``flops``: tools/get_flops.py's measurement (``get_flops.measure``: tensor forward, random weights, batch 1) of
  both configs of every pair at 800x1333 (padded to 800x1344) and the demo pair also at its own 256x256; for the
  RetinaNet heads also which of the head's convs the FLOPs are in (stacked convs, output convs).
* ``latency``: end-to-end CPU latency, image file on disk -> boxes (benchmarks/deploy_benchmark.py's timing:
  warm-up, then interleaved rounds with a pause before each run; median and min) of RetinaNet-GhostNet-1.1x on a
  1333x800 JPEG (the test scale, no resize) and of the demo detector on a 256x256 one. Modes: ``eager``
  (``mmdet.apis.inference_detector``, eval mode) and, where mmdeploy is importable (.venv-deploy), ``ort-fp32``
  (``mmghost.deploy.Detector`` on the model exported by tools/deploy.py). Random weights (``init_weights()``).
  Two views: wall clock with ``--threads`` threads (with the share of the CPUs other processes used meanwhile:
  valid near 0), and the CPU time of each run with 1 thread (``time.process_time``), which other processes on a
  shared machine barely change. Recorded per torch version; a stack without mmdeploy records eager only, and
  .venv-deploy redoes the part with both modes interleaved.
* ``demo``: ``tools/demo.py --model ghostnet-ghost-head``, ``ghostnet-ghost-head-s3`` and ``ghostnet`` (the demo
  recipe: 600 shapes images, 12 epochs from scratch, COCO mAP on the 100 held-out ones), Ghost heads first, each in
  its own work dir under ``--work-dir``. About 11 minutes each on an idle 2-core machine.

Goals (issue 19), for each Ghost twin: FLOPs <= 0.6x plain and latency <= 0.7x plain (RetinaNet-GhostNet-1.1x at
800x1333); demo mAP within 0.02 of the plain head's.
"""
import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

PARTS = ('flops', 'latency', 'demo')
TWINS = {  # detector: {kind: config}, 'plain' first, then its Ghost neck + head twins (GhostConv ratio 2, 3)
    'retinanet-ghostnet-1.1x': {'plain': 'configs/retinanet_ghostnet_fpn.py',
                                'ghost': 'configs/ghost_head/retinanet_ghostnet_fpn_ghost-head.py',
                                'ghost-s3': 'configs/ghost_head/retinanet_ghostnet_fpn_ghost-head-s3.py'},
    'faster-rcnn-ghostnet-1.1x': {'plain': 'configs/faster_rcnn_ghostnet_fpn.py',
                                  'ghost': 'configs/ghost_head/faster-rcnn_ghostnet_fpn_ghost-head.py'},
    'demo': {'plain': 'configs/demo/retinanet_ghostnet_shapes.py',
             'ghost': 'configs/demo/retinanet_ghostnet-ghost-head_shapes.py',
             'ghost-s3': 'configs/demo/retinanet_ghostnet-ghost-head-s3_shapes.py'},
}
COCO_SHAPE = (800, 1333)
DEMO_SHAPE = (256, 256)
LATENCY = {'retinanet-ghostnet-1.1x': (1333, 800), 'demo': (256, 256)}  # pair: JPEG (W, H)
DEMO_MODELS = {'ghost-head': 'ghostnet-ghost-head', 'ghost-head-s3': 'ghostnet-ghost-head-s3',
               'plain': 'ghostnet'}  # tools/demo.py --model
GOALS = dict(flops_ratio=0.6, latency_ratio=0.7, demo_map_drop=0.02)
HEAD_CONVS = ('cls_convs', 'reg_convs', 'retina_cls', 'retina_reg')


def ghost_kinds(pair):
    """The Ghost twins of ``pair`` ('ghost', 'ghost-s3'), in TWINS' order."""
    return [kind for kind in TWINS[pair] if kind != 'plain']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Ghost neck + head vs plain: FLOPs, CPU latency, demo mAP')
    parser.add_argument('--parts', nargs='+', choices=PARTS, default=list(PARTS))
    parser.add_argument('--force', action='store_true', help='redo parts already recorded in --out')
    parser.add_argument('--repeats', type=int, default=7, help='timed runs per mode (default 7)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed runs per mode first (default 1)')
    parser.add_argument('--threads', type=int, default=2, help='torch / ONNX Runtime / OpenCV threads (default 2)')
    parser.add_argument('--demo-models', nargs='+', choices=list(DEMO_MODELS), default=list(DEMO_MODELS),
                        help='which demo detectors to train, in this order (default: ghost-head plain)')
    parser.add_argument('--demo-threads', type=int,
                        help='OMP/MKL threads of the demo trainings (default: torch\'s own; on a machine shared '
                        'with other jobs, 1 avoids the OpenMP threads waiting on each other)')
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results', 'ghost_head.json'))
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'ghost_head'))
    parser.add_argument('--print', action='store_true', help='only print the tables of --out')
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        parser.error('need --repeats >= 1, --warmup >= 0, --threads >= 1')
    return args


# ---------------------------------------------------------------------------------------------------- results file
@contextlib.contextmanager
def _locked(path):
    """Several runs of this script (a background demo training, a latency run) may share the JSON file."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    # The lock file lives in the temp dir, not next to the results (which are committed).
    name = hashlib.sha1(osp.abspath(path).encode()).hexdigest()[:12]
    with open(osp.join(tempfile.gettempdir(), f'mmghost-results-{name}.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_results(path):
    if not osp.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def record(path, keys, value):
    """Set ``results[keys[0]][keys[1]]...`` in the JSON file to ``value`` (read, merge, atomic write)."""
    with _locked(path):
        results = load_results(path)
        node = results
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        results['goals'] = goals(results)
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, path)
    return results


def stack():
    import torch
    return dict(python=platform.python_version(), torch=torch.__version__, threads=torch.get_num_threads(),
                cpu_count=os.cpu_count(), load_average=[round(x, 2) for x in os.getloadavg()],
                date=time.strftime('%Y-%m-%d %H:%M:%S'))


# ------------------------------------------------------------------------------------------------------------ FLOPs
def head_breakdown(config, shape):
    """FLOPs of a RetinaHead's conv groups at ``shape`` (padded to a multiple of 32), on the neck's features."""
    import math

    import torch
    from mmengine.analysis import FlopAnalyzer

    from mmghost.engine import build_detector, load_config
    model = build_detector(load_config(config)).eval()
    h, w = (int(math.ceil(s / 32) * 32) for s in shape)
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, h, w))
        analyzer = (FlopAnalyzer(model.bbox_head, (feats, )).unsupported_ops_warnings(False)
                    .uncalled_modules_warnings(False).tracer_warnings('none'))
        by_module, total = analyzer.by_module(), analyzer.total()
    return dict(total=total, **{name: by_module.get(name, 0) for name in HEAD_CONVS})


def run_flops(args):
    from tools import get_flops
    out = dict(stack=stack(), command='tools/get_flops.py CONFIG --shape H W (get_flops.measure)')
    for pair, configs in TWINS.items():
        shapes = [COCO_SHAPE] + ([DEMO_SHAPE] if pair == 'demo' else [])
        rows = {}
        for shape in shapes:
            row = {}
            for kind, config in configs.items():
                print(f'[flops] {pair} {kind} at {shape[0]}x{shape[1]}', flush=True)
                m = get_flops.measure(osp.join(ROOT, config), shape=shape)
                row[kind] = dict(config=config, input_shape=m['detector']['input_shape'],
                                 flops=m['detector']['flops'], params=m['detector']['params'],
                                 parts={p['name']: p['flops'] for p in m['detector']['parts']},
                                 backbone_flops_224=m['backbone']['flops'], backbone_params=m['backbone']['params'])
                if 'retinanet' in config and shape == COCO_SHAPE:
                    row[kind]['head_convs'] = head_breakdown(osp.join(ROOT, config), shape)
            for kind in ghost_kinds(pair):
                row[kind]['ratio'] = round(row[kind]['flops'] / row['plain']['flops'], 4)
                row[kind]['params_ratio'] = round(row[kind]['params'] / row['plain']['params'], 4)
            rows[f'{shape[0]}x{shape[1]}'] = row
        out[pair] = rows
    return out


# ---------------------------------------------------------------------------------------------------------- latency
def _have_mmdeploy():
    try:
        import mmdeploy  # noqa: F401
    except ImportError:
        return False
    return True


def prepare(config, work, size, export_onnx):
    """Eval model with random weights (model.cfg set for inference_detector), its checkpoint, the test image and,
    with ``export_onnx``, tools/deploy.py's export of it."""
    import logging

    import torch
    from mmdet.datasets import CocoDataset
    from mmengine.logging import MMLogger

    from benchmarks.deploy_benchmark import synthetic_image
    from mmghost.engine import build_detector, load_config
    os.makedirs(work, exist_ok=True)
    cfg = load_config(config)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = build_detector(cfg)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter
    model.init_weights()  # RetinaNet's classification prior, as a trained model's score range
    logger.setLevel(level)
    model.cfg = cfg
    model.eval()
    image = synthetic_image(osp.join(work, 'image.jpg'), size, seed=0)
    prepared = dict(model=model, image=image)
    if export_onnx:
        from tools.deploy import export
        checkpoint = osp.join(work, 'random.pth')
        classes = cfg.test_dataloader.dataset.get('metainfo', {}).get('classes') or CocoDataset.METAINFO['classes']
        torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': dict(classes=list(classes))}},
                   checkpoint)
        prepared['export'] = export(config, checkpoint, osp.join(work, 'onnx'))
        prepared['model_dir'] = osp.join(work, 'onnx')
    return prepared


def cpu_time_modes(cases, repeats, warmup):
    """CPU seconds this process spends per run of each case (warm-up, then interleaved rounds): with one thread
    that is the run's own work, which other processes on the machine barely change (its wall time they do)."""
    from benchmarks.benchmark import summarize
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times = {mode: [] for mode in cases}
    for _ in range(repeats):
        for mode, fn in cases.items():
            start = time.process_time()
            fn()
            times[mode].append(time.process_time() - start)
    return {mode: {k.replace('_ms', '_cpu_ms'): round(v, 1) for k, v in summarize(t).items()}
            for mode, t in times.items()}


def run_latency(args):
    import cv2
    import torch
    from mmdet.apis import inference_detector

    from benchmarks.deploy_benchmark import time_modes
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    ort = _have_mmdeploy()
    out = dict(stack=stack(), repeats=args.repeats, warmup=args.warmup,
               weights='random (init_weights), untrained', detectors={})
    for pair, size in LATENCY.items():
        cases, single, exports = {}, {}, {}
        for kind, config in TWINS[pair].items():
            print(f'[latency] {pair} {kind}: preparing{" and exporting" if ort else ""}', flush=True)
            p = prepare(osp.join(ROOT, config), osp.join(args.work_dir, 'latency', pair, kind), size, ort)
            cases[f'eager/{kind}'] = single[f'eager/{kind}'] = (
                lambda p=p: len(inference_detector(p['model'], p['image']).pred_instances))
            if ort:
                from mmghost.deploy import Detector
                for threads, target in ((args.threads, cases), (1, single)):
                    detector = Detector(p['model_dir'], precision='fp32', num_threads=threads)
                    target[f'ort-fp32/{kind}'] = lambda d=detector, p=p: len(d(p['image']).boxes)
                exports[kind] = dict(seconds=p['export']['seconds'], megabytes=p['export']['megabytes'],
                                     ops=p['export']['ops'])
        print(f'[latency] {pair}: timing {", ".join(cases)} ({args.threads} threads, wall clock)', flush=True)
        modes, others = time_modes(cases, args.repeats, args.warmup)
        print(f'[latency] {pair}: timing {", ".join(single)} (1 thread, CPU time)', flush=True)
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        cpu = cpu_time_modes(single, args.repeats, args.warmup)
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
        row = dict(image=f'{size[0]}x{size[1]} JPEG', modes=modes, others_cpu_share=others, cpu_1_thread=cpu,
                   exports=exports)
        for runtime in ('eager', 'ort-fp32'):
            if f'{runtime}/plain' not in modes:
                continue
            for kind in ghost_kinds(pair):
                plain, ghost = modes[f'{runtime}/plain'], modes[f'{runtime}/{kind}']
                row[f'{runtime}/{kind} ratio (medians)'] = round(ghost['median_ms'] / plain['median_ms'], 3)
                row[f'{runtime}/{kind} ratio (mins)'] = round(ghost['min_ms'] / plain['min_ms'], 3)
                plain, ghost = cpu[f'{runtime}/plain'], cpu[f'{runtime}/{kind}']
                row[f'{runtime}/{kind} ratio (1-thread CPU time, medians)'] = round(
                    ghost['median_cpu_ms'] / plain['median_cpu_ms'], 3)
        out['detectors'][pair] = row
    return out


# ------------------------------------------------------------------------------------------------------------- demo
def run_demo(name, args):
    work_dir = osp.join(args.work_dir, f'demo_{name}')
    cmd = [sys.executable, 'tools/demo.py', '--model', DEMO_MODELS[name], '--work-dir', work_dir]
    env = dict(os.environ)
    if args.demo_threads:
        env.update(OMP_NUM_THREADS=str(args.demo_threads), MKL_NUM_THREADS=str(args.demo_threads))
    print(f'[demo] {name}: {" ".join(cmd)} (threads: {args.demo_threads or "default"})', flush=True)
    before = stack()
    before['threads'] = args.demo_threads or 'default'
    subprocess.run(cmd, cwd=ROOT, check=True, env=env)
    with open(osp.join(work_dir, 'demo_summary.json')) as f:
        summary = json.load(f)
    summary['stack'] = before
    summary['load_average_end'] = [round(x, 2) for x in os.getloadavg()]
    summary['command'] = ' '.join(['python'] + cmd[1:])
    return summary


# ------------------------------------------------------------------------------------------------------ goals/print
def goals(results):
    out = {}
    pair = 'retinanet-ghostnet-1.1x'
    flops = results.get('flops', {}).get(pair, {}).get('800x1333')
    for kind in ghost_kinds(pair):
        if flops and kind in flops:
            ratio = flops[kind]['ratio']
            out[f'{kind}: flops <= 0.6x (RetinaNet-GhostNet-1.1x, 800x1333)'] = dict(
                value=ratio, met=ratio <= GOALS['flops_ratio'])
    for torch_version, run in sorted(results.get('latency', {}).items()):
        row = run['detectors'].get(pair, {})
        for kind in ghost_kinds(pair):
            for runtime in ('eager', 'ort-fp32'):
                if f'{runtime}/{kind} ratio (medians)' in row:
                    value = row[f'{runtime}/{kind} ratio (medians)']
                    out[f'{kind}: {runtime} latency <= 0.7x (RetinaNet-GhostNet-1.1x, 1333x800, {torch_version})'] = (
                        dict(value=value, min_ratio=row[f'{runtime}/{kind} ratio (mins)'],
                             met=value <= GOALS['latency_ratio'], others_cpu_share=row['others_cpu_share']))
                key = f'{runtime}/{kind} ratio (1-thread CPU time, medians)'
                if key in row:
                    value = row[key]
                    out[f'{kind}: {runtime} 1-thread CPU time <= 0.7x (RetinaNet-GhostNet-1.1x, 1333x800, '
                        f'{torch_version})'] = dict(value=value, met=value <= GOALS['latency_ratio'])
    demo = results.get('demo', {})
    for name in DEMO_MODELS:
        if name != 'plain' and name in demo and 'plain' in demo:
            drop = round(demo['plain']['bbox_mAP'] - demo[name]['bbox_mAP'], 4)
            out[f'{name}: demo mAP within 0.02 (plain - Ghost head)'] = dict(value=drop,
                                                                             met=drop <= GOALS['demo_map_drop'])
    return out


def print_tables(results):
    flops = results.get('flops')
    if flops:
        print('\n| detector | input | twin | GFLOPs | ratio to plain | params | ratio to plain |')
        print('|---|---|---|---:|---:|---:|---:|')
        for pair in TWINS:
            for shape, row in flops.get(pair, {}).items():
                for kind in TWINS[pair]:
                    if kind not in row:
                        continue
                    r = row[kind]
                    h, w = r['input_shape'][2:]
                    print(f'| {pair} | {h}x{w} | {kind} | {r["flops"] / 1e9:.2f} | {r.get("ratio", 1):.3f} | '
                          f'{r["params"] / 1e6:.2f}M | {r.get("params_ratio", 1):.3f} |')
        print('\n| detector, 800x1344 | part | ' + ' | '.join(f'{k} GFLOPs' for k in TWINS['retinanet-ghostnet-1.1x'])
              + ' |')
        print('|---|---|' + '---:|' * len(TWINS['retinanet-ghostnet-1.1x']))
        for pair in ('retinanet-ghostnet-1.1x', 'faster-rcnn-ghostnet-1.1x'):
            row = flops.get(pair, {}).get('800x1333')
            if not row:
                continue
            kinds = [k for k in TWINS[pair] if k in row]
            for part in row['plain']['parts']:
                print(f'| {pair} | {part} | ' + ' | '.join(f'{row[k]["parts"][part] / 1e9:.2f}' for k in kinds)
                      + ' |')
            if 'head_convs' in row['plain']:
                for name in HEAD_CONVS:
                    print(f'| {pair} | bbox_head.{name} | '
                          + ' | '.join(f'{row[k]["head_convs"][name] / 1e9:.2f}' for k in kinds) + ' |')
    for torch_version, run in sorted(results.get('latency', {}).items()):
        s = run['stack']
        print(f'\nLatency, torch {s["torch"]}, {s["threads"]} threads, {run["repeats"]} runs after {run["warmup"]} '
              f'warm-up, load average {s["load_average"]} at start; median (min) ms, image file -> boxes')
        print('| detector | image | mode | twin | median (min) ms | ratio of medians (mins) | others\' CPU share | '
              '1-thread CPU ms | ratio |')
        print('|---|---|---|---|---:|---:|---:|---:|---:|')
        for pair, row in run['detectors'].items():
            for runtime in ('eager', 'ort-fp32'):
                for kind in TWINS[pair]:
                    mode = f'{runtime}/{kind}'
                    if mode not in row['modes']:
                        continue
                    m = row['modes'][mode]
                    ratio = ('1' if kind == 'plain' else f'{row[f"{mode} ratio (medians)"]:.2f} '
                             f'({row[f"{mode} ratio (mins)"]:.2f})')
                    cpu = row['cpu_1_thread'][mode]['median_cpu_ms']
                    cpu_ratio = ('1' if kind == 'plain'
                                 else f'{row[f"{mode} ratio (1-thread CPU time, medians)"]:.2f}')
                    print(f'| {pair} | {row["image"]} | {runtime} | {kind} | {m["median_ms"]:.0f} ({m["min_ms"]:.0f}) '
                          f'| {ratio} | {row["others_cpu_share"]} | {cpu:.0f} | {cpu_ratio} |')
    demo = results.get('demo')
    if demo:
        print('\n| demo detector | bbox mAP | mAP@0.5 | training s | load average at start |')
        print('|---|---:|---:|---:|---|')
        for name, row in demo.items():
            print(f'| {name} | {row["bbox_mAP"]:.3f} | {row["bbox_mAP_50"]:.3f} | {row["seconds"]["train"]} | '
                  f'{row["stack"]["load_average"]} |')
    print('\nGoals:')
    for name, goal in goals(results).items():
        print(f'  {name}: {goal["value"]} -> {"met" if goal["met"] else "NOT met"}')


def main(argv=None):
    args = parse_args(argv)
    if args.print:
        print_tables(load_results(args.out))
        return
    import torch
    torch.set_num_threads(args.threads)
    command = ' '.join(sys.argv[1:] if argv is None else argv)
    record(args.out, ['commands', time.strftime('%Y-%m-%dT%H:%M:%S')],
           f'{osp.relpath(sys.executable, ROOT)} benchmarks/ghost_head.py {command}'.strip())
    done = load_results(args.out)
    if 'flops' in args.parts:
        if 'flops' in done and not args.force:
            print('[flops] recorded already (--force redoes it)')
        else:
            record(args.out, ['flops'], run_flops(args))
    if 'latency' in args.parts:
        key = f'torch-{torch.__version__}'
        recorded = done.get('latency', {}).get(key)
        retinanet = (recorded or {}).get('detectors', {}).get('retinanet-ghostnet-1.1x', {})
        modes = retinanet.get('modes', {})
        runtimes = ('eager', 'ort-fp32') if _have_mmdeploy() else ('eager', )
        complete = all(f'{runtime}/{kind}' in modes for runtime in runtimes
                       for kind in TWINS['retinanet-ghostnet-1.1x'])
        if complete and not args.force:
            print(f'[latency] recorded already for {key} (--force redoes it)')
        else:
            record(args.out, ['latency', key], run_latency(args))
    if 'demo' in args.parts:
        for name in args.demo_models:
            if name in done.get('demo', {}) and not args.force:
                print(f'[demo] {name}: recorded already (--force redoes it)')
                continue
            record(args.out, ['demo', name], run_demo(name, args))
    print_tables(load_results(args.out))
    print(f'\nwrote {args.out}')


if __name__ == '__main__':
    main()
