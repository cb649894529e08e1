"""tools/plot_log.py (training curves from mmengine's JSON logs) and the opt-in TensorBoard backend."""
import json
import math
import os
import os.path as osp
import subprocess
import sys

import cv2
import pytest

import plot_log  # tools/plot_log.py
from mmghost.engine.tensorboard import apply_tensorboard_flag, tensorboard_available

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(ROOT, 'configs/demo/retinanet_ghostnet_shapes.py')


def _write_run(work_dir, stamp, epochs, iters_per_epoch=20, interval=5, first_iter=0, first_epoch=1,
               with_map=True):
    """A scalars.json as mmengine's LocalVisBackend writes it for epoch-based training with val every epoch."""
    path = osp.join(work_dir, stamp, 'vis_data', 'scalars.json')
    os.makedirs(osp.dirname(path), exist_ok=True)
    lines, it = [], first_iter
    for epoch in range(first_epoch, first_epoch + epochs):
        for _ in range(iters_per_epoch):
            it += 1
            if it % interval == 0:
                cls, box = 1.2 * math.exp(-it / 50) + 0.2, 0.7 * math.exp(-it / 80) + 0.2
                lines.append(dict(base_lr=0.01, lr=0.01 * min(1, it / 20), data_time=0.01, grad_norm=3.0,
                                  loss=cls + box, loss_cls=cls, loss_bbox=box, time=0.4, epoch=epoch, iter=it,
                                  memory=800, step=it))
        val = dict(data_time=0.01, time=0.2, step=epoch)
        if with_map:
            m = 0.6 * (1 - math.exp(-epoch / 2))
            val.update({'coco/bbox_mAP': m, 'coco/bbox_mAP_50': m * 1.4, 'coco/bbox_mAP_75': m * 0.9,
                        'coco/bbox_mAP_s': -1.0, 'coco/bbox_mAP_m': m * 0.8, 'coco/bbox_mAP_l': m * 1.1})
        lines.append(val)
    with open(path, 'w') as f:
        f.write('\n'.join(json.dumps(r) for r in lines) + '\n')
    return path


def test_read_log_places_val_epochs_on_the_iteration_axis(tmp_path):
    path = _write_run(str(tmp_path), '20260101_000000', epochs=3)
    log = plot_log.read_log([path])
    assert [r['iter'] for r in log['train']] == list(range(5, 61, 5))
    assert [(r['epoch'], r['iter']) for r in log['val']] == [(1, 20), (2, 40), (3, 60)]
    assert plot_log.loss_keys(log['train']) == ['loss', 'loss_bbox', 'loss_cls']
    keys = plot_log.metric_keys(log['val'])
    assert keys[:3] == ['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75']
    assert 'coco/bbox_mAP_s' not in keys  # COCO's -1 (no small objects) is not drawn
    assert 'coco/bbox_mAP_m' in keys


def test_cli_draws_the_newest_run_or_all_runs(tmp_path, capsys):
    work = str(tmp_path)
    _write_run(work, '20260101_000000', epochs=2)  # an older run...
    _write_run(work, '20260101_010000', epochs=2, first_iter=40, first_epoch=3)  # ...resumed
    summary = plot_log.main([work])
    assert summary['out'] == osp.join(work, 'curves.png') and osp.isfile(summary['out'])
    assert summary['train_points'] == 8 and summary['val_points'] == 2  # the newest run only
    assert summary['best']['coco/bbox_mAP'] == pytest.approx(0.6 * (1 - math.exp(-2)))
    out = capsys.readouterr().out
    assert 'wrote' in out and 'best coco/bbox_mAP 0.519' in out
    joined = plot_log.main([work, '--all-runs', '--out', str(tmp_path / 'all.png'), '--log-scale'])
    assert joined['train_points'] == 16 and joined['val_points'] == 4
    img = cv2.imread(str(tmp_path / 'all.png'))
    assert img is not None and img.shape[0] > 600 and img.shape[1] > 800


def test_logs_without_metrics_or_with_a_cut_line(tmp_path, capsys):
    path = _write_run(str(tmp_path), '20260101_000000', epochs=1, with_map=False)
    with open(path, 'a') as f:
        f.write('{"lr": 0.01, "loss": 1.0, "ite')  # a crash in the middle of a line
    summary = plot_log.main([osp.dirname(osp.dirname(path)), '--out', str(tmp_path / 'c.png')])
    assert summary['metric_keys'] == [] and summary['train_points'] == 4
    assert 'skipping unreadable line' in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        plot_log.main([str(tmp_path / 'nothing')])


def test_tensorboard_flag_adds_the_backend_only_when_asked(monkeypatch):
    from mmengine.config import Config
    cfg = Config.fromfile(DEMO_CONFIG)
    before = [dict(b) for b in cfg.visualizer.vis_backends]
    assert apply_tensorboard_flag(cfg).visualizer.vis_backends == before  # off by default
    cfg.merge_from_dict(dict(tensorboard=True))  # what --cfg-options tensorboard=True does
    import mmghost.engine.tensorboard as tb
    monkeypatch.setattr(tb, 'tensorboard_available', lambda: True)
    backends = apply_tensorboard_flag(cfg).visualizer.vis_backends
    assert backends == before + [dict(type='TensorboardVisBackend')]
    assert apply_tensorboard_flag(cfg).visualizer.vis_backends == backends  # added once
    monkeypatch.setattr(tb, 'tensorboard_available', lambda: False)
    with pytest.raises(ImportError, match='pip install tensorboard'):
        apply_tensorboard_flag(cfg)


@pytest.mark.skipif(not tensorboard_available(),
                    reason='tensorboard is an optional dependency (pip install tensorboard)')
def test_tensorboard_backend_writes_events(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import VISUALIZERS
    init_default_scope('mmdet')
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.merge_from_dict(dict(tensorboard=True))
    apply_tensorboard_flag(cfg)
    visualizer = VISUALIZERS.build(dict(cfg.visualizer, name='tb_test', save_dir=str(tmp_path)))
    visualizer.add_scalars({'loss': 1.0, 'coco/bbox_mAP': 0.1}, step=1)
    visualizer.close()
    events = [f for _, _, files in os.walk(tmp_path) for f in files if f.startswith('events.out.tfevents')]
    assert events, list(os.walk(tmp_path))
    assert osp.isfile(tmp_path / 'vis_data' / 'scalars.json')  # the local backend stays


@pytest.mark.slow
def test_curves_of_a_real_tiny_training(tmp_path):
    """tools/train.py for 2 epochs of 2 iterations on 4 64-px images, validated each epoch, then the plot.

    Training runs in its own process, as users run it: mmdet's default_runtime names the visualizer 'visualizer',
    and mmengine builds visualizers as named singletons, so in the test process the first runner's visualizer (an
    earlier test's, with that test's save_dir) would be reused and the scalars would land there (seen in a
    full-suite run)."""
    import make_shapes_dataset
    data = str(tmp_path / 'data') + '/'
    make_shapes_dataset.main([data, '--train', '4', '--val', '2', '--seed', '0', '--size', '64'])
    work = str(tmp_path / 'work')
    opts = [f'data_root={data}', f'train_dataloader.dataset.data_root={data}',
            f'val_dataloader.dataset.data_root={data}', f'test_dataloader.dataset.data_root={data}',
            f'val_evaluator.ann_file={data}annotations/instances_val.json',
            f'test_evaluator.ann_file={data}annotations/instances_val.json',
            'train_cfg.max_epochs=2', 'train_cfg.val_interval=1', 'train_dataloader.batch_size=2',
            'model.test_cfg.score_thr=0.0',  # random heads score ~0.01: keep boxes so that mAP is computed
            'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=100']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'train.py'), DEMO_CONFIG, '--work-dir', work,
                    '--cfg-options', *opts], cwd=ROOT, check=True)
    summary = plot_log.main([work])
    assert summary['train_points'] == 4 and summary['val_points'] == 2
    assert summary['loss_keys'] == ['loss', 'loss_bbox', 'loss_cls']
    assert 'coco/bbox_mAP' in summary['metric_keys']
    assert osp.isfile(osp.join(work, 'curves.png'))
