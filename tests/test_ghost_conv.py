"""``GhostConv`` (the Ghost module as a conv layer): parity with the official Ghost-ResNet module, bad settings,
lookup from every registry scope, use inside mmcv/mmdet modules, and the deploy fold of the following norm."""
import itertools
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from fixtures.official_ghost_module import OfficialGhostModule

import mmghost  # noqa: F401  registers GhostConv
from mmghost.models import GhostConv, deploy_model, fuse_ghost_conv_norm
from mmghost.models.dense_heads import GhostRPNHead
from mmghost.utils import CheckpointError

GHOST = dict(type='GhostConv', ratio=2, dw_size=3)


def randomize_norms(model, seed=0):
    """Give every batch norm non-trivial running statistics and affine parameters, as after training."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.randn(m.num_features, generator=gen) * 0.5 + 1)
                    m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.5)
    return model


def calibrate_norms(model, *inputs, seed=0):
    """Running statistics measured on ``inputs`` (as after training, they normalise what reaches them) and
    random affine parameters; leaves the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in norms:
            m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.5)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration forward
        model.train()
        model(*inputs)
    for m in norms:
        m.momentum = 0.1
    model.eval()
    return model


def randomize_biases(layer, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in (layer.primary_conv, layer.cheap_conv):
            if conv.bias is not None:
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen))


def load_into_official(layer, official):
    with torch.no_grad():
        for ours, theirs in ((layer.primary_conv, official.conv1), (layer.cheap_conv, official.conv2)):
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias if ours.bias is not None else torch.zeros_like(theirs.bias))


def assert_deploy_close(actual, expected):
    """Deploy output equals eval output within 1e-4 of the output's scale (float32 rounding grows with the
    magnitude of the activations; in float64 the fold is exact up to rounding)."""
    scale = max(1.0, expected.abs().max().item())
    error = (actual - expected).abs().max().item()
    assert error <= 1e-4 * scale, f'deploy differs from eval by {error} (outputs up to {scale})'


def bn_count(model):
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


# ---- semantics: the official ghost_resnet.GhostModule ----


@pytest.mark.parametrize('ratio,dw_size', itertools.product([2, 3, 4, 5], [1, 3, 5, 7]))
def test_output_equals_official_ghost_resnet_module_for_every_ratio_and_dw_size(ratio, dw_size):
    torch.manual_seed(ratio * 10 + dw_size)
    # odd and even channel counts, both kernels and strides, with and without biases
    for in_channels, out_channels, kernel, stride, bias in [(3, 7, 3, 2, True), (8, 13, 1, 1, False),
                                                            (5, 16, 3, 1, True), (4, 9, 3, 2, False)]:
        layer = GhostConv(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=bias,
                          ratio=ratio, dw_size=dw_size)
        randomize_biases(layer)
        official = OfficialGhostModule(in_channels, out_channels, kernel, dw_size=dw_size, ratio=ratio,
                                       stride=stride, padding=kernel // 2, bias=bias)
        load_into_official(layer, official)
        x = torch.randn(2, in_channels, 11, 10)
        expected = official(x)
        actual = layer(x)
        assert actual.shape == expected.shape == (2, out_channels, (11 - 1) // stride + 1, (10 - 1) // stride + 1)
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)
        # The layer's parameters: ceil(n/s) primary filters, (s-1)*ceil(n/s) depthwise ones.
        m = -(-out_channels // ratio)
        assert layer.primary_conv.weight.shape == (m, in_channels, kernel, kernel)
        assert layer.cheap_conv.weight.shape == (m * (ratio - 1), 1, dw_size, dw_size)


def test_padding_dilation_and_groups_reach_the_primary_conv():
    """The official module drops dilation and groups; here they shape the primary conv, as the layer's own."""
    torch.manual_seed(0)
    layer = GhostConv(8, 12, 3, stride=2, padding=(2, 1), dilation=(2, 1), groups=2, ratio=3, dw_size=5)
    randomize_biases(layer)
    x = torch.randn(1, 8, 15, 12)
    p, c = layer.primary_conv, layer.cheap_conv
    intrinsic = F.conv2d(x, p.weight, p.bias, stride=2, padding=(2, 1), dilation=(2, 1), groups=2)
    ghosts = F.conv2d(intrinsic, c.weight, c.bias, padding=2, groups=4)
    expected = torch.cat([intrinsic, ghosts], 1)[:, :12]
    torch.testing.assert_close(layer(x), expected)
    assert expected.shape == F.conv2d(x, torch.zeros(12, 4, 3, 3), stride=2, padding=(2, 1), dilation=(2, 1),
                                      groups=2).shape


def test_exposes_the_conv_attributes_mmcv_conv_module_reads():
    from mmcv.cnn import ConvModule
    module = ConvModule(6, 10, 3, stride=2, padding=1, dilation=1, conv_cfg=GHOST, norm_cfg=dict(type='BN'))
    layer = module.conv
    assert isinstance(layer, GhostConv)
    assert (module.in_channels, module.out_channels, module.kernel_size, module.stride, module.dilation,
            module.groups, module.transposed, module.output_padding) == (6, 10, (3, 3), (2, 2), (1, 1), 1, False,
                                                                         (0, 0))
    # bias='auto' with a norm: no bias, as for a plain conv
    assert layer.primary_conv.bias is None and layer.cheap_conv.bias is None
    assert module(torch.randn(2, 6, 9, 9)).shape == (2, 10, 5, 5)


def test_parameters_and_channels_last_output():
    layer = GhostConv(16, 32, 3, padding=1, bias=False, ratio=2, dw_size=3)
    # primary 16 -> 16 (3x3) + cheap 16 depthwise 3x3: about half of a 16 -> 32 3x3 conv
    assert sum(p.numel() for p in layer.parameters()) == 16 * 16 * 9 + 16 * 9
    x = torch.randn(2, 16, 8, 8)
    expected = layer(x)
    layer_cl = layer.to(memory_format=torch.channels_last)
    out = layer_cl(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected)
    assert out.is_contiguous(memory_format=torch.channels_last)


# ---- bad settings: one line naming the layer and the argument, at build time ----

BAD_SETTINGS = [
    (dict(ratio=1), 'ratio'),
    (dict(ratio=0), 'ratio'),
    (dict(ratio=2.0), 'ratio'),
    (dict(ratio=True), 'ratio'),
    (dict(dw_size=2), 'dw_size'),
    (dict(dw_size=0), 'dw_size'),
    (dict(dw_size=3.0), 'dw_size'),
    (dict(groups=3), 'groups'),  # 8 input channels
    (dict(out_channels=12, groups=4, ratio=5), 'groups'),  # divides 8 and 12, not ceil(12 / 5) = 3
    (dict(groups=0), 'groups'),
    (dict(in_channels=0), 'in_channels'),
    (dict(out_channels=2.5), 'out_channels'),
    (dict(kernel_size=0), 'kernel_size'),
    (dict(kernel_size=(3, 3, 3)), 'kernel_size'),
    (dict(stride=0), 'stride'),
    (dict(padding=-1), 'padding'),
    (dict(padding='full'), 'padding'),
    (dict(padding='same', stride=2), 'padding'),
    (dict(dilation=0), 'dilation'),
    (dict(bias='auto'), 'bias'),
    (dict(padding_mode='mirror'), 'padding_mode'),
]


@pytest.mark.parametrize('bad,argument', BAD_SETTINGS, ids=[f'{a}-{b}' for b, a in BAD_SETTINGS])
def test_bad_setting_fails_at_build_with_one_line_naming_layer_and_argument(bad, argument):
    from mmcv.cnn import build_conv_layer
    args = dict(in_channels=8, out_channels=16, kernel_size=3)
    args.update(bad)
    cfg = dict(type='GhostConv', **{k: args.pop(k) for k in ('ratio', 'dw_size') if k in args})
    with pytest.raises(ValueError) as info:
        build_conv_layer(cfg, args.pop('in_channels'), args.pop('out_channels'), args.pop('kernel_size'), **args)
    message = str(info.value)
    assert message.startswith(f'GhostConv: {argument} ') and '\n' not in message, message


def test_bad_setting_fails_when_conv_module_is_built():
    from mmcv.cnn import ConvModule
    with pytest.raises(ValueError, match='^GhostConv: dw_size '):
        ConvModule(8, 16, 3, conv_cfg=dict(type='GhostConv', dw_size=4))


# ---- registry: found from every scope, replacing nothing ----


@pytest.mark.parametrize('scope', ['mmdet', 'mmpretrain', 'my_project'])
def test_build_conv_layer_finds_ghost_conv_from_scope(scope):
    from mmcv.cnn import build_conv_layer
    from mmengine.registry import MODELS, DefaultScope, Registry
    if scope == 'mmpretrain':
        pytest.importorskip('mmpretrain')
        import mmpretrain.registry  # noqa: F401
    elif scope == 'mmdet':
        import mmdet.registry  # noqa: F401
    elif MODELS._search_child(scope) is None:
        Registry('model', parent=MODELS, scope=scope)  # a user's own registry, as OpenMMLab projects make them
    with DefaultScope.overwrite_default_scope(scope):
        assert DefaultScope.get_current_instance().scope_name == scope
        layer = build_conv_layer(dict(GHOST, ratio=3), 4, 9, 3, padding=1)
    assert isinstance(layer, GhostConv) and layer.ratio == 3


def test_build_conv_layer_finds_ghost_conv_without_default_scope():
    code = ('import mmghost; from mmengine.registry import DefaultScope; from mmcv.cnn import build_conv_layer; '
            'assert DefaultScope.get_current_instance() is None; '
            'layer = build_conv_layer(dict(type="GhostConv", ratio=2, dw_size=3), 4, 8, 3); '
            'print(type(layer).__module__, type(layer).__name__)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.split()[-2:] == ['mmghost.models.layers.ghost_conv', 'GhostConv']


def test_registered_in_root_models_only_under_new_names():
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.registry import MODELS
    assert MODELS.module_dict['GhostConv'] is GhostConv
    assert MODELS.module_dict['CifarResNet'].__module__ == 'mmghost.models.backbones.cifar_resnet'
    assert MMDET_MODELS.module_dict['GhostRPNHead'] is GhostRPNHead
    assert 'GhostConv' not in MMDET_MODELS.module_dict  # a scope's own entry would shadow ours there


# ---- init: like the conv it replaces ----


def test_sub_convs_get_conv_module_init_and_parent_init_cfg_reaches_them():
    from mmcv.cnn import ConvModule
    from mmdet.models.dense_heads import RetinaHead
    torch.manual_seed(0)
    # Alone or in a ConvModule: Kaiming normal, fan_out (std sqrt(2 / fan_out)), zero bias, as ConvModule's conv.
    layer = ConvModule(64, 256, 3, padding=1, conv_cfg=GHOST).conv
    primary = layer.primary_conv
    assert abs(primary.weight.std().item() - (2 / (128 * 9))**0.5) < 0.003
    assert primary.bias.abs().max() == 0
    # A parent's init_cfg (RetinaHead: Normal std 0.01 on every Conv2d) initializes both sub-convs.
    head = RetinaHead(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=1, conv_cfg=GHOST,
                      anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=3,
                                            ratios=[0.5, 1.0, 2.0], strides=[8]))
    head.init_weights()
    for conv in (head.cls_convs[0].conv.primary_conv, head.cls_convs[0].conv.cheap_conv):
        assert abs(conv.weight.std().item() - 0.01) < 0.002


# ---- deploy: the following norm folds into the two convs ----


@pytest.mark.parametrize('ratio,dw_size,bias', [(2, 3, False), (3, 1, True), (4, 5, False), (5, 7, True),
                                                (2, 1, False)])
def test_fold_norm_is_exact_in_float64(ratio, dw_size, bias):
    """The fold's maths, borders included: in float64 the folded layer equals conv + norm to rounding."""
    torch.manual_seed(ratio + dw_size)
    layer = GhostConv(5, 13, 3, stride=2, padding=1, bias=bias, ratio=ratio, dw_size=dw_size).double()
    randomize_biases(layer)
    norm = randomize_norms(nn.BatchNorm2d(13)).double().eval()
    with torch.no_grad():
        norm.weight[0] = 0  # a zero-initialised channel: its scale cannot be divided by and stays explicit
    x = torch.randn(2, 5, 17, 14, dtype=torch.float64)
    with torch.no_grad():
        expected = norm(layer(x))
        layer.fold_norm(norm)
        torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)
        assert layer.primary_scale is not None and layer.primary_scale.flatten()[0] == 0
        # A second norm folds on top of the first.
        norm2 = randomize_norms(nn.BatchNorm2d(13), seed=1).double().eval()
        expected2 = norm2(expected)
        layer.fold_norm(norm2)
        torch.testing.assert_close(layer(x), expected2, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('dw_size', [1, 3])
def test_fold_norm_leaves_at_most_a_shift_on_the_intrinsic_maps(dw_size):
    layer = GhostConv(4, 8, 3, padding=1, bias=False, dw_size=dw_size)
    norm = randomize_norms(nn.BatchNorm2d(8)).eval()
    x = torch.randn(1, 4, 6, 6)
    expected = norm(layer(x))
    layer.fold_norm(norm)
    assert layer.primary_scale is None
    if dw_size == 1:  # the cheap conv does not pad: the shift goes into the biases, the norm entirely into the convs
        assert layer.primary_shift is None
    else:  # a shift in the primary conv's bias would reach the cheap conv's zero padding
        assert layer.primary_shift.shape == (1, 4, 1, 1)
    torch.testing.assert_close(layer(x), expected)


def test_fold_refuses_group_norm():
    with pytest.raises(TypeError, match='batch norm'):
        GhostConv(4, 8, 3).fold_norm(nn.GroupNorm(2, 8))


def test_deploy_fold_in_conv_module_and_not_before_a_pre_norm():
    from mmcv.cnn import ConvModule
    torch.manual_seed(0)
    post = ConvModule(6, 10, 3, padding=1, conv_cfg=GHOST, norm_cfg=dict(type='BN'))
    pre = ConvModule(6, 10, 3, padding=1, conv_cfg=GHOST, norm_cfg=dict(type='BN'), order=('norm', 'conv', 'act'))
    model = randomize_norms(nn.Sequential(post, nn.Conv2d(10, 6, 1), pre)).eval()
    x = torch.randn(2, 6, 12, 12)
    expected = model(x)
    assert fuse_ghost_conv_norm(model) == 1  # the pre-norm acts on the input: nothing to fold
    assert isinstance(post.norm, nn.Identity) and isinstance(pre.norm, nn.BatchNorm2d)
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)
    assert fuse_ghost_conv_norm(model) == 0


def test_deploy_fold_on_mmdet_resnet50_with_ghost_conv():
    from mmdet.models.backbones import ResNet
    torch.manual_seed(0)
    model = ResNet(50, conv_cfg=GHOST, out_indices=(0, 1, 2, 3))
    x = torch.randn(2, 3, 64, 64)
    calibrate_norms(model, x)
    with torch.no_grad():
        expected = model(x)
    # stem + 3 per bottleneck (16) + 4 downsample branches; ResNet's own norm1..3 naming and Sequential branches
    assert fuse_ghost_conv_norm(model) == 1 + 16 * 3 + 4
    assert bn_count(model) == 0
    with torch.no_grad():
        actual = model(x)
    for a, e in zip(actual, expected):
        assert_deploy_close(a, e)


def test_deploy_fold_on_fpn_and_retina_head_with_ghost_conv():
    from mmdet.models.dense_heads import RetinaHead
    from mmdet.models.necks import FPN
    torch.manual_seed(0)
    bn = dict(type='BN')
    neck = FPN([16, 32], 24, 3, conv_cfg=GHOST, norm_cfg=bn, add_extra_convs='on_output')
    head = RetinaHead(num_classes=3, in_channels=24, feat_channels=24, stacked_convs=2, conv_cfg=GHOST,
                      norm_cfg=bn, anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                                                         scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                                                         strides=[8, 16, 32]))
    model = randomize_norms(nn.ModuleDict(dict(neck=neck, head=head))).eval()
    feats = (torch.randn(1, 16, 16, 16), torch.randn(1, 32, 8, 8))
    with torch.no_grad():
        expected = head(neck(feats))
    assert fuse_ghost_conv_norm(model) == bn_count(FPN([16, 32], 24, 3, norm_cfg=bn, add_extra_convs='on_output')) \
        + 2 * 2
    assert bn_count(model) == 0
    with torch.no_grad():
        actual = head(neck(feats))
    for a_level, e_level in zip(actual, expected):
        for a, e in zip(a_level, e_level):
            torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)


def test_deploy_model_is_what_test_deploy_hook_calls_and_says_when_there_is_nothing_to_do():
    from mmdet.models.backbones import ResNet

    from mmghost.engine import BackboneDeployHook

    class Runner:
        def __init__(self, model):
            self.model = model

    class Detector(nn.Module):
        def __init__(self, conv_cfg):
            super().__init__()
            self.backbone = ResNet(18, conv_cfg=conv_cfg, out_indices=(3, ))

    ghost = randomize_norms(Detector(GHOST)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = ghost.backbone(x)[0]
        BackboneDeployHook().before_test(Runner(ghost))
        torch.testing.assert_close(ghost.backbone(x)[0], expected, rtol=1e-4, atol=1e-4)
    assert bn_count(ghost) == 0
    with pytest.raises(TypeError, match='nothing to put in deploy mode'):
        BackboneDeployHook().before_test(Runner(Detector(None)))
    # tools/deploy.py: a model with nothing to deploy is returned as it is, unchanged
    plain = randomize_norms(Detector(None)).eval()
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    with torch.no_grad():
        expected = plain.backbone(x)[0]
        assert deploy_model(plain) is plain
        torch.testing.assert_close(plain.backbone(x)[0], expected, rtol=0, atol=0)
    assert plain.state_dict().keys() == before.keys()
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in before.items())
    assert bn_count(plain) == bn_count(Detector(None)) > 0


# ---- inside mmdet detectors: build, one training step, predict ----


def detector_step(cfg):
    """Build the detector, run one SGD step on a 64x64 image, predict; returns the model and the prediction."""
    from fixtures.detection_batch import total_loss, training_batch
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(cfg))  # as from a config file: heads read train_cfg/test_cfg by attribute
    model.init_weights()
    ghost_layers = [m for m in model.modules() if isinstance(m, GhostConv)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    data = training_batch(model, 64, 64, images=2)
    model.train()
    loss = total_loss(model.loss(data['inputs'], data['data_samples']))
    assert torch.isfinite(loss)
    loss.backward()
    before = ghost_layers[-1].cheap_conv.weight.detach().clone()
    trained = [m for m in ghost_layers if m.primary_conv.weight.requires_grad]  # not in frozen stages
    assert trained and all(m.primary_conv.weight.grad is not None and m.cheap_conv.weight.grad is not None
                           for m in trained)
    optimizer.step()
    assert not torch.equal(before, ghost_layers[-1].cheap_conv.weight)
    model.eval()
    with torch.no_grad():
        preds = model.predict(data['inputs'], data['data_samples'])
    assert len(preds) == 2 and preds[0].pred_instances.bboxes.shape[-1] == 4
    return model, ghost_layers


def test_retinanet_with_ghost_resnet50_fpn_and_head_trains_a_step_and_predicts():
    cfg = dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                               bgr_to_rgb=True, pad_size_divisor=32),
        backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(1, 2, 3), frozen_stages=1,
                      norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True, style='pytorch', conv_cfg=GHOST),
        neck=dict(type='FPN', in_channels=[512, 1024, 2048], out_channels=32, start_level=0,
                  num_outs=3, conv_cfg=GHOST),
        bbox_head=dict(type='RetinaHead', num_classes=4, in_channels=32, stacked_convs=2, feat_channels=32,
                       conv_cfg=GHOST,
                       anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=3,
                                             ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32]),
                       bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                                       target_stds=[1.0, 1.0, 1.0, 1.0]),
                       loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
                       loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                                     ignore_iof_thr=-1),
                       sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1, debug=False),
        test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5),
                      max_per_img=10))
    model, ghost_layers = detector_step(cfg)
    # backbone: stem + 16 blocks x 3 + 4 downsamples; FPN: 3 lateral + 3 output convs; head: 2 x 2
    assert len(ghost_layers) == 53 + 6 + 4
    assert isinstance(model.backbone.layer1[0].conv2, GhostConv)
    assert isinstance(model.neck.fpn_convs[0].conv, GhostConv) and isinstance(model.bbox_head.cls_convs[1].conv,
                                                                             GhostConv)


def test_rpn_with_ghost_rpn_head_trains_a_step_and_predicts():
    rpn_head = dict(type='GhostRPNHead', in_channels=32, feat_channels=32, conv_cfg=GHOST,
                    anchor_generator=dict(type='AnchorGenerator', scales=[2], ratios=[0.5, 1.0, 2.0],
                                          strides=[16, 32]),
                    bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                                    target_stds=[1.0, 1.0, 1.0, 1.0]),
                    loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
                    loss_bbox=dict(type='L1Loss', loss_weight=1.0))
    cfg = dict(
        type='RPN',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                               bgr_to_rgb=True, pad_size_divisor=32),
        backbone=dict(type='ResNet', depth=18, out_indices=(2, 3), conv_cfg=GHOST),
        neck=dict(type='FPN', in_channels=[256, 512], out_channels=32, num_outs=2, conv_cfg=GHOST),
        rpn_head=rpn_head,
        train_cfg=dict(rpn=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3,
                                              min_pos_iou=0.3, ignore_iof_thr=-1),
                                sampler=dict(type='RandomSampler', num=64, pos_fraction=0.5, neg_pos_ub=-1,
                                             add_gt_as_proposals=False),
                                allowed_border=-1, pos_weight=-1, debug=False)),
        test_cfg=dict(rpn=dict(nms_pre=100, max_per_img=10, nms=dict(type='nms', iou_threshold=0.7),
                               min_bbox_size=0)))
    model, _ = detector_step(cfg)
    assert isinstance(model.bbox_head.rpn_conv, GhostConv)  # mmdet's RPN detector names its head bbox_head


def test_ghost_rpn_head_without_conv_cfg_is_rpn_head():
    from mmdet.models.dense_heads import RPNHead
    anchors = dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0], strides=[8])
    for num_convs in (1, 2):
        torch.manual_seed(0)
        ours = GhostRPNHead(16, feat_channels=8, num_convs=num_convs, anchor_generator=anchors)
        torch.manual_seed(0)
        theirs = RPNHead(16, feat_channels=8, num_convs=num_convs, anchor_generator=anchors)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        ours.load_state_dict(theirs.state_dict())
        x = torch.randn(1, 16, 8, 8)
        for a, b in zip(ours.forward_single(x), theirs.forward_single(x)):
            torch.testing.assert_close(a, b)
    head = GhostRPNHead(16, feat_channels=8, num_convs=2, conv_cfg=GHOST, anchor_generator=anchors)
    assert all(isinstance(m.conv, GhostConv) for m in head.rpn_conv)


def test_folded_ghost_conv_exports_to_onnx_with_standard_ops_and_matches(tmp_path):
    """The deployed layer (two convs, the intrinsic shift, the residual scale of a zero-gamma channel) in ONNX."""
    onnx = pytest.importorskip('onnx', reason='onnx is an optional test extra (pip install onnx)')
    pytest.importorskip('onnxruntime', reason='onnxruntime is an optional test extra (pip install onnxruntime)')
    import export_onnx  # tools/export_onnx.py
    from mmcv.cnn import ConvModule

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = ConvModule(3, 8, 3, padding=1, conv_cfg=GHOST, norm_cfg=dict(type='BN'))
            self.b = ConvModule(8, 13, 3, stride=2, padding=1, conv_cfg=dict(GHOST, ratio=3, dw_size=5),
                                norm_cfg=dict(type='BN'))

        def forward(self, x):
            return (self.b(self.a(x)), )

    torch.manual_seed(0)
    net = randomize_norms(Net())
    with torch.no_grad():
        net.b.norm.weight[0] = 0
    net.eval()
    inputs = [torch.randn(2, 3, 21, 30), torch.randn(1, 3, 32, 17)]
    with torch.no_grad():
        expected = [net(x)[0] for x in inputs]
    deploy_model(net)
    assert net.b.conv.primary_scale is not None and net.b.conv.primary_shift is not None
    out = str(tmp_path / 'ghost.onnx')
    export_onnx.export(net, out, shape=(24, 24))
    ops = {node.op_type for node in onnx.load(out).graph.node}
    assert ops <= {'Conv', 'Relu', 'Concat', 'Slice', 'Mul', 'Add', 'Constant', 'Shape', 'Gather', 'Unsqueeze'}, ops
    assert max(export_onnx.verify(out, net, inputs).values()) <= 1e-4
    for x, e in zip(inputs, expected):
        assert_deploy_close(net(x)[0], e)


# ---- mistakes refused in one line instead of failing late or silently ----


def test_conv_module_with_efficient_conv_bn_eval_is_refused_when_built():
    from mmcv.cnn import ConvModule
    with pytest.raises(ValueError, match='efficient_conv_bn_eval') as error:
        ConvModule(8, 16, 3, padding=1, conv_cfg=GHOST, norm_cfg=dict(type='BN'), efficient_conv_bn_eval=True)
    assert '\n' not in str(error.value) and str(error.value).startswith('GhostConv: ')
    # built without it, the same layer works; turning the mode on afterwards fails at the first forward, same line
    module = ConvModule(8, 16, 3, padding=1, conv_cfg=GHOST, norm_cfg=dict(type='BN')).eval()
    x = torch.randn(1, 8, 12, 12)
    module(x)
    module.turn_on_efficient_conv_bn_eval(True)
    with pytest.raises(ValueError, match='^GhostConv: mmcv ConvModule\\(efficient_conv_bn_eval=True\\)'):
        module(x)
    # a GhostConv built outside any ConvModule is not affected
    assert GhostConv(8, 16, 3)(x).shape == (1, 16, 10, 10)


def _ghost_conv_module(bias='auto', dw_size=3):
    from mmcv.cnn import ConvModule
    torch.manual_seed(0)
    return randomize_norms(ConvModule(8, 16, 3, padding=1, bias=bias, norm_cfg=dict(type='BN'),
                                      conv_cfg=dict(GHOST, dw_size=dw_size))).eval()


@pytest.mark.parametrize('bias,dw_size', [('auto', 3), (True, 3), ('auto', 1)])
def test_folded_and_unfolded_weights_do_not_mix_silently(bias, dw_size):
    unfolded, folded = _ghost_conv_module(bias, dw_size), _ghost_conv_module(bias, dw_size)
    assert fuse_ghost_conv_norm(folded) == 1 and folded.conv.folded
    for target, source, says in ((_ghost_conv_module(bias, dw_size), folded, 'weights are of a folded'),
                                 (folded, unfolded, 'this layer is folded')):
        for strict in (True, False):
            with pytest.raises(CheckpointError, match=says) as error:
                target.load_state_dict(source.state_dict(), strict=strict)
            assert '\n' not in str(error.value) and 'GhostConv conv:' in str(error.value)
    # like into like loads, and the folded copy computes what the unfolded one does
    x = torch.randn(2, 8, 12, 12)
    other_folded = _ghost_conv_module(bias, dw_size)
    fuse_ghost_conv_norm(other_folded)
    other_folded.load_state_dict(folded.state_dict())
    _ghost_conv_module(bias, dw_size).load_state_dict(unfolded.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(other_folded(x), unfolded(x), rtol=1e-4, atol=1e-4)
