"""Every config in configs/ parses and builds; the paper configs run a forward in loss and predict modes."""
import glob
import os.path as osp

import pytest
import torch
from fixtures.detection_batch import total_loss, training_batch
from mmengine.config import Config

from mmghost.engine import build_detector
from mmghost.models import GhostNet, RepGhostNet

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# Detection configs. Classifiers are checked elsewhere: configs/imagenet/ by tests/test_imagenet_configs.py,
# configs/cifar10/ and the Ghost-ResNet-50 ImageNet configs (configs/ghost_resnet/*_in1k.py) by
# tests/test_ghost_networks.py; configs/deploy/ (mmdeploy settings, not models) by tests/deploy_stack/.
CONFIGS = sorted(c for c in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                 if not osp.relpath(c, osp.join(ROOT, 'configs')).startswith(('imagenet', 'cifar10', 'deploy'))
                 and '_base_' not in c and not c.endswith('_in1k.py'))
PAPER = ['configs/retinanet_ghostnet_fpn.py', 'configs/faster_rcnn_ghostnet_fpn.py']


def _build(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    return cfg, build_detector(cfg.copy())


def test_configs_found():
    names = {osp.relpath(c, ROOT) for c in CONFIGS}
    assert set(PAPER) <= names
    assert 'configs/demo/retinanet_ghostnet_shapes.py' in names
    assert 'configs/demo/retinanet_repghostnet_shapes.py' in names  # its RepGhostNet twin


@pytest.mark.parametrize('config', [osp.relpath(c, ROOT) for c in CONFIGS])
def test_config_builds(config):
    cfg, model = _build(config)
    assert cfg.custom_imports['imports'][0] == 'mmghost'
    assert cfg.auto_scale_lr.base_batch_size > 0
    if isinstance(model.backbone, (GhostNet, RepGhostNet)):
        # The neck takes exactly the backbone's outputs.
        assert list(cfg.model.neck.in_channels) == model.backbone.out_channels


@pytest.mark.parametrize('config', PAPER)
def test_paper_config_settings(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    backbone = cfg.model.backbone
    assert backbone.type == 'GhostNet' and backbone.widen_factor == 1.1
    assert backbone.out_indices == (1, 2, 3, 4) and backbone.frozen_stages == 0 and backbone.norm_eval
    assert backbone.init_cfg.type == 'SafePretrained'
    assert cfg.model.neck.in_channels == [28, 44, 124, 176]
    assert cfg.train_cfg.max_epochs == 12
    assert [s.get('milestones') for s in cfg.param_scheduler] == [None, [8, 11]]
    assert cfg.optim_wrapper.optimizer.type == 'SGD' and cfg.optim_wrapper.optimizer.momentum == 0.9
    assert cfg.optim_wrapper.optimizer.weight_decay == 1e-4
    assert cfg.optim_wrapper.optimizer.lr == (0.01 if 'retinanet' in config else 0.02)
    assert cfg.auto_scale_lr.base_batch_size == 16
    resize = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'Resize'][0]
    assert resize.scale == (1333, 800) and resize.keep_ratio
    if 'retinanet' in config:  # P3-P7
        assert cfg.model.neck.start_level == 1 and cfg.model.neck.num_outs == 5
    else:  # P2-P6
        assert cfg.model.neck.get('start_level', 0) == 0 and cfg.model.neck.num_outs == 5


@pytest.mark.parametrize('config', PAPER)
def test_paper_config_forward_loss_and_predict(config):
    torch.manual_seed(0)
    _, model = _build(config)
    data = training_batch(model)
    model.train()
    total = total_loss(model(**data, mode='loss'))
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.no_grad():
        results = model(**data, mode='predict')
    assert len(results) == 1 and hasattr(results[0], 'pred_instances')


@pytest.mark.parametrize('config', PAPER + ['configs/demo/retinanet_ghostnet_shapes.py',
                                            'configs/demo/retinanet_repghostnet_shapes.py'])
def test_configs_use_the_data_safety_net(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    assert 'mmghost.datasets' in cfg.custom_imports['imports']
    assert cfg.model.data_preprocessor.type == 'CheckedDetDataPreprocessor'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.type == 'SafeCocoDataset', loader


@pytest.mark.parametrize('config', [osp.relpath(c, ROOT) for c in CONFIGS])
def test_configs_opt_into_crash_safety(config):
    """Importing mmghost changes nothing: our configs ask for the runner and hooks by name."""
    cfg = Config.fromfile(osp.join(ROOT, config))
    assert cfg.runner_type == 'MMGhostRunner'
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert cfg.default_hooks.data_problems.type == 'DataProblemsHook'


def test_runner_of_a_user_config_on_top_of_ours_has_our_hooks(tmp_path):
    """A user's `default_hooks = dict(checkpoint=dict(interval=2))` keeps AtomicCheckpointHook (dicts merge)."""
    from mmengine.registry import RUNNERS

    from mmghost.datasets import DataProblemsHook
    from mmghost.engine import AtomicCheckpointHook, MMGhostRunner
    user = tmp_path / 'user.py'
    user.write_text(f"_base_ = {osp.join(ROOT, 'configs', 'demo', 'retinanet_ghostnet_shapes.py')!r}\n"
                    "default_hooks = dict(checkpoint=dict(interval=2))\n"
                    f"work_dir = {str(tmp_path / 'work')!r}\n")
    runner = RUNNERS.build(Config.fromfile(str(user)))  # as mmdet's tools/train.py builds a runner_type
    assert type(runner) is MMGhostRunner
    checkpoint = [h for h in runner.hooks if isinstance(h, AtomicCheckpointHook)]
    assert len(checkpoint) == 1 and checkpoint[0].interval == 2 and checkpoint[0].max_keep_ckpts == 1
    assert any(isinstance(h, DataProblemsHook) for h in runner.hooks)


def test_repghostnet_demo_twin_differs_from_the_ghostnet_demo_only_in_the_backbone_type():
    ghost = Config.fromfile(osp.join(ROOT, 'configs/demo/retinanet_ghostnet_shapes.py'))
    twin = Config.fromfile(osp.join(ROOT, 'configs/demo/retinanet_repghostnet_shapes.py'))
    assert twin.model.backbone.type == 'RepGhostNet' and ghost.model.backbone.type == 'GhostNet'
    twin.model.backbone.type = 'GhostNet'
    assert twin.to_dict() == ghost.to_dict()
