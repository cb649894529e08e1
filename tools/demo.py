"""The main job, end to end on CPU: dataset -> training -> COCO evaluation -> pictures (``make demo``).

    python tools/demo.py [--model ghostnet|mobilenetv2|ghostnet-ghost-head|ghostnet-ghost-head-s3|repghostnet]
        [--work-dir DIR] [--data DIR]

1. makes the shapes dataset (tools/make_shapes_dataset.py: 600 train / 100 val images) unless it exists;
2. trains configs/demo/retinanet_<model>_shapes.py from scratch with tools/train.py;
3. evaluates the final checkpoint on the held-out split with tools/test.py (COCO bbox table);
4. draws the predictions on validation images (tools/infer.py) and the training curves (tools/plot_log.py);
5. prints and writes (WORK_DIR/demo_summary.json) the mAP, wall time per step and peak memory.
"""
import argparse
import glob
import json
import os
import os.path as osp
import resource
import shutil
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train and evaluate the demo detector on CPU')
    parser.add_argument('--model', choices=['ghostnet', 'mobilenetv2', 'ghostnet-ghost-head', 'ghostnet-ghost-head-s3',
                                            'repghostnet'],
                        default='ghostnet',
                        help='backbone of the demo RetinaNet (mobilenetv2 is the peer for comparison); '
                        'ghostnet-ghost-head(-s3): GhostNet with GhostConvs (ratio 2, or 3) in the FPN and head too; '
                        'repghostnet: RepGhostNet-1.0x')
    parser.add_argument('--work-dir', help='default: work_dirs/demo_<model>')
    parser.add_argument('--data', default='data/shapes', help='dataset folder (made if absent)')
    parser.add_argument('--cfg-options', nargs='+', default=[], help='passed on to train.py and test.py')
    return parser.parse_args(argv)


def run(step, cmd, timings, label='demo'):
    """Run one step's command from the repository root; its wall time goes into ``timings[step]``."""
    print(f'\n[{label}] {step}: {" ".join(cmd)}', flush=True)
    start = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    timings[step] = round(time.time() - start, 1)
    print(f'[{label}] {step} took {timings[step]} s', flush=True)


def latest_metrics(work_dir):
    """The metrics JSON that mmengine writes at the end of a test run (WORK_DIR/<timestamp>/<timestamp>.json)."""
    files = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    with open(files[-1]) as f:
        return json.load(f)


def main(argv=None):
    args = parse_args(argv)
    py = sys.executable
    config = f'configs/demo/retinanet_{args.model}_shapes.py'
    work_dir = args.work_dir or f'work_dirs/demo_{args.model}'
    data = args.data.rstrip('/')
    options = ['--cfg-options', *args.cfg_options] if args.cfg_options else []
    if data != 'data/shapes':
        root = data + '/'
        options = ['--cfg-options', f'train_dataloader.dataset.data_root={root}',
                   f'val_dataloader.dataset.data_root={root}', f'test_dataloader.dataset.data_root={root}',
                   f'val_evaluator.ann_file={root}annotations/instances_val.json',
                   f'test_evaluator.ann_file={root}annotations/instances_val.json', *args.cfg_options]
    timings = {}
    start = time.time()

    if not osp.isfile(osp.join(ROOT, data, 'annotations', 'instances_val.json')):
        run('dataset', [py, 'tools/make_shapes_dataset.py', data, '--train', '600', '--val', '100', '--seed',
                        '0'], timings)
    else:
        print(f'[demo] using the existing dataset in {data}')
    # A fresh run each time: the demo shows training from scratch, not a resumed one.
    shutil.rmtree(osp.join(ROOT, work_dir), ignore_errors=True)
    run('train', [py, 'tools/train.py', config, '--work-dir', work_dir, *options], timings)
    with open(osp.join(ROOT, work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    run('test', [py, 'tools/test.py', config, checkpoint, '--work-dir', f'{work_dir}/test', *options], timings)
    metrics = latest_metrics(osp.join(ROOT, work_dir, 'test'))
    val_images = sorted(glob.glob(osp.join(ROOT, data, 'val', '*.png')))[:4]
    run('pictures', [py, 'tools/infer.py', config, checkpoint, *val_images, '--out-dir',
                     f'{work_dir}/predictions', '--grid', f'{work_dir}/predictions.png'], timings)
    if osp.isfile(osp.join(ROOT, 'tools', 'plot_log.py')):
        run('curves', [py, 'tools/plot_log.py', work_dir, '--out', f'{work_dir}/curves.png'], timings)

    # ru_maxrss of the children: the largest single process (the training one), in KiB on Linux.
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    summary = dict(
        model=args.model, config=config, checkpoint=checkpoint,
        bbox_mAP=metrics.get('coco/bbox_mAP'), bbox_mAP_50=metrics.get('coco/bbox_mAP_50'),
        seconds=timings, total_seconds=round(time.time() - start, 1), peak_rss_mib=round(peak_mib),
        pictures=f'{work_dir}/predictions.png')
    with open(osp.join(ROOT, work_dir, 'demo_summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    print('\n[demo] summary')
    for key, value in summary.items():
        print(f'  {key}: {value}')


if __name__ == '__main__':
    main()
