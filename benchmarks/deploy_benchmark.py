"""End-to-end CPU latency of four detectors in four runtimes: image file on disk -> boxes in its pixels.

    .venv-deploy/bin/python benchmarks/deploy_benchmark.py            # all four detectors, 2 threads, 10 runs
    .venv-deploy/bin/python benchmarks/deploy_benchmark.py --detectors ssdlite-ghostnet --repeats 1 --warmup 0

Runs in the mmdeploy stack (``.venv-deploy``). Detectors (one image each, of the size their test pipeline expects):

* ``retinanet-ghostnet-1.1x``: configs/retinanet_ghostnet_fpn.py on a 1333x800 image (the test scale: no resize);
* ``ssdlite-ghostnet``: configs/ssdlite_ghostnet-1.0x_320.py on a 640x480 image (the pipeline resizes it to
  320x320);
* ``retinanet-mobilenetv2``: mmdet's RetinaNet R-50 config with mmdet's MobileNetV2 (strides 8-32, the peer
  configs/demo/retinanet_mobilenetv2_shapes.py and benchmarks/benchmark.py --detectors use), 1333x800;
* ``ssdlite-mobilenetv2``: mmdet's ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py (its SSDHead swapped for
  mmghost's SSDHeadCompat, same weights, which can predict under mmdet 3.3.0), 640x480.

Modes, each from the image's path (decoding included) to boxes rescaled to the original image:

* ``mmdet-eager``: ``mmdet.apis.inference_detector`` on the model in eval mode;
* ``mmghost-deploy``: the same with the backbone in deploy mode (GhostNet: ``switch_to_deploy()``, BNs folded and
  channels_last; MobileNetV2: ``mmcv.cnn.fuse_conv_bn``, BNs folded only);
* ``ort-fp32``, ``ort-int8``: ``mmghost.deploy.Detector`` (numpy, OpenCV, ONNX Runtime) on the model exported by
  tools/deploy.py (dynamic shapes) and its static int8 quantisation (``tools.deploy.quantize``'s defaults:
  depthwise convs, unless ``--int8-depthwise``, and the heads' output convs stay float), calibrated on 16
  synthetic images like the benchmark's.

Weights are random (``init_weights()``, so RetinaNet's classification prior applies) and untrained: few
candidates pass score_thr, so the NMS and post-processing cost here is a lower bound of a trained model's. Images
are synthetic (tools/make_shapes_dataset.py's shapes and backgrounds), written as JPEG. torch, ONNX Runtime and
OpenCV get ``--threads`` threads. Each mode runs ``--warmup`` times, then ``--repeats`` rounds run every mode
once, interleaved, with a 0.1 s pause before each run (so the other runtime's spin-waiting threads are asleep):
this machine's speed drifted up to 2x over minutes with nothing else running in it, and interleaving makes such
drift hit every mode alike (the ratios hold better than the absolute figures). Median and min per mode.
The share of the CPUs that other processes used while timing (an upper bound: pauses included) is recorded and
warned about above 10%; figures are valid only near 0.
Goals (issue 15): ort-fp32 <= 0.4x mmdet-eager, ort-int8 <= 0.6x ort-fp32.
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
import types

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

MODES = ('mmdet-eager', 'mmghost-deploy', 'ort-fp32', 'ort-int8')
GOALS = {'ort-fp32/mmdet-eager': 0.4, 'ort-int8/ort-fp32': 0.6}
CALIBRATION_IMAGES = 16
# Idle time before each timed run: torch's OpenMP and ONNX Runtime's worker threads spin-wait for a while after a
# run; run back to back, one runtime's spinning threads slowed the other's next run up to 2x (SSDLite eager).
PAUSE_S = 0.1
# mmdet configs written to the work dir (tools/deploy.py exports from a config file; mmdet:: works as a _base_).
RETINANET_MOBILENETV2 = """_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(_delete_=True, type='MobileNetV2', out_indices=(2, 4, 6), init_cfg=None),  # strides 8, 16, 32
    neck=dict(in_channels=[32, 96, 320], start_level=0))
"""
SSDLITE_MOBILENETV2 = """_base_ = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'
custom_imports = dict(imports=['mmghost.models.ssd_head'], allow_failed_imports=False)
model = dict(bbox_head=dict(type='SSDHeadCompat'))  # mmdet 3.3.0's SSDHead cannot predict (mmdetection #11063)
"""
DETECTORS = {  # name: (config file or config text, image (W, H))
    'retinanet-ghostnet-1.1x': (osp.join(ROOT, 'configs', 'retinanet_ghostnet_fpn.py'), (1333, 800)),
    'ssdlite-ghostnet': (osp.join(ROOT, 'configs', 'ssdlite_ghostnet-1.0x_320.py'), (640, 480)),
    'retinanet-mobilenetv2': (RETINANET_MOBILENETV2, (1333, 800)),
    'ssdlite-mobilenetv2': (SSDLITE_MOBILENETV2, (640, 480)),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='End-to-end detector latency: mmdet eager vs deploy vs ONNX Runtime')
    parser.add_argument('--detectors', nargs='+', choices=list(DETECTORS), default=list(DETECTORS))
    parser.add_argument('--repeats', type=int, default=10, help='timed runs per mode (default 10)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed runs per mode first (default 2)')
    parser.add_argument('--threads', type=int, default=2, help='torch / ONNX Runtime / OpenCV threads (default 2)')
    parser.add_argument('--int8-depthwise', action='store_true', help='quantise depthwise convs too')
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results', 'deploy_benchmark_cpu.json'))
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'deploy_benchmark'),
                        help='configs, checkpoints, images and ONNX models are written here')
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        parser.error('need --repeats >= 1, --warmup >= 0, --threads >= 1')
    return args


def synthetic_image(path, size, seed):
    """A JPEG of coloured shapes on a varied background (tools/make_shapes_dataset.py), ``size`` = (W, H)."""
    import cv2
    import numpy as np
    from tools.make_shapes_dataset import make_image
    width, height = size
    opts = types.SimpleNamespace(size=max(size), min_objects=4, max_objects=12, min_scale=0.05, max_scale=0.3,
                                 max_overlap=0.3)
    image, _, _ = make_image(np.random.default_rng(seed), opts)
    cv2.imwrite(path, np.ascontiguousarray(image[:height, :width]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def prepare(name, args):
    """Config file, random-weight checkpoint, eval and deploy models, ONNX fp32/int8 models and the test image."""
    import torch
    from mmcv.cnn import fuse_conv_bn
    from mmdet.datasets import CocoDataset
    from mmengine.logging import MMLogger

    from mmghost.engine import build_detector, load_config
    from tools.deploy import export, quantize
    config, size = DETECTORS[name]
    work = osp.join(args.work_dir, name)
    os.makedirs(work, exist_ok=True)
    if not osp.isfile(config):
        with open(osp.join(work, 'config.py'), 'w') as f:
            f.write(config)
        config = osp.join(work, 'config.py')
    cfg = load_config(config)
    cfg.model.backbone.init_cfg = None
    model = build_detector(cfg)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter
    model.init_weights()
    logger.setLevel(level)
    model.cfg = cfg  # what inference_detector reads the test pipeline from
    model.eval()
    checkpoint = osp.join(work, 'random.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': dict(CocoDataset.METAINFO)}}, checkpoint)

    deploy = copy.deepcopy(model)
    if hasattr(deploy.backbone, 'switch_to_deploy'):
        deploy.backbone.switch_to_deploy()
        deploy_variant = 'backbone.switch_to_deploy() (BNs folded, channels_last)'
    else:
        deploy.backbone = fuse_conv_bn(deploy.backbone)
        deploy_variant = 'mmcv.cnn.fuse_conv_bn(backbone) (BNs folded)'

    model_dir = osp.join(work, 'onnx')
    exported = export(config, checkpoint, model_dir)
    calib = [synthetic_image(osp.join(work, f'calib_{i:02d}.jpg'), size, seed=1000 + i)
             for i in range(CALIBRATION_IMAGES)]
    quantized = quantize(model_dir, calib, depthwise=args.int8_depthwise)
    image = synthetic_image(osp.join(work, 'image.jpg'), size, seed=0)
    return dict(config=osp.relpath(config, ROOT), image=image, model=model, deploy=deploy,
                deploy_variant=deploy_variant, model_dir=model_dir, export=exported, quantize=quantized)


def cpu_seconds():
    """(CPU seconds all processes used, CPU seconds this process used, wall clock); Linux, else Nones."""
    own = os.times()
    try:
        with open('/proc/stat') as f:
            ticks = [int(v) for v in f.readline().split()[1:8]]  # user nice system idle iowait irq softirq
    except OSError:
        return None, own.user + own.system, time.perf_counter()
    busy = sum(ticks[:3]) + ticks[5] + ticks[6]
    return busy / os.sysconf('SC_CLK_TCK'), own.user + own.system, time.perf_counter()


def time_modes(cases, repeats, warmup):
    """Each mode warmed up, then ``repeats`` rounds running every mode once with a pause before each run: median,
    min, detections of the last run, and the share of the CPUs other processes used meanwhile (valid near 0)."""
    from benchmarks.benchmark import summarize
    counts, times = {}, {mode: [] for mode in cases}
    for mode, fn in cases.items():
        for _ in range(warmup):
            fn()
    before = cpu_seconds()
    for _ in range(repeats):
        for mode, fn in cases.items():
            time.sleep(PAUSE_S)
            start = time.perf_counter()
            counts[mode] = fn()
            times[mode].append(time.perf_counter() - start)
    after = cpu_seconds()
    others = None
    if before[0] is not None:
        busy = (after[0] - before[0]) - (after[1] - before[1])
        others = round(max(busy, 0.) / ((after[2] - before[2] - PAUSE_S * repeats * len(cases)) * os.cpu_count()), 3)
    modes = {mode: dict({k: round(v, 2) for k, v in summarize(t).items()}, detections=counts[mode])
             for mode, t in times.items()}
    return modes, others


def run_detector(name, args):
    from mmdet.apis import inference_detector

    from mmghost.deploy import Detector
    from mmghost.deploy.detector import read_image
    p = prepare(name, args)
    image, threads = p['image'], args.threads
    cases = {
        'mmdet-eager': lambda: len(inference_detector(p['model'], image).pred_instances),
        'mmghost-deploy': lambda: len(inference_detector(p['deploy'], image).pred_instances),
    }
    for precision in ('fp32', 'int8'):
        detector = Detector(p['model_dir'], precision=precision, num_threads=threads)
        cases[f'ort-{precision}'] = lambda detector=detector: len(detector(image).boxes)
    network_input = list(detector.preprocess(read_image(image))[0].shape)
    load_average = [round(x, 2) for x in os.getloadavg()]
    modes, others_cpu_share = time_modes(cases, args.repeats, args.warmup)
    modes['mmghost-deploy']['variant'] = p['deploy_variant']
    pairs = (('ort-fp32', 'mmdet-eager'), ('ort-int8', 'ort-fp32'), ('mmghost-deploy', 'mmdet-eager'))
    ratios = {f'{a}/{b}': modes[a]['median_ms'] / modes[b]['median_ms'] for a, b in pairs}
    # Interference only adds time, so the ratio of the fastest runs is the less noisy second view.
    ratios_of_min = {f'{a}/{b}': round(modes[a]['min_ms'] / modes[b]['min_ms'], 3) for a, b in pairs}
    size = DETECTORS[name][1]
    return dict(config=p['config'], image=f'{size[0]}x{size[1]} JPEG', network_input=network_input,
                load_average_before=load_average, others_cpu_share=others_cpu_share, modes=modes,
                ratios={k: round(v, 3) for k, v in ratios.items()}, ratios_of_min=ratios_of_min,
                goals_met={k: ratios[k] <= goal for k, goal in GOALS.items()},
                export=dict(seconds=p['export']['seconds'], fp32_mb=p['export']['megabytes'],
                            int8_mb=p['quantize']['megabytes'], quantize_seconds=p['quantize']['seconds'],
                            calibration_images=p['quantize']['calibration_images'],
                            float_depthwise_convs=p['quantize']['float_depthwise_convs'],
                            float_output_convs=p['quantize'].get('float_output_convs')))


def environment(args):
    import mmcv
    import mmdeploy
    import mmdet
    import onnx
    import onnxruntime
    import torch
    processor = platform.processor() or platform.machine()
    if osp.isfile('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            processor = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')),
                             processor)
    return dict(platform=platform.platform(), processor=processor,
                cpu_count=os.cpu_count(), threads=args.threads, repeats=args.repeats, warmup=args.warmup,
                int8_depthwise=args.int8_depthwise, python=platform.python_version(),
                versions=dict(torch=torch.__version__, onnxruntime=onnxruntime.__version__, onnx=onnx.__version__,
                              mmdeploy=mmdeploy.__version__, mmdet=mmdet.__version__, mmcv=mmcv.__version__),
                weights='random (init_weights), untrained: few boxes pass score_thr, so NMS cost is a lower bound',
                images='synthetic shapes (tools/make_shapes_dataset.py), JPEG quality 90, read from disk every run')


def print_table(results):
    env = results['environment']
    print(f"\n{env['processor']}, {env['cpu_count']} CPUs, {env['threads']} threads; torch {env['versions']['torch']}, "
          f"onnxruntime {env['versions']['onnxruntime']}, mmdeploy {env['versions']['mmdeploy']}; median (min) ms "
          f"of {env['repeats']} runs, image file -> boxes; load average {results['load_average']['start']} at start")
    print('| detector | image | ' + ' | '.join(MODES) + ' | fp32 / eager, medians (mins) (goal <= 0.4) | '
          'int8 / fp32 (goal <= 0.6) |')
    print('|' + '---|' * (len(MODES) + 4))
    for name, row in results['detectors'].items():
        cells = [f"{row['modes'][m]['median_ms']:.1f} ({row['modes'][m]['min_ms']:.1f})" for m in MODES]
        goals = [f"{row['ratios'][k]:.2f} ({row['ratios_of_min'][k]:.2f}) {'pass' if row['goals_met'][k] else 'FAIL'}"
                 for k in GOALS]
        print(f"| {name} | {row['image']} | " + ' | '.join(cells + goals) + ' |')
    print('\n| detector | network input | export s | ONNX fp32 MB | int8 MB | quantise s | convs kept float '
          '(depthwise / output) | detections (eager / deploy / fp32 / int8) |')
    print('|---|---|---|---|---|---|---|---|')
    for name, row in results['detectors'].items():
        e = row['export']
        counts = ' / '.join(str(row['modes'][m]['detections']) for m in MODES)
        height, width = row['network_input'][2:]
        print(f"| {name} | {width}x{height} | {e['seconds']} | {e['fp32_mb']} | {e['int8_mb']} | "
              f"{e['quantize_seconds']} | {e['float_depthwise_convs']} / {e['float_output_convs']} | {counts} |")
    busy = [f'{name}: {row["others_cpu_share"]:.0%}' for name, row in results['detectors'].items()
            if (row['others_cpu_share'] or 0) > 0.1]
    if busy:
        print(f"\nWARNING: other processes used the CPUs while timing ({', '.join(busy)}): those figures are too slow.")
    print(f"\nWeights: {env['weights']}. Images: {env['images']}.")


def main(argv=None):
    args = parse_args(argv)
    import cv2
    import torch
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    torch.manual_seed(0)
    os.makedirs(args.work_dir, exist_ok=True)
    command = ' '.join(sys.argv[1:] if argv is None else argv)
    results = dict(command=f'.venv-deploy/bin/python benchmarks/deploy_benchmark.py {command}'.strip(),
                   load_average=dict(start=[round(x, 2) for x in os.getloadavg()]),
                   environment=environment(args), detectors={})
    for name in args.detectors:
        print(f'{name}: exporting and timing', flush=True)
        results['detectors'][name] = run_detector(name, args)
        gc.collect()
    results['load_average']['end'] = [round(x, 2) for x in os.getloadavg()]
    print_table(results)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(results, f, indent=1)
    print(f'\nwrote {args.out}')


if __name__ == '__main__':
    main()
