"""CPU latency of the GhostNet family against MobileNetV2/V3: backbones and whole detectors, four runtimes, 1 and 2
threads, in one run. The figures users compare when they pick a backbone for speed (issue 26).

    .venv-deploy/bin/python benchmarks/latency.py                # the full run (about 13 minutes on 2 cores)
    .venv-deploy/bin/python benchmarks/latency.py --quick --out /tmp/latency.json   # tiny inputs: does it all run
    .venv-deploy/bin/python benchmarks/latency.py --report       # docs/benchmarks.md's table and picture from the JSON

Runs in the mmdeploy stack (``.venv-deploy``: torch 2.1.2, mmdet, mmdeploy, onnxruntime, openvino).

Rows (random weights; speed does not depend on them):

* Backbones at 800x1344 and 320x320, batch 1, run to their stride-32 features as the detection configs use them:
  GhostNet-1.0x/1.1x and GhostNetV2-1.0x (out_indices (2, 3, 4)), RepGhostNet-1.11x, mmdet's MobileNetV2
  (out_indices (2, 4, 6)) and mmpretrain's MobileNetV3-Large (strides 8/16/32: out_indices (6, 12, 16)) where it
  builds inside mmdet here. A backbone that cannot be built is listed in the JSON with the reason.
* Detectors, image file on disk -> boxes in its pixels: RetinaNet-GhostNet-1.1x with the plain head
  (configs/retinanet_ghostnet_fpn.py) and with the s=3 Ghost neck and head
  (configs/ghost_head/retinanet_ghostnet_fpn_ghost-head-s3.py) against RetinaNet-MobileNetV2, on a 1333x800 JPEG
  (the test scale: no resize); SSDLite-GhostNet (configs/ssdlite_ghostnet-1.0x_320.py) against mmdet's
  SSDLite-MobileNetV2, on a 640x480 JPEG resized to 320x320 (benchmarks/deploy_benchmark.py's detectors and images).

Runtimes:

* ``eager``: PyTorch in eval mode (detectors: ``mmdet.apis.inference_detector``).
* ``deploy``: PyTorch after ``mmghost.models.deploy_model`` (the family's deploy form, channels_last as it
  defaults; the Ghost head's norms folded); the MobileNets, which have no deploy form of ours, get their batch
  norms folded by ``mmcv.cnn.fuse_conv_bn``.
* ``onnxruntime`` and ``openvino``: ``mmghost.deploy``'s engines on the graphs the tools export: backbones by
  tools/export_onnx.py (``exportable(..., deploy=True)``, the peers without deploy mode as they are: both runtimes
  fold batch norms themselves), detectors by tools/deploy.py (``export`` then ``to_openvino``), run by
  ``mmghost.deploy.Detector``. OpenVINO compiles each graph for the input shape it is given (its engine's default).

Post-processing gets the same input size for every detector: ``score_thr=0`` (every box passes) and ``nms_pre`` as
the configs have it (1000 per level), so that each model hands its NMS the same number of candidates (RetinaNet: 1000
per level, 5 levels; both SSDLites: the same anchors) whatever its untrained scores, and keeps ``max_per_img`` boxes.
NMS's time still depends on how the boxes overlap: with random heads it differs between models (SSDLite at 320x320:
docs/deploy.md, "Where the time goes").

Timing: benchmarks/deploy_benchmark.py's ``time_modes``: every case warmed up, then rounds that run every case of a
block once, interleaved, with a pause before each run; medians (and mins). One block per input and thread count
(torch, OpenCV, ONNX Runtime and OpenVINO get the same number of threads); the ratios to the MobileNetV2 peer are
taken within a block. "Best" is a model's fastest runtime. The JSON records the share of the CPUs other processes
used while timing (valid near 0) and the load average.
"""
import argparse
import copy
import gc
import json
import logging
import os
import os.path as osp
import platform
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

RUNTIMES = ('eager', 'deploy', 'onnxruntime', 'openvino')
# name: backbone config (mmdet's registry). Family members and MobileNetV2 as the RetinaNet configs use them.
BACKBONES = {
    'GhostNet-1.0x': dict(type='GhostNet', widen_factor=1.0, out_indices=(2, 3, 4)),
    'GhostNet-1.1x': dict(type='GhostNet', widen_factor=1.1, out_indices=(2, 3, 4)),
    'GhostNetV2-1.0x': dict(type='GhostNetV2', widen_factor=1.0, out_indices=(2, 3, 4)),
    'RepGhostNet-1.11x': dict(type='RepGhostNet', widen_factor=1.11, out_indices=(2, 3, 4)),
    'MobileNetV2': dict(type='MobileNetV2', out_indices=(2, 4, 6)),
    'MobileNetV3-Large': dict(type='mmpretrain.MobileNetV3', arch='large', out_indices=(6, 12, 16)),
}
# The papers' ImageNet figures (224x224): (multiply-adds in millions, top-1 %, where). For the picture's labels.
PAPERS = {
    'GhostNet-1.0x': (141, 73.9, 'GhostNet (CVPR 2020), Table 7'),
    'GhostNet-1.1x': (164, None, 'GhostNet, Table 8 (detection backbone; no ImageNet top-1 published)'),
    'GhostNetV2-1.0x': (167, 75.3, 'GhostNetV2 (NeurIPS 2022)'),
    'RepGhostNet-1.11x': (170, 75.1, 'RepGhost (arXiv 2211.06088), the official README\'s table'),
    'MobileNetV2': (300, 72.0, 'MobileNetV2 (CVPR 2018), Table 4'),
    'MobileNetV3-Large': (219, 75.2, 'MobileNetV3 (ICCV 2019), Table 3'),
}
PEERS = {'backbone': 'MobileNetV2', 'retinanet': 'RetinaNet-MobileNetV2', 'ssdlite': 'SSDLite-MobileNetV2'}
DETECTORS = {  # name: (family, key in benchmarks/deploy_benchmark.py's DETECTORS or a config of ours)
    'RetinaNet-GhostNet-1.1x': ('retinanet', 'retinanet-ghostnet-1.1x'),
    'RetinaNet-GhostNet-1.1x-GhostHead-s3': ('retinanet', 'configs/ghost_head/retinanet_ghostnet_fpn_ghost-head-s3.py'),
    'RetinaNet-MobileNetV2': ('retinanet', 'retinanet-mobilenetv2'),
    'SSDLite-GhostNet-1.0x': ('ssdlite', 'ssdlite-ghostnet'),
    'SSDLite-MobileNetV2': ('ssdlite', 'ssdlite-mobilenetv2'),
}
# Blocks: what is timed together. (kind, family, full-run input, --quick input, full repeats); input (H, W) of the
# backbone tensor, or (W, H) of the detector's image. --quick detectors also get their test scale set to the image.
BLOCKS = {
    'backbones-800x1344': ('backbone', 'backbone', (800, 1344), (96, 128), 5),
    'backbones-320x320': ('backbone', 'backbone', (320, 320), (64, 64), 15),
    'retinanet-1333x800': ('detector', 'retinanet', (1333, 800), (128, 96), 3),
    'ssdlite-320x320': ('detector', 'ssdlite', (640, 480), (320, 240), 10),
}
# Goals of issue 26, all at 1 thread: (block, model, runtime or 'best', bound).
GOALS = {
    'GhostNet-1.1x backbone 800x1344, ONNX Runtime vs MobileNetV2\'s': ('backbones-800x1344', 'GhostNet-1.1x',
                                                                       'onnxruntime', 0.80),
    'GhostNet-1.1x backbone 800x1344, best vs best': ('backbones-800x1344', 'GhostNet-1.1x', 'best', 0.65),
    'GhostNet-1.0x backbone 320x320, best vs best': ('backbones-320x320', 'GhostNet-1.0x', 'best', 0.60),
    'SSDLite-GhostNet vs SSDLite-MobileNetV2, end to end, best vs best': ('ssdlite-320x320', 'SSDLite-GhostNet-1.0x',
                                                                          'best', 0.75),
    'RetinaNet-GhostNet-1.1x s=3 Ghost head vs RetinaNet-MobileNetV2, end to end, best vs best': (
        'retinanet-1333x800', 'RetinaNet-GhostNet-1.1x-GhostHead-s3', 'best', 0.60),
}
DOCS = osp.join(ROOT, 'docs', 'benchmarks.md')
PICTURE = osp.join(ROOT, 'docs', 'latency_flops.svg')
MARKERS = ('<!-- latency.py --report: begin -->', '<!-- latency.py --report: end -->')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='CPU latency: GhostNet family vs MobileNets, four runtimes')
    parser.add_argument('--quick', action='store_true', help='tiny inputs, 1 timed run: checks that everything runs')
    parser.add_argument('--blocks', nargs='+', choices=list(BLOCKS), default=list(BLOCKS))
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--repeats', type=int, help='timed runs per case in every block (default: per block)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed runs per case first (default 1)')
    parser.add_argument('--openvino-dynamic', action='store_true',
                        help='also time OpenVINO on the graph with dynamic input sizes as it is (runtime '
                        '"openvino-dynamic"), against its default of compiling it for the input shape')
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results', 'latency_cpu.json'))
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'latency'),
                        help='configs, checkpoints, images and exported models are written here')
    parser.add_argument('--report', action='store_true',
                        help=f'only write the table and picture of --out into {osp.relpath(DOCS, ROOT)}')
    args = parser.parse_args(argv)
    if (args.repeats is not None and args.repeats < 1) or args.warmup < 1 or min(args.threads) < 1:
        parser.error('need --repeats >= 1, --warmup >= 1 (OpenVINO compiles on its first run), --threads >= 1')
    return args


def quiet_logger():
    """mmengine's logger at WARNING (init_weights logs every parameter); returns the level to restore."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    return logger, level


def deploy_form(model):
    """``model`` (a detector or a backbone, eval mode) in its deploy form, in place; returns it and how."""
    from mmcv.cnn import fuse_conv_bn

    from mmghost.models import deploy_model
    backbone = getattr(model, 'backbone', model)
    if hasattr(backbone, 'switch_to_deploy'):
        return deploy_model(model), 'mmghost.models.deploy_model (channels_last as it defaults)'
    deploy_model(model)  # folds the norms of GhostConv layers, if any (none in the MobileNet peers)
    if backbone is model:
        return fuse_conv_bn(model), 'mmcv.cnn.fuse_conv_bn (batch norms folded)'
    model.backbone = fuse_conv_bn(backbone)
    return model, 'mmcv.cnn.fuse_conv_bn on the backbone (batch norms folded)'


def transposes(onnx_file):
    import onnx
    return sum(node.op_type == 'Transpose' for node in onnx.load(onnx_file, load_external_data=False).graph.node)


# ------------------------------------------------------------------------------------------------------- backbones
def build_backbone(name):
    """The backbone in eval mode, or the reason it cannot be built here."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    import mmghost.models  # noqa: F401  registers the family
    init_default_scope('mmdet')
    cfg = dict(BACKBONES[name])
    try:
        if cfg['type'].startswith('mmpretrain.'):
            import mmpretrain.models  # noqa: F401  registers mmpretrain's backbones (scope 'mmpretrain')
        model = MODELS.build(cfg)
        model.eval()  # not `MODELS.build(cfg).eval()`: mmdet's MobileNetV2.train() returns None
        return model, None
    except Exception as e:  # noqa: BLE001  (a missing package, an unregistered type: recorded, not fatal)
        return None, f'{type(e).__name__}: {e}'.splitlines()[0][:300]


def prepare_backbone(name, shapes, work):
    """Eval and deploy modules, the ONNX file the tools export, FLOPs at each shape; or the reason it cannot."""
    import torch.nn as nn

    from tools.export_onnx import DEFAULT_OPSET, export, exportable
    from tools.get_flops import backbone_complexity
    model, why = build_backbone(name)
    if model is None:
        return dict(skipped=why)
    deploy, how = deploy_form(copy.deepcopy(model))
    # FLOPs of what the deploy mode and the runtimes run: norms folded (as the papers count: no norms)
    flops = {f'{h}x{w}': backbone_complexity(copy.deepcopy(deploy), (h, w))['flops'] for h, w in shapes}
    holder = nn.Module()  # tools/export_onnx.py's exportable() takes a model with a backbone
    holder.backbone = copy.deepcopy(model)
    try:
        module, _ = exportable(holder, backbone_only=True, deploy=True)
        exported_as = 'tools/export_onnx.py --backbone-only --deploy'
    except ValueError:  # no deploy mode of ours: exported as it is; ONNX Runtime and OpenVINO fold its norms
        module, _ = exportable(holder, backbone_only=True, deploy=False)
        exported_as = 'tools/export_onnx.py --backbone-only'
    # exportable() returns `backbone.eval()`, which is None for mmdet's MobileNetV2 (its train() returns nothing)
    module = holder.backbone if module is None else module
    onnx_file = osp.join(work, f'{name}.onnx')
    start = time.perf_counter()
    # Traced at the smallest input (quicker); the graph takes any size (dynamic height and width)
    export(module, onnx_file, shape=min(shapes, key=lambda s: s[0] * s[1]), opset=DEFAULT_OPSET)
    return dict(model=model, deploy=deploy, deploy_variant=how, onnx=onnx_file,
                info=dict(flops=flops, deploy_variant=how, exported_as=exported_as,
                          export_seconds=round(time.perf_counter() - start, 1), onnx_transposes=transposes(onnx_file),
                          params=sum(p.numel() for p in model.parameters())))


def backbone_cases(prepared, shape, threads, openvino_dynamic=False):
    import numpy as np
    import torch

    from mmghost.deploy.engines import OnnxRuntimeEngine, OpenVINOEngine
    x = torch.rand(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    array = np.ascontiguousarray(x.numpy())
    cases = {}
    for name, p in prepared.items():
        if 'skipped' in p:
            continue

        def torch_case(module):
            def run():
                with torch.no_grad():
                    return len(module(x))
            return run

        cases[f'{name}|eager'] = torch_case(p['model'])
        cases[f'{name}|deploy'] = torch_case(p['deploy'])
        engines = [('onnxruntime', OnnxRuntimeEngine, {}), ('openvino', OpenVINOEngine, {})]
        if openvino_dynamic:
            engines.append(('openvino-dynamic', OpenVINOEngine, dict(static_shapes=False)))
        for runtime, engine, options in engines:
            built = engine(p['onnx'], num_threads=threads, **options)
            cases[f'{name}|{runtime}'] = lambda built=built: len(built(array))
    return cases


# ------------------------------------------------------------------------------------------------------- detectors
def detector_options(config, quick_scale=None):
    """--cfg-options that fix the post-processing (score_thr 0: every box passes) and, with ``quick_scale``
    (W, H), the test pipeline's resize."""
    from mmghost.engine import load_config
    options = {'model.test_cfg.score_thr': 0.0}
    if quick_scale is not None:
        pipeline = load_config(config).test_dataloader.dataset.pipeline
        index = next(i for i, t in enumerate(pipeline) if t['type'] == 'Resize')
        options[f'test_dataloader.dataset.pipeline.{index}.scale'] = tuple(quick_scale)
    return options


def prepare_detector(name, image_size, work, quick):
    """Config file, eval and deploy models, tools/deploy.py's export (ONNX and OpenVINO IR), the test image."""
    import torch
    from mmdet.datasets import CocoDataset

    from benchmarks.deploy_benchmark import DETECTORS as DEPLOY_BENCHMARK, synthetic_image
    from mmghost.deploy import Detector
    from mmghost.deploy.detector import read_image
    from mmghost.engine import build_detector, load_config
    from tools.deploy import export, to_openvino
    from tools.get_flops import detector_complexity
    key = DETECTORS[name][1]
    os.makedirs(work, exist_ok=True)
    config = DEPLOY_BENCHMARK[key][0] if key in DEPLOY_BENCHMARK else osp.join(ROOT, key)
    if not osp.isfile(config):  # mmdet's configs with our edits: written out (mmdet:: works as a _base_)
        with open(osp.join(work, 'config.py'), 'w') as f:
            f.write(config)
        config = osp.join(work, 'config.py')
    options = detector_options(config, image_size if quick else None)
    cfg = load_config(config, options)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = build_detector(cfg)
    logger, level = quiet_logger()
    model.init_weights()  # RetinaNet's classification prior, as in a trained model's score range
    logger.setLevel(level)
    model.cfg = cfg  # what inference_detector reads the test pipeline from
    model.eval()
    checkpoint = osp.join(work, 'random.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': dict(CocoDataset.METAINFO)}}, checkpoint)
    image = synthetic_image(osp.join(work, 'image.jpg'), image_size, seed=0)
    model_dir = osp.join(work, 'model')
    exported = export(config, checkpoint, model_dir, cfg_options=options)
    converted = to_openvino(model_dir)
    network_input = Detector(model_dir).preprocess(read_image(image))[0].shape
    flops = detector_complexity(copy.deepcopy(model), tuple(network_input[2:]))['flops']
    deploy, how = deploy_form(copy.deepcopy(model))
    return dict(model=model, deploy=deploy, image=image, model_dir=model_dir,
                info=dict(config=osp.relpath(config, ROOT), cfg_options={k: list(v) if isinstance(v, tuple) else v
                                                                          for k, v in options.items()},
                          test_cfg=json.loads(json.dumps(cfg.model.test_cfg.to_dict())),
                          network_input=list(network_input), flops=flops, flops_of='eval form (norms counted)',
                          deploy_variant=how,
                          export_seconds=exported['seconds'], openvino_seconds=converted['seconds'],
                          onnx_transposes=transposes(exported['onnx']),
                          params=sum(p.numel() for p in model.parameters())))


def detector_cases(prepared, threads, openvino_dynamic=False):
    from mmdet.apis import inference_detector

    from mmghost.deploy import Detector
    cases = {}
    for name, p in prepared.items():
        cases[f'{name}|eager'] = lambda p=p: len(inference_detector(p['model'], p['image']).pred_instances)
        cases[f'{name}|deploy'] = lambda p=p: len(inference_detector(p['deploy'], p['image']).pred_instances)
        engines = [('onnxruntime', 'onnxruntime', None), ('openvino', 'openvino', None)]
        if openvino_dynamic:
            engines.append(('openvino-dynamic', 'openvino', dict(static_shapes=False)))
        for runtime, engine, options in engines:
            detector = Detector(p['model_dir'], engine=engine, num_threads=threads, engine_options=options)
            cases[f'{name}|{runtime}'] = lambda d=detector, p=p: len(d(p['image']).boxes)
    return cases


# ---------------------------------------------------------------------------------------------------------- timing
def set_threads(threads):
    import cv2
    import torch
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def ratios(modes, peer):
    """Per model: each runtime's median over the peer's on the same runtime, and best over best."""
    table = {}
    models = sorted({case.split('|')[0] for case in modes}, key=list(dict.fromkeys(
        case.split('|')[0] for case in modes)).index)
    best = {m: min((modes[f'{m}|{r}']['median_ms'], r) for r in RUNTIMES if f'{m}|{r}' in modes) for m in models}
    for model in models:
        row = {r: round(modes[f'{model}|{r}']['median_ms'] / modes[f'{peer}|{r}']['median_ms'], 3)
               for r in RUNTIMES if f'{model}|{r}' in modes and f'{peer}|{r}' in modes}
        row['best'] = round(best[model][0] / best[peer][0], 3)
        row['best_runtime'] = best[model][1]
        table[model] = row
    return table


def time_block(cases, peer, repeats, warmup):
    from benchmarks.deploy_benchmark import time_modes
    load = [round(x, 2) for x in os.getloadavg()]
    start = time.perf_counter()
    modes, others = time_modes(cases, repeats, warmup)
    return dict(load_average_before=load, others_cpu_share=others, seconds=round(time.perf_counter() - start, 1),
                modes=modes, ratios=ratios(modes, peer))


def block_input(block, quick):
    return tuple(BLOCKS[block][3] if quick else BLOCKS[block][2])


def prepare_backbones(args):
    """Every backbone built, put in deploy form and exported once, for all the backbone blocks asked for."""
    shapes = [block_input(b, args.quick) for b in args.blocks if BLOCKS[b][0] == 'backbone']
    work = osp.join(args.work_dir, 'quick' if args.quick else 'full', 'backbones')
    os.makedirs(work, exist_ok=True)
    prepared = {}
    for name in BACKBONES if shapes else ():
        print(f'[backbones] {name}: building and exporting', flush=True)
        start = time.perf_counter()
        prepared[name] = prepare_backbone(name, shapes, work)
        prepared[name]['seconds'] = round(time.perf_counter() - start, 1)
    return prepared


def run_block(block, args, results, backbones=None):
    kind, family, _, _, full_repeats = BLOCKS[block]
    size = block_input(block, args.quick)
    repeats = args.repeats or (1 if args.quick else full_repeats)
    peer = PEERS[family]
    work = osp.join(args.work_dir, 'quick' if args.quick else 'full', block)
    os.makedirs(work, exist_ok=True)
    out = dict(kind=kind, input=list(size), repeats=repeats, warmup=args.warmup, peer=peer, models={}, threads={})
    start = time.perf_counter()
    if kind == 'backbone':
        prepared = backbones
        for name, p in prepared.items():
            info = copy.deepcopy(p.get('info', dict(skipped=p.get('skipped'))))
            if 'flops' in info:  # this block's input only
                info['flops'] = {key: v for key, v in info['flops'].items() if key == f'{size[0]}x{size[1]}'}
                info['prepare_seconds'] = p['seconds']
            paper = PAPERS[name]
            info['paper'] = dict(flops_m=paper[0], top1=paper[1], source=paper[2])
            out['models'][name] = info
    else:
        prepared = {}
        for name, (det_family, _) in DETECTORS.items():
            if det_family != family:
                continue
            print(f'[{block}] {name}: building, exporting (ONNX, OpenVINO IR)', flush=True)
            prepared[name] = prepare_detector(name, size, osp.join(work, name), args.quick)
            out['models'][name] = prepared[name]['info']
    out['prepare_seconds'] = round(time.perf_counter() - start, 1)
    for threads in args.threads:
        set_threads(threads)
        cases = (backbone_cases(prepared, size, threads, args.openvino_dynamic) if kind == 'backbone'
                 else detector_cases(prepared, threads, args.openvino_dynamic))
        print(f'[{block}] timing {len(cases)} cases, {threads} thread(s), {repeats} rounds', flush=True)
        out['threads'][str(threads)] = time_block(cases, peer, repeats, args.warmup)
        del cases
        gc.collect()
    results['blocks'][block] = out


def goals(results):
    out = {}
    for goal, (block, model, runtime, bound) in GOALS.items():
        run = results['blocks'].get(block, {}).get('threads', {}).get('1')
        if not run or model not in run['ratios']:
            continue
        value = run['ratios'][model].get(runtime)
        if value is not None:
            out[goal] = dict(value=value, goal=bound, met=value <= bound)
    return out


def environment():
    import cv2
    import mmdeploy
    import mmdet
    import onnxruntime
    import openvino
    import torch
    processor = platform.processor() or platform.machine()
    if osp.isfile('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            processor = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')),
                             processor)
    return dict(platform=platform.platform(), processor=processor, cpu_count=os.cpu_count(),
                python=platform.python_version(),
                versions=dict(torch=torch.__version__, onnxruntime=onnxruntime.__version__,
                              openvino=openvino.__version__, mmdet=mmdet.__version__, mmdeploy=mmdeploy.__version__,
                              opencv=cv2.__version__))


# ---------------------------------------------------------------------------------------------------------- report
def fmt_ms(value):
    return f'{value:.0f}' if value >= 100 else f'{value:.1f}'


def report_markdown(results, with_goals=True):
    """The tables of docs/benchmarks.md, from the JSON."""
    env = results['environment']
    lines = [f"`{results['command']}` ({results['duration_s'] / 60:.1f} min; "
             f"`benchmarks/results/{osp.basename(results.get('out', 'latency_cpu.json'))}`): {env['processor']}, "
             f"{env['cpu_count']} cores, torch {env['versions']['torch']}, onnxruntime "
             f"{env['versions']['onnxruntime']}, openvino {env['versions']['openvino']}; fp32, batch 1, random "
             f"weights; median ms of the timed rounds (**bold**: the model's fastest runtime).", '']
    shares = [run['others_cpu_share'] for out in results['blocks'].values() for run in out['threads'].values()
              if run['others_cpu_share'] is not None]
    if shares and max(shares) > 0.1:
        lines += [f"**Measured on a shared machine:** other processes used {min(shares):.0%} to {max(shares):.0%} of "
                  'the CPUs while the blocks were timed (per block below), so these times are slower than the '
                  "machine's and the ratios noisier (2 threads suffer most); a run on an idle machine replaces them.",
                  '']
    for block, out in results['blocks'].items():
        threads = sorted(out['threads'], key=int)
        kind = 'backbone' if out['kind'] == 'backbone' else 'detector, image file to boxes'
        size = 'x'.join(map(str, out['input']))
        lines += [f"**{block}** ({kind}, input {size}; {out['repeats']} rounds)", '']
        header = ['model', 'GFLOPs', 'ONNX Transposes'] + [f'{r} {t}T' for t in threads for r in RUNTIMES] + [
            f'x {out["peer"]}, best vs best, {t}T' for t in threads]
        lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
        for model, info in out['models'].items():
            if 'skipped' in info:
                lines.append(f'| {model} | not built: {info["skipped"]} |')
                continue
            flops = info['flops'] if isinstance(info['flops'], (int, float)) else next(iter(info['flops'].values()))
            cells = [model, f'{flops / 1e9:.2f}', str(info.get('onnx_transposes', ''))]
            for t in threads:
                modes = out['threads'][t]['modes']
                for r in RUNTIMES:
                    row = modes.get(f'{model}|{r}')
                    best = out['threads'][t]['ratios'][model]['best_runtime'] == r
                    cells.append('' if row is None else (f"**{fmt_ms(row['median_ms'])}**" if best
                                                         else fmt_ms(row['median_ms'])))
            for t in threads:
                ratio = out['threads'][t]['ratios'][model]
                cells.append(f"{ratio['best']:.2f} ({ratio['best_runtime']})")
            lines.append('| ' + ' | '.join(cells) + ' |')
        shares = [out['threads'][t]['others_cpu_share'] for t in threads]
        lines += ['', f"Share of the CPUs other processes used while timing: "
                  f"{', '.join(f'{s:.0%}' if s is not None else '?' for s in shares)} ({', '.join(threads)} threads).",
                  '']
    if with_goals:  # the run's own printout; user docs carry figures, not the project's goals
        lines += ['Goals (issue 26), 1 thread:', '', '| goal | measured | bound | met |', '|---|---|---|---|']
        for goal, row in results['goals'].items():
            lines.append(f"| {goal} | {row['value']:.2f} | {row['goal']:.2f} | {'yes' if row['met'] else '**no**'} |")
    return '\n'.join(lines).rstrip()


def picture(results, path):
    """Latency (1 thread, each runtime) against FLOPs of the backbones: a colour per model (the legend gives the
    papers' ImageNet top-1), a marker per runtime."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib.lines import Line2D
    import matplotlib.pyplot as plt
    matplotlib.rcParams['svg.hashsalt'] = 'mmghost'  # the same file for the same JSON
    blocks = [b for b, out in results['blocks'].items() if out['kind'] == 'backbone' and '1' in out['threads']]
    fig, axes = plt.subplots(1, len(blocks), figsize=(6 * len(blocks), 4.8), squeeze=False)
    markers = dict(eager='o', deploy='s', onnxruntime='^', openvino='D')
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for ax, block in zip(axes[0], blocks):
        out = results['blocks'][block]
        modes = out['threads']['1']['modes']
        key = f'{out["input"][0]}x{out["input"][1]}'
        handles = []
        for index, (model, info) in enumerate(out['models'].items()):
            if 'skipped' in info:
                continue
            colour = colours[index % len(colours)]
            x = info['flops'][key] / 1e9
            for runtime in RUNTIMES:
                if f'{model}|{runtime}' in modes:
                    ax.scatter(x, modes[f'{model}|{runtime}']['median_ms'], marker=markers[runtime], color=colour,
                               alpha=0.85)
            top1 = info['paper']['top1']
            handles.append(Line2D([], [], color=colour, marker='o', linestyle='',
                                  label=f"{model} ({f'{top1:.1f}%' if top1 else 'n/a'})"))
        handles += [Line2D([], [], color='gray', marker=m, linestyle='', label=r) for r, m in markers.items()]
        ax.legend(handles=handles, fontsize=7, title='model (paper ImageNet top-1); runtime', title_fontsize=7)
        ax.set_xlabel('GFLOPs (multiply-adds) at this input, deploy form, mmengine FlopAnalyzer')
        ax.set_ylabel('latency, ms (median, 1 thread)')
        ax.set_title(f'backbones at {key}')
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata={'Date': None})
    plt.close(fig)


def write_report(results, docs=DOCS, picture_path=PICTURE):
    picture(results, picture_path)
    with open(docs) as f:
        text = f.read()
    begin, end = MARKERS
    if begin not in text or end not in text:
        raise SystemExit(f'{docs} has no {begin} ... {end} section')
    table = report_markdown(results, with_goals=False)
    section = f"{begin}\n![latency against FLOPs](./{osp.basename(picture_path)})\n\n{table}\n{end}"
    text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    with open(docs, 'w') as f:
        f.write(text)
    print(f'wrote {docs} and {picture_path}')


def main(argv=None):
    args = parse_args(argv)
    if args.report:
        with open(args.out) as f:
            write_report(json.load(f))
        return
    start = time.perf_counter()
    command = ' '.join(sys.argv[1:] if argv is None else argv)
    results = dict(command=f'.venv-deploy/bin/python benchmarks/latency.py {command}'.strip(), quick=args.quick,
                   environment=environment(), load_average=dict(start=[round(x, 2) for x in os.getloadavg()]),
                   post_processing='score_thr=0 (every box passes) and the configs\' nms_pre (1000 per level): '
                   'the same number of NMS candidates for every model of a block', blocks={})
    import torch
    torch.manual_seed(0)
    prepare_start = time.perf_counter()
    backbones = prepare_backbones(args)
    results['backbones_prepare_seconds'] = round(time.perf_counter() - prepare_start, 1)
    for block in args.blocks:
        run_block(block, args, results, backbones)
        gc.collect()
    results['goals'] = goals(results)
    results['load_average']['end'] = [round(x, 2) for x in os.getloadavg()]
    results['duration_s'] = round(time.perf_counter() - start, 1)
    results['out'] = osp.relpath(osp.abspath(args.out), ROOT)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(results, f, indent=1)
    print(report_markdown(results))
    print(f'\nwrote {args.out} in {results["duration_s"]:.0f} s')


if __name__ == '__main__':
    main()
