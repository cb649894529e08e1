"""``CifarResNet`` (He et al.'s CIFAR ResNet) and the GhostNet paper's CIFAR-10 networks (Ghost-ResNet-56, Ghost-VGG-16
through mmpretrain's ``VGG``): parameters against the papers, shapes, freezing, the deploy fold, and build + one
training step + predict inside mmpretrain's ``ImageClassifier`` (those tests need mmpretrain: the torch 2.1 stack)."""
import pytest
import torch
import torch.nn as nn

import mmghost  # noqa: F401  registers CifarResNet and GhostConv
from fixtures.param_formulas import cifar_resnet_params
from mmghost.models import CifarResNet, GhostConv, deploy_model, fuse_ghost_conv_norm

GHOST = dict(type='GhostConv', ratio=2, dw_size=3)
HEAD_PARAMS = 64 * 10 + 10  # the 10-class linear classifier on the pooled 64 channels


def count(module):
    return sum(p.numel() for p in module.parameters())


# He et al., Deep Residual Learning (CVPR 2016), Table 6: CIFAR-10 networks with option A shortcuts, params quoted
# to two significant figures; the tolerance is half a unit of the last quoted digit.
HE_ET_AL_PARAMS = {20: (0.27e6, 0.005e6), 32: (0.46e6, 0.005e6), 44: (0.66e6, 0.005e6), 56: (0.85e6, 0.005e6),
                   110: (1.7e6, 0.05e6)}


@pytest.mark.parametrize('depth', sorted(HE_ET_AL_PARAMS))
def test_plain_params_match_he_et_al_table_6(depth):
    quoted, tolerance = HE_ET_AL_PARAMS[depth]
    params = count(CifarResNet(depth)) + HEAD_PARAMS
    assert abs(params - quoted) <= tolerance, (depth, params)


def test_bad_depth_and_arguments_raise_value_error_naming_them():
    for kwargs, argument in ((dict(depth=18), 'depth'), (dict(depth=50), 'depth'), (dict(shortcut='C'), 'shortcut'),
                             (dict(out_indices=(3, )), 'out_indices'), (dict(frozen_stages=4), 'frozen_stages')):
        with pytest.raises(ValueError, match=f'^CifarResNet: {argument} '):
            CifarResNet(**kwargs)


def test_output_shapes_of_every_stage():
    model = CifarResNet(20, out_indices=(0, 1, 2))
    outs = model(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8)]
    assert model.feat_dim == 64


def test_option_b_projects_with_convs_and_option_a_has_no_shortcut_params():
    a, b = CifarResNet(20, shortcut='A'), CifarResNet(20, shortcut='B')
    # option B adds a 1x1 conv + BN where the shape changes: 16 -> 32 and 32 -> 64
    assert count(b) - count(a) == 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    assert b(torch.randn(1, 3, 32, 32))[0].shape == (1, 64, 8, 8)


def test_ghost_resnet56_builds_with_every_conv_a_ghost_conv_and_about_half_the_params():
    plain, ghost = CifarResNet(56), CifarResNet(56, conv_cfg=GHOST)
    convs = [m for m in ghost.modules() if isinstance(m, GhostConv)]
    assert len(convs) == 1 + 27 * 2  # stem + two per block; option A shortcuts have no conv
    assert not any(isinstance(m, nn.Conv2d) for m in ghost.modules()
                   if not any(m is c.primary_conv or m is c.cheap_conv for c in convs))
    # both exactly the formula (tests/fixtures/param_formulas.py: He et al.'s architecture, the paper's Ghost
    # module; the plain count against He et al.'s 0.85M: test_plain_params_match_he_et_al_table_6)
    assert count(plain) + HEAD_PARAMS == cifar_resnet_params(56)
    assert count(ghost) + HEAD_PARAMS == cifar_resnet_params(56, ratio=2, dw_size=3)
    assert ghost(torch.randn(2, 3, 32, 32))[0].shape == (2, 64, 8, 8)


def test_frozen_stages_and_norm_eval():
    model = CifarResNet(20, frozen_stages=1, norm_eval=True)
    model.train()
    assert not any(p.requires_grad for p in model.conv1.parameters())
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert model.layer2.training


def test_zero_init_residual_zeroes_each_blocks_last_norm():
    model = CifarResNet(20, zero_init_residual=True)
    model.init_weights()
    assert all(block.norm2.weight.abs().max() == 0 for layer in (model.layer1, model.layer3) for block in layer)


def test_deploy_fold_on_ghost_resnet56():
    torch.manual_seed(0)
    model = CifarResNet(56, conv_cfg=GHOST)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        model.train()
        model(x)  # running statistics of this input, as after training
    model.eval()
    with torch.no_grad():
        expected = model(x)[0]
        assert fuse_ghost_conv_norm(model) == 1 + 27 * 2  # the stem's norm1 and each block's norm1/norm2
        actual = model(x)[0]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert (actual - expected).abs().max() <= 1e-4 * max(1.0, expected.abs().max().item())


def test_found_from_the_mmdet_scope():
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(dict(type='CifarResNet', depth=20, conv_cfg=GHOST))
    assert isinstance(model, CifarResNet) and isinstance(model.layer3[0].conv1, GhostConv)


# ---- inside mmpretrain's ImageClassifier (torch 2.1 stack) ----


def classifier_cfg(backbone, in_channels):
    return dict(
        type='ImageClassifier',
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=10, mean=[125.307, 122.961, 113.8575],
                               std=[51.5865, 50.847, 51.255], to_rgb=False),
        backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=in_channels,
                  loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))


def classifier_step(cfg):
    """Build in mmpretrain's scope, one SGD step on four 32x32 images, predict; returns the model and a batch."""
    pytest.importorskip('mmpretrain')
    from mmengine.optim import OptimWrapper
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    data = dict(inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8) for _ in range(4)],
                data_samples=[DataSample().set_gt_label(i) for i in range(4)])
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    ghost = [m for m in model.modules() if isinstance(m, GhostConv)]
    before = ghost[0].cheap_conv.weight.detach().clone()
    model.train()
    losses = model.train_step(data, optim_wrapper)
    assert torch.isfinite(losses['loss'])
    assert not torch.equal(before, ghost[0].cheap_conv.weight)
    preds = model.val_step(data)
    assert len(preds) == 4 and preds[0].pred_score.shape == (10, )
    return model, data


def assert_deploy_equals_eval(model, data):
    model.eval()
    with torch.no_grad():
        inputs = model.data_preprocessor(data, False)['inputs']
        expected = model(inputs, mode='tensor')
        assert deploy_model(model) is model
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        actual = model(inputs, mode='tensor')
    assert (actual - expected).abs().max() <= 1e-4 * max(1.0, expected.abs().max().item())


def test_ghost_resnet56_in_mmpretrain_image_classifier_trains_a_step_predicts_and_deploys():
    model, data = classifier_step(classifier_cfg(dict(type='CifarResNet', depth=56, conv_cfg=GHOST), 64))
    assert isinstance(model.backbone, CifarResNet)
    assert_deploy_equals_eval(model, data)


def test_ghost_vgg16_in_mmpretrain_image_classifier_trains_a_step_predicts_and_deploys():
    backbone = dict(type='VGG', depth=16, norm_cfg=dict(type='BN'), conv_cfg=GHOST)
    model, data = classifier_step(classifier_cfg(backbone, 512))
    convs = [m for m in model.backbone.modules() if isinstance(m, GhostConv)]
    assert len(convs) == 13  # every conv of VGG-16's feature extractor
    assert_deploy_equals_eval(model, data)
