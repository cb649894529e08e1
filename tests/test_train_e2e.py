"""End to end through the user-facing tools: make data, train, evaluate, test, infer, distributed launch."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from fixtures.ports import free_port
from fixtures.tiny_config import tiny_config_text

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
pytestmark = pytest.mark.slow

# 2 epochs of a tiny model: keep low scores so COCO has detections
TINY_MODEL = """model = dict(backbone=dict(widen_factor=0.5), neck=dict(in_channels=[20, 56, 80], out_channels=32),
             bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1), test_cfg=dict(score_thr=0.0))
"""


def run_tool(*args, timeout=600, env=None):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env)
    assert proc.returncode == 0, f'{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
    return proc.stdout + proc.stderr


def scalars(work_dir):
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    assert files, f'no scalars.json under {work_dir}'
    with open(sorted(files)[-1]) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp('e2e')
    data = base / 'shapes'
    run_tool('tools/make_shapes_dataset.py', str(data), '--train', '16', '--val', '8', '--size', '96',
             '--seed', '3')
    config = base / 'tiny.py'
    config.write_text(tiny_config_text(data, epochs=2, size=96, batch_size=4, val_batch_size=4, max_keep_ckpts=2,
                                       warmup_iters=4, extra=TINY_MODEL))
    work_dir = base / 'work'
    output = run_tool('tools/train.py', str(config), '--work-dir', str(work_dir))
    return dict(base=base, data=data, config=str(config), work_dir=str(work_dir), output=output)


def test_train_writes_checkpoints_and_coco_metrics(tiny):
    work_dir = tiny['work_dir']
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip().endswith('epoch_2.pth')
    val = [s for s in scalars(work_dir) if 'coco/bbox_mAP' in s]
    assert [s['step'] for s in val] == [1, 2]  # validated after each epoch
    assert all(0.0 <= s['coco/bbox_mAP'] <= 1.0 for s in val)
    train = [s for s in scalars(work_dir) if 'loss' in s]
    assert len(train) == 8  # 16 images / batch 4 x 2 epochs, logged every iteration
    assert 'Average Precision' in tiny['output']  # the COCO table was printed


def test_test_py_reproduces_the_metric(tiny):
    work_dir = tiny['work_dir']
    test_dir = osp.join(tiny['base'], 'test')
    out_pkl = osp.join(tiny['base'], 'preds.pkl')
    run_tool('tools/test.py', tiny['config'], osp.join(work_dir, 'epoch_2.pth'), '--work-dir', test_dir,
             '--out', out_pkl)
    metrics_file = sorted(glob.glob(osp.join(test_dir, '*', '*.json')))[-1]
    with open(metrics_file) as f:
        metrics = json.load(f)
    final_val = [s for s in scalars(work_dir) if 'coco/bbox_mAP' in s][-1]
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'):
        assert metrics[key] == pytest.approx(final_val[key], abs=1e-3), key
    assert osp.getsize(out_pkl) > 0


def test_test_py_deploy_mode_gives_the_same_metric(tiny):
    test_dir = osp.join(tiny['base'], 'test_deploy')
    output = run_tool('tools/test.py', tiny['config'], osp.join(tiny['work_dir'], 'epoch_2.pth'), '--work-dir',
                      test_dir, '--deploy')
    assert 'folded batch norms' in output
    with open(sorted(glob.glob(osp.join(test_dir, '*', '*.json')))[-1]) as f:
        deploy_metrics = json.load(f)
    final_val = [s for s in scalars(tiny['work_dir']) if 'coco/bbox_mAP' in s][-1]
    assert deploy_metrics['coco/bbox_mAP'] == pytest.approx(final_val['coco/bbox_mAP'], abs=2e-3)


def test_infer_writes_png_and_json(tiny):
    out_dir = osp.join(tiny['base'], 'pred')
    images = sorted(glob.glob(osp.join(tiny['data'], 'val', '*.png')))[:2]
    grid = osp.join(tiny['base'], 'grid.png')
    run_tool('tools/infer.py', tiny['config'], osp.join(tiny['work_dir'], 'epoch_2.pth'), *images, '--out-dir',
             out_dir, '--score-thr', '0.05', '--grid', grid)
    import cv2
    for image in images:
        name = osp.splitext(osp.basename(image))[0]
        picture = cv2.imread(osp.join(out_dir, f'{name}.png'))
        assert picture is not None and picture.shape[:2] == (96, 96)
        with open(osp.join(out_dir, f'{name}.json')) as f:
            result = json.load(f)
        assert result['image'] == image
        for det in result['detections']:
            assert det['class'] in ('circle', 'square', 'triangle') and len(det['bbox']) == 4
            assert 0.0 <= det['score'] <= 1.0
    assert cv2.imread(grid).shape[1] >= 2 * 96


def test_distributed_two_processes_on_cpu(tiny):
    work_dir = osp.join(tiny['base'], 'dist')
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()), OMP_NUM_THREADS='1')
    proc = subprocess.run(['bash', 'tools/dist_train.sh', tiny['config'], '2', '--work-dir', work_dir,
                           '--cfg-options', 'train_cfg.max_epochs=1'], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    log = open(sorted(glob.glob(osp.join(work_dir, '*', '*.log')))[-1]).read()
    # mmengine prints the world size as "GPU number" whatever the device.
    assert 'Distributed training: True' in log and 'GPU number: 2' in log and "dist_cfg: {'backend': 'gloo'}" in log
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    train = [s for s in scalars(work_dir) if 'loss' in s]
    assert len(train) == 2  # 16 images / (2 processes x batch 4)


def test_test_py_refuses_a_checkpoint_that_would_run_code_with_one_error_line(tiny):
    """tools/test.py reads the checkpoint with the restricted unpickler (both stacks); main() prints one line."""
    import torch
    from mmghost.utils import safe_torch_load
    marker = osp.join(tiny['base'], 'pwned')
    checkpoint = safe_torch_load(osp.join(tiny['work_dir'], 'epoch_2.pth'))
    checkpoint['meta']['payload'] = _RunsCode(marker)
    evil = osp.join(tiny['base'], 'evil.pth')
    torch.save(checkpoint, evil)
    env = dict(os.environ)
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    proc = subprocess.run([sys.executable, 'tools/test.py', tiny['config'], evil, '--work-dir',
                           osp.join(tiny['base'], 'test_evil')], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'error: refused to load' in proc.stderr and 'Nothing from it was executed' in proc.stderr
    assert 'Traceback' not in proc.stderr and not osp.exists(marker)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))
