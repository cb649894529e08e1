"""The mmpretrain ImageNet configs (configs/imagenet/): recipe, architecture = GhostNetClassifier, a short training
through tools/train.py whose checkpoint loads into the detection backbone and into GhostNetClassifier.

They need mmpretrain (and torchvision): they run in the torch-2.1 stack (.venv-torch21) and skip elsewhere.
"""
import os.path as osp

import pytest
import torch

pytest.importorskip('mmpretrain', reason='the ImageNet configs need mmpretrain (the torch-2.1 stack)')

from mmengine.config import Config  # noqa: E402

from mmghost.models import GhostNet, GhostNetClassifier  # noqa: E402
from mmghost.models.classifiers import classifier_class  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# config -> (backbone, width) of the GhostNetClassifier-family network it must equal
NETWORKS = {'configs/imagenet/ghostnet-1.0x_8xb128_in1k.py': ('GhostNet', 1.0),
            'configs/imagenet/ghostnet-1.1x_8xb128_in1k.py': ('GhostNet', 1.1),
            'configs/imagenet/ghostnet-1.3x_8xb128_in1k.py': ('GhostNet', 1.3),
            'configs/imagenet/ghostnetv2-1.0x_8xb128_in1k.py': ('GhostNetV2', 1.0)}


def _build(cfg):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    import mmghost.models.heads  # noqa: F401  (what the config's custom_imports does)
    init_default_scope(cfg.default_scope)
    return MODELS.build(cfg.model)


def _classifier_state(image_classifier_state):
    """ImageClassifier keys -> GhostNetClassifier (official) keys: backbone.X -> X, head.X -> X."""
    out = {}
    for key, value in image_classifier_state.items():
        for prefix in ('backbone.', 'head.'):
            if key.startswith(prefix):
                out[key[len(prefix):]] = value
    return out


@pytest.mark.parametrize('config', sorted(NETWORKS))
def test_imagenet_config_is_ghostnet_classifier(config):
    """Same parameters (count and shapes, official names) and the same logits as GhostNetClassifier(width)
    (GhostNetV2's classifier for the V2 config)."""
    cfg = Config.fromfile(osp.join(ROOT, config))
    backbone, width = NETWORKS[config]
    model = _build(cfg).eval()
    reference = classifier_class(backbone)(width).eval()
    if backbone == 'GhostNet':
        assert isinstance(reference, GhostNetClassifier)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    state = _classifier_state(model.state_dict())
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in reference.state_dict().items()}
    reference.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(model(x, mode='tensor'), reference(x), rtol=1e-4, atol=1e-5)


def test_imagenet_config_recipe():
    cfg = Config.fromfile(osp.join(ROOT, 'configs/imagenet/ghostnet-1.1x_8xb128_in1k.py'))
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.model.backbone.type == 'mmdet.GhostNet' and cfg.model.backbone.widen_factor == 1.1
    head = cfg.model.head
    assert (head.in_channels, head.mid_channels, head.dropout_rate) == (1056, 1280, 0.2)
    assert head.loss.type == 'LabelSmoothLoss' and head.loss.label_smooth_val == 0.1
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.momentum, optimizer.weight_decay) == ('SGD', 0.4, 0.9, 4e-5)
    assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 1024
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.end, cosine.type, cosine.begin, cosine.end) == (
        'LinearLR', 5, 'CosineAnnealingLR', 5, 400)
    assert cfg.train_cfg.max_epochs == 400
    train = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert train['RandomResizedCrop'].scale == 224 and train['RandomFlip'].prob == 0.5
    assert (train['ColorJitter'].brightness, train['ColorJitter'].contrast, train['ColorJitter'].saturation) == (
        0.4, 0.4, 0.4)
    test = {t.type: t for t in cfg.test_dataloader.dataset.pipeline}
    assert test['ResizeEdge'].scale == 256 and test['CenterCrop'].crop_size == 224


@pytest.fixture(scope='module')
def tiny_imagenet(tmp_path_factory):
    """An ImageNet-format folder (train/<class>/, val/<class>/, meta/{train,val}.txt) of 4 classes."""
    import make_shapes_classification
    root = tmp_path_factory.mktemp('tiny_imagenet')
    make_shapes_classification.main([str(root), '--train', '3', '--val', '1', '--size', '64'])
    return root


# ~7 s on an idle 2-core machine (1 epoch of 3 batches at 224 px), so not marked slow.
def test_imagenet_config_trains_and_its_checkpoint_loads_into_detector_and_classifier(tiny_imagenet, tmp_path):
    import train
    work_dir = tmp_path / 'work'
    train.main([
        osp.join(ROOT, 'configs/imagenet/ghostnet-1.1x_8xb128_in1k.py'), '--work-dir', str(work_dir),
        '--cfg-options', f'train_dataloader.dataset.data_root={tiny_imagenet}',
        f'val_dataloader.dataset.data_root={tiny_imagenet}', f'test_dataloader.dataset.data_root={tiny_imagenet}',
        'train_dataloader.batch_size=4', 'val_dataloader.batch_size=4', 'test_dataloader.batch_size=4',
        'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'val_dataloader.persistent_workers=False',
        'test_dataloader.persistent_workers=False', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
        'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1', 'randomness.seed=0'
    ])
    checkpoint = work_dir / 'epoch_1.pth'
    assert checkpoint.is_file()
    state = torch.load(checkpoint, map_location='cpu')['state_dict']
    trained = state['backbone.blocks.6.0.ghost1.primary_conv.0.weight']

    # 1. the detection backbone, through init_cfg, as the 1.1x detection configs name it
    backbone = GhostNet(1.1, out_indices=(1, 2, 3, 4),
                        init_cfg=dict(type='SafePretrained', checkpoint=str(checkpoint), prefix='backbone.'))
    backbone.init_weights()
    assert torch.equal(backbone.blocks[6][0].ghost1.primary_conv[0].weight, trained)
    assert torch.equal(backbone.bn1.running_var, state['backbone.bn1.running_var'])

    # 2. the detection config itself
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(osp.join(ROOT, 'configs/retinanet_ghostnet_fpn.py'))
    cfg.model.backbone.init_cfg = dict(type='SafePretrained', checkpoint=str(checkpoint), prefix='backbone.')
    init_default_scope('mmdet')
    detector = MODELS.build(cfg.model)
    detector.backbone.init_weights()
    assert torch.equal(detector.backbone.blocks[6][0].ghost1.primary_conv[0].weight, trained)

    # 3. GhostNetClassifier, as it is (the backbone.*/head.* keys are re-keyed by the family's loader), giving the
    #    trained network's logits; and the detection backbone without a prefix
    classifier = GhostNetClassifier(1.1).eval()
    classifier.load_state_dict(state, strict=True)
    assert torch.equal(classifier.conv_head.weight, state['head.conv_head.weight'])
    cfg = Config.fromfile(osp.join(ROOT, 'configs/imagenet/ghostnet-1.1x_8xb128_in1k.py'))
    model = _build(cfg).eval()
    model.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(model(x, mode='tensor'), classifier(x), rtol=1e-4, atol=1e-5)
    backbone = GhostNet(1.1, out_indices=(1, 2, 3), init_cfg=dict(type='Pretrained', checkpoint=str(checkpoint)))
    backbone.init_weights()
    assert torch.equal(backbone.blocks[6][0].ghost1.primary_conv[0].weight, trained)

    # 4. the widening tool reads it too (trunk under backbone., head under head.)
    import widen_weights
    widened = tmp_path / 'widened_1.3x.pth'
    widen_weights.main([str(checkpoint), str(widened), '--width', '1.3'])
    wide = GhostNetClassifier(1.3).eval()
    wide.load_state_dict(torch.load(widened, map_location='cpu'), strict=True)
    with torch.no_grad():
        logits = classifier(x)
        assert float((wide(x) - logits).abs().max()) < 1e-4 * float(logits.abs().max())


def test_miniature_config_reads_the_generated_classification_set(tiny_imagenet):
    """configs/imagenet/ghostnet-1.0x_shapes-cls.py + tools/make_shapes_classification.py: classes from the folders,
    in the head's order, 64 px crops."""
    import make_shapes_classification
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    cfg = Config.fromfile(osp.join(ROOT, 'configs/imagenet/ghostnet-1.0x_shapes-cls.py'))
    model = _build(cfg)
    assert model.head.num_classes == len(make_shapes_classification.CLASSES) == 4
    init_default_scope('mmpretrain')
    dataset = DATASETS.build(dict(cfg.train_dataloader.dataset, data_root=str(tiny_imagenet)))
    assert tuple(dataset.metainfo['classes']) == make_shapes_classification.CLASSES
    assert len(dataset) == 12
    sample = dataset[len(dataset) - 1]
    assert tuple(sample['inputs'].shape) == (3, 64, 64)
    assert int(sample['data_samples'].gt_label) == make_shapes_classification.CLASSES.index('triangle')
