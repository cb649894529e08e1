"""The GhostNetV2 / SSDLite configs: they build, tap what their necks expect, and run a loss and a predict step."""
import os.path as osp

import pytest
import torch
from fixtures.detection_batch import total_loss, training_batch
from mmengine.config import Config

from mmghost.engine import build_detector

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# config -> input size of the forward test (a multiple of 32; SSDLite's anchors are laid out for 320).
CONFIGS = {
    'configs/retinanet_ghostnetv2-1.0x_fpn.py': (128, 160),
    'configs/faster_rcnn_ghostnetv2-1.0x_fpn.py': (128, 160),
    'configs/yolov3_ghostnetv2-1.0x_320.py': (320, 320),
    'configs/yolov3_ghostnetv2-1.0x_416.py': (416, 416),
    'configs/ssdlite_ghostnet-1.0x_320.py': (320, 320),
    'configs/retinanet_repghostnet-1.11x_fpn.py': (128, 160),
    'configs/ssdlite_repghostnet-1.11x_320.py': (320, 320),
}
V2_WEIGHTS = 'checkpoints/ghostnetv2_1.0x_imagenet.pth'


def _cfg(config):
    return Config.fromfile(osp.join(ROOT, config))


@pytest.mark.parametrize('config', list(CONFIGS))
def test_neck_takes_what_the_backbone_gives(config):
    cfg = _cfg(config)
    model = build_detector(cfg.copy())
    neck_in = list(cfg.model.neck.in_channels)
    if 'yolov3' in config:
        neck_in = neck_in[::-1]  # YOLOv3's neck lists the deepest level first
    assert neck_in == model.backbone.out_channels
    assert type(model.backbone).__name__ == cfg.model.backbone.type


@pytest.mark.parametrize('config', [c for c in CONFIGS if 'ghostnetv2' in c])
def test_v2_configs_start_from_the_public_v2_weights(config):
    backbone = _cfg(config).model.backbone
    assert backbone.type == 'GhostNetV2' and backbone.widen_factor == 1.0
    assert backbone.init_cfg.type == 'SafePretrained' and backbone.init_cfg.checkpoint == V2_WEIGHTS


def test_paper_v1_setup_is_inherited_by_the_v2_fpn_configs():
    for name in ('retinanet', 'faster_rcnn'):
        v1, v2 = _cfg(f'configs/{name}_ghostnet_fpn.py'), _cfg(f'configs/{name}_ghostnetv2-1.0x_fpn.py')
        for key in ('out_indices', 'frozen_stages', 'norm_eval', 'norm_cfg'):
            assert v2.model.backbone[key] == v1.model.backbone[key], key
        assert v2.model.neck.in_channels == [24, 40, 112, 160]
        assert v2.optim_wrapper == v1.optim_wrapper and v2.param_scheduler == v1.param_scheduler
        assert v2.train_cfg == v1.train_cfg


@pytest.mark.parametrize('size', [320, 416])
def test_yolov3_configs_keep_mmdets_mobilenetv2_recipe(size):
    cfg = _cfg(f'configs/yolov3_ghostnetv2-1.0x_{size}.py')
    assert cfg.model.backbone.out_indices == (2, 3, 4)
    assert cfg.model.neck.in_channels == [160, 112, 40] and cfg.model.neck.out_channels == [96, 96, 96]
    assert cfg.train_cfg.max_epochs == 30 and cfg.train_dataloader.dataset.times == 10
    assert cfg.train_dataloader.batch_size == 24 and cfg.auto_scale_lr.base_batch_size == 192
    assert cfg.optim_wrapper.optimizer.lr == 0.003
    resize = [t for t in cfg.test_dataloader.dataset.pipeline if t.type == 'Resize'][0]
    assert resize.scale == (size, size)
    train_resize = [t for t in cfg.train_dataloader.dataset.dataset.pipeline if 'Resize' in t.type][0]
    if size == 416:  # multi-scale training
        assert train_resize.type == 'RandomResize' and train_resize.scale == [(320, 320), (416, 416)]
    else:
        assert train_resize.scale == (320, 320)


def test_ssdlite_config_keeps_mmdets_recipe():
    cfg = _cfg('configs/ssdlite_ghostnet-1.0x_320.py')
    backbone = cfg.model.backbone
    assert backbone.type == 'GhostNet' and backbone.widen_factor == 1.0 and backbone.out_indices == (3, 5)
    assert backbone.norm_cfg == dict(type='BN', eps=0.001, momentum=0.03)
    assert cfg.model.neck.in_channels == (112, 960)
    assert cfg.model.bbox_head.in_channels == cfg.model.neck.out_channels
    # mmdet 3.3.0's own SSDHead fails in predict (no loss_cls attribute; mmdetection issue #11063).
    assert cfg.model.bbox_head.type == 'SSDHeadCompat' and 'mmghost.models.ssd_head' in cfg.custom_imports.imports
    assert cfg.train_cfg.max_epochs == 120 and cfg.train_dataloader.dataset.times == 5
    assert cfg.optim_wrapper.optimizer.lr == 0.015 and cfg.auto_scale_lr.base_batch_size == 192
    resize = [t for t in cfg.test_dataloader.dataset.pipeline if t.type == 'Resize'][0]
    assert resize.scale == (320, 320) and not resize.keep_ratio


@pytest.mark.parametrize('config', list(CONFIGS))
def test_configs_use_the_data_safety_net_and_crash_safety(config):
    cfg = _cfg(config)
    assert cfg.custom_imports['imports'][:2] == ['mmghost', 'mmghost.datasets']
    assert cfg.model.data_preprocessor.type == 'CheckedDetDataPreprocessor'
    train = cfg.train_dataloader.dataset
    assert (train.dataset if train.type == 'RepeatDataset' else train).type == 'SafeCocoDataset'
    for loader in ('val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.type == 'SafeCocoDataset', loader
    assert cfg.runner_type == 'MMGhostRunner'
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert cfg.default_hooks.data_problems.type == 'DataProblemsHook'


@pytest.mark.parametrize('config', list(CONFIGS))
def test_config_runs_a_loss_and_a_predict_step(config):
    torch.manual_seed(0)
    model = build_detector(_cfg(config))
    # Two images: SSD's last extra level is 1x1, and its batch norm needs two values in training.
    data = training_batch(model, *CONFIGS[config], images=2)
    model.train()
    total = total_loss(model(**data, mode='loss'))
    assert torch.isfinite(total)
    total.backward()
    assert any(p.grad is not None and p.grad.any() for p in model.backbone.parameters())
    model.eval()
    with torch.no_grad():
        results = model(**data, mode='predict')
    assert len(results) == 2 and all(hasattr(r, 'pred_instances') for r in results)


def test_repghostnet_configs_are_the_ghostnet_recipes_with_repghostnet_1_11x():
    """RetinaNet: the paper setup of retinanet_ghostnet_fpn.py (GhostNet-1.1x's channels at 1.11x) from the 1.11x
    ImageNet weights; SSDLite: ssdlite_ghostnet-1.0x_320.py's recipe with RepGhostNet's outputs 3 and 5."""
    retina, retina_v1 = _cfg('configs/retinanet_repghostnet-1.11x_fpn.py'), _cfg('configs/retinanet_ghostnet_fpn.py')
    backbone = retina.model.backbone
    assert backbone.type == 'RepGhostNet' and backbone.widen_factor == 1.11
    assert backbone.init_cfg == dict(type='SafePretrained', checkpoint='checkpoints/repghostnet_1.11x_imagenet.pth')
    for key in ('out_indices', 'frozen_stages', 'norm_eval', 'norm_cfg'):
        assert backbone[key] == retina_v1.model.backbone[key], key
    assert retina.model.neck == retina_v1.model.neck and retina.optim_wrapper == retina_v1.optim_wrapper
    assert retina.train_cfg == retina_v1.train_cfg and retina.param_scheduler == retina_v1.param_scheduler
    ssd, ssd_v1 = _cfg('configs/ssdlite_repghostnet-1.11x_320.py'), _cfg('configs/ssdlite_ghostnet-1.0x_320.py')
    assert ssd.model.backbone.type == 'RepGhostNet' and ssd.model.backbone.widen_factor == 1.11
    assert ssd.model.backbone.out_indices == (3, 5) and ssd.model.neck.in_channels == (124, 1064)
    assert ssd.model.bbox_head.in_channels == ssd.model.neck.out_channels
    assert ssd.optim_wrapper == ssd_v1.optim_wrapper and ssd.train_cfg == ssd_v1.train_cfg
