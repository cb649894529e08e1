"""The ImageNet -> COCO path in miniature: classification pre-training, then the shapes detector initialised from
it against the same detector from scratch, same data, schedule and seed.

    OMP_NUM_THREADS=2 .venv-torch21/bin/python benchmarks/pretrain_vs_scratch.py [--work-dir DIR]
        [--det-python .venv/bin/python] [--cls-per-class 200] [--cls-epochs 12] [--det-train 300] [--det-epochs 6]

Run it with the torch-2.1 stack's python (pre-training goes through mmpretrain); the detector steps run with
``--det-python`` (default: ``.venv/bin/python`` when it exists, the torch-2.13 stack of ``make demo``, about 3x
faster on this CPU; otherwise the same python).

1. makes the classification set (tools/make_shapes_classification.py: background/circle/square/triangle, 64 px)
   and a detection set (tools/make_shapes_dataset.py) in WORK_DIR, unless they exist;
2. pre-trains GhostNet-1.0x on the former with configs/imagenet/ghostnet-1.0x_shapes-cls.py (mmpretrain
   ImageClassifier, the ImageNet config family) through tools/train.py;
3. converts its checkpoint with tools/convert_weights.py (docs/reproducing.md's pretrain -> convert -> detect path; a
   training checkpoint also loads directly through init_cfg on torch < 2.6, not on torch >= 2.6, whose
   weights-only torch.load refuses mmengine's HistoryBuffer);
4. trains configs/demo/retinanet_ghostnet_shapes.py twice through tools/train.py, shortened to ``--det-epochs``
   on ``--det-train`` images: from scratch, and with ``backbone.init_cfg=dict(type='Pretrained',
   checkpoint=<step 3>)`` -- the way ImageNet weights initialise the COCO configs; everything else (data,
   schedule, seed, BN settings) is the same;
5. prints and writes WORK_DIR/summary.json: classification accuracy, both detectors' held-out COCO bbox mAP
   (evaluated at the end of training), wall times.
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from tools.demo import run as demo_run  # noqa: E402

CLS_CONFIG = 'configs/imagenet/ghostnet-1.0x_shapes-cls.py'
DET_CONFIG = 'configs/demo/retinanet_ghostnet_shapes.py'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/pretrain_vs_scratch')
    parser.add_argument('--det-python', help='python for the detector steps (default: .venv/bin/python if present)')
    parser.add_argument('--cls-per-class', type=int, default=200, help='classification training images per class')
    parser.add_argument('--cls-size', type=int, default=64, help='classification image side')
    parser.add_argument('--cls-epochs', type=int, default=12)
    parser.add_argument('--det-train', type=int, default=300, help='detection training images')
    parser.add_argument('--det-val', type=int, default=100, help='detection held-out images')
    parser.add_argument('--det-epochs', type=int, default=6)
    parser.add_argument('--seed', type=int, default=0, help='training seed, the same for both detectors')
    return parser.parse_args(argv)


def run(step, cmd, timings):
    demo_run(step, cmd, timings, label='pretrain_vs_scratch')


def last_scalars(work_dir, key):
    """The last value of ``key`` logged in WORK_DIR/<timestamp>/vis_data/scalars.json."""
    value = None
    for path in sorted(glob.glob(osp.join(ROOT, work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if key in record:
                    value = record[key]
    if value is None:
        raise RuntimeError(f'no {key} logged in {work_dir}')
    return value


def write_config(base, path, edit):
    """Load ``base``, apply ``edit(cfg)``, write the merged config to ``path`` (the runs read it from there)."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, base))
    edit(cfg)
    os.makedirs(osp.dirname(osp.join(ROOT, path)), exist_ok=True)
    cfg.dump(osp.join(ROOT, path))
    return path


def main(argv=None):
    args = parse_args(argv)
    py = sys.executable
    det_py = args.det_python or (osp.join(ROOT, '.venv', 'bin', 'python')
                                 if osp.isfile(osp.join(ROOT, '.venv', 'bin', 'python')) else py)
    work = args.work_dir.rstrip('/')
    cls_data, det_data = f'{work}/shapes_cls', f'{work}/shapes'
    timings = {}
    start = time.time()

    if not osp.isdir(osp.join(ROOT, cls_data, 'val')):
        run('classification data', [py, 'tools/make_shapes_classification.py', cls_data, '--train',
                                    str(args.cls_per_class), '--val', '25', '--size', str(args.cls_size),
                                    '--seed', '0'], timings)
    if not osp.isfile(osp.join(ROOT, det_data, 'annotations', 'instances_val.json')):
        run('detection data', [py, 'tools/make_shapes_dataset.py', det_data, '--train', str(args.det_train),
                               '--val', str(args.det_val), '--seed', '0'], timings)

    # 1. classification pre-training (mmpretrain, the ImageNet config family)
    cls_work = f'{work}/pretrain'

    def edit_cls(cfg):
        for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
            loader.dataset.data_root = cls_data
        cfg.train_cfg.max_epochs = cfg.train_cfg.val_interval = args.cls_epochs
        cosine = cfg.param_scheduler[-1]
        cosine.end = cosine.T_max = args.cls_epochs
        cfg.default_hooks.checkpoint.interval = args.cls_epochs
        cfg.randomness = dict(seed=args.seed)

    cls_config = write_config(CLS_CONFIG, f'{work}/configs/pretrain.py', edit_cls)
    run('pre-training', [py, 'tools/train.py', cls_config, '--work-dir', cls_work], timings)
    with open(osp.join(ROOT, cls_work, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    accuracy = last_scalars(cls_work, 'accuracy/top1')
    pretrained = f'{work}/ghostnet-1.0x_shapes-cls.pth'
    run('convert', [det_py, 'tools/convert_weights.py', checkpoint, pretrained], timings)

    # 2. the detector, from scratch and from the pre-trained backbone
    results = {}
    for name, init_cfg in (('scratch', None),
                           ('pretrained', dict(type='Pretrained', checkpoint=pretrained))):

        def edit_det(cfg, init_cfg=init_cfg):
            root = det_data + '/'
            for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
                loader.dataset.data_root = root
            cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = root + 'annotations/instances_val.json'
            cfg.train_cfg.max_epochs = cfg.train_cfg.val_interval = args.det_epochs
            cosine = cfg.param_scheduler[-1]
            cosine.end = cosine.T_max = args.det_epochs
            cfg.default_hooks.checkpoint.interval = args.det_epochs
            cfg.model.backbone.init_cfg = init_cfg
            cfg.randomness = dict(seed=args.seed)

        config = write_config(DET_CONFIG, f'{work}/configs/detector_{name}.py', edit_det)
        run(f'detector ({name})', [det_py, 'tools/train.py', config, '--work-dir', f'{work}/{name}'], timings)
        results[name] = dict(bbox_mAP=last_scalars(f'{work}/{name}', 'coco/bbox_mAP'),
                             bbox_mAP_50=last_scalars(f'{work}/{name}', 'coco/bbox_mAP_50'))

    summary = dict(
        command=' '.join(['python', 'benchmarks/pretrain_vs_scratch.py'] + list(argv if argv is not None
                                                                                  else sys.argv[1:])),
        settings=vars(args),
        pretrain=dict(config=CLS_CONFIG, checkpoint=osp.relpath(checkpoint, ROOT), weights=pretrained,
                      val_top1=accuracy),
        detector=dict(config=DET_CONFIG, **results),
        seconds=dict(timings, total=round(time.time() - start, 1)),
        threads=os.environ.get('OMP_NUM_THREADS'),
        python=dict(pretrain=osp.relpath(py, ROOT), detector=osp.relpath(det_py, ROOT)))
    with open(osp.join(ROOT, work, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print(f'\npre-training: {args.cls_epochs} epochs, held-out top-1 {accuracy:.2f}%')
    for name, result in results.items():
        print(f'detector from {name:10s}: bbox mAP {result["bbox_mAP"]:.3f}  mAP@0.5 {result["bbox_mAP_50"]:.3f}  '
              f'({args.det_epochs} epochs, {args.det_train} images)')
    print(f'-> {osp.join(work, "summary.json")}')


if __name__ == '__main__':
    main()
