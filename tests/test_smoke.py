"""The installed stack works: mmghost imports, mmcv's compiled ops run on CPU, mmdet base configs resolve."""
import subprocess
import sys

import torch


def test_import_registers_backbone():
    import mmghost
    from mmdet.registry import MODELS
    assert mmghost.__version__
    assert MODELS.get('GhostNet') is mmghost.GhostNet


def test_import_needs_no_compiled_ops():
    """Backbone-only users (benchmarks, export) can use mmghost with an mmcv built without ops."""
    code = ('import sys, torch, mmghost; mmghost.GhostNet(1.0)(torch.rand(1, 3, 64, 64)); '
            'bad = [m for m in sys.modules if m.startswith("mmcv.ops")]; assert not bad, bad')
    subprocess.run([sys.executable, '-c', code], check=True)


def test_mmcv_ops_nms_and_roi_align_on_cpu():
    from mmcv.ops import RoIAlign, nms
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert dets.shape == (2, 5)
    feats = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8)
    rois = torch.tensor([[0, 0, 0, 4, 4]], dtype=torch.float32)
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=False)(feats, rois)
    assert out.shape == (1, 1, 2, 2)
    assert torch.isfinite(out).all() and out[0, 0, 1, 1] > out[0, 0, 0, 0]


def test_config_inheriting_mmdet_base_parses(tmp_path):
    from mmengine.config import Config
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text("_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'\n"
                        "custom_imports = dict(imports=['mmghost'], allow_failed_imports=False)\n"
                        "model = dict(backbone=dict(_delete_=True, type='GhostNet', widen_factor=1.1))\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.model.type == 'RetinaNet'
    assert cfg.model.backbone == dict(type='GhostNet', widen_factor=1.1)
    assert cfg.train_cfg.max_epochs == 12


def test_user_facing_errors_become_one_line_only_inside_a_tools_main(capsys, monkeypatch):
    """The `error:` line belongs to our tools' main() (exit_on_user_error), not to a global excepthook."""
    import sys

    import pytest

    from mmghost.utils import DataError, exit_on_user_error
    hook = sys.excepthook
    monkeypatch.delenv('MMGHOST_TRACEBACK', raising=False)
    with pytest.raises(SystemExit) as exit_info:
        with exit_on_user_error():
            raise DataError('annotation file a.json is not COCO')
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.splitlines()[0] == 'error: annotation file a.json is not COCO'
    worker = DataError('Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call '
                       'last):\n  File "x.py", line 1\nmmghost.utils.errors.DataError: img/3.png: not found')
    with pytest.raises(SystemExit):
        with exit_on_user_error():
            raise worker
    assert capsys.readouterr().err.splitlines()[0] == 'error: img/3.png: not found'
    with pytest.raises(ValueError, match='a bug'):  # not ours: the traceback stays
        with exit_on_user_error():
            raise ValueError('a bug')
    monkeypatch.setenv('MMGHOST_TRACEBACK', '1')
    with pytest.raises(DataError):
        with exit_on_user_error():
            raise DataError('shown with its traceback')
    assert sys.excepthook is hook
