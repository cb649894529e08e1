"""GhostNet backbone: shapes, widths, counts, freezing, gradient checkpointing, hooks, deploy mode, validation."""
import math

import pytest
import torch
import torch.nn as nn
from mmengine.analysis import get_model_complexity_info
from torch.nn.modules.batchnorm import _BatchNorm

from fixtures.backbone_training import randomize_bn, train_step
from fixtures.timm_reference import (PAPER_TABLE7_FLOPS, PAPER_TABLE7_PARAMS, PAPER_TABLE8_BACKBONE_FLOPS_1_1X,
                                     timm_ghostnet_100_parameter_count)
from mmghost.models import GhostBottleneck, GhostModule, GhostNet, GhostNetClassifier
from mmdet.registry import MODELS

# Channels of outputs 0-5 (stem, stride 4/8/16/32, final conv) per width, worked out by hand from
# make_divisible(c * alpha, 4) on (16, 24, 40, 112, 160, 960).
CHANNELS = {
    0.5: [8, 12, 20, 56, 80, 480],
    1.0: [16, 24, 40, 112, 160, 960],
    1.1: [16, 28, 44, 124, 176, 1056],
    1.3: [20, 32, 52, 144, 208, 1248],
}
# Spatial sizes of outputs 0-5 for each input (3x3/2 stem, then stride-2 depthwise convs with k=3 or 5).
SIZES = {
    (224, 224): [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7), (7, 7)],
    (225, 301): [(113, 151), (57, 76), (29, 38), (15, 19), (8, 10), (8, 10)],
}


@pytest.mark.parametrize('widen_factor', sorted(CHANNELS))
@pytest.mark.parametrize('size', sorted(SIZES))
def test_output_shapes(widen_factor, size):
    model = GhostNet(widen_factor=widen_factor, out_indices=(0, 1, 2, 3, 4, 5)).eval()
    assert model.out_channels == CHANNELS[widen_factor]
    with torch.no_grad():
        outs = model(torch.rand(1, 3, *size))
    assert [tuple(o.shape) for o in outs] == [(1, c, h, w) for c, (h, w) in zip(CHANNELS[widen_factor],
                                                                                 SIZES[size])]


def test_default_outputs_and_feature_info():
    model = GhostNet(widen_factor=1.1)
    assert model.out_indices == (1, 2, 3, 4)
    assert model.out_channels == [28, 44, 124, 176]
    assert [(f['num_chs'], f['reduction'], f['module']) for f in model.feature_info] == [
        (28, 4, 'blocks.2'), (44, 8, 'blocks.4'), (124, 16, 'blocks.6'), (176, 32, 'blocks.8')]
    assert [(f['reduction'], f['module']) for f in model.all_feature_info[::5]] == [(2, 'act1'), (32, 'blocks.9')]
    outs = model(torch.rand(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(2, 28, 16, 24), (2, 44, 8, 12), (2, 124, 4, 6), (2, 176, 2, 3)]


def test_built_from_mmdet_registry():
    model = MODELS.build(dict(type='GhostNet', widen_factor=1.0, out_indices=(2, 5)))
    assert isinstance(model, GhostNet) and model.out_channels == [40, 960]


def test_official_block_layout():
    """Group sizes, strides, kernels and SE placement follow the official cfgs (16 bottlenecks, 9 groups)."""
    model = GhostNet(out_indices=(5, ))
    groups = list(model.blocks)[:-1]
    assert len(GhostNet().blocks) == 9  # the detection default stops before the final conv
    assert [len(g) for g in groups] == [1, 1, 1, 1, 1, 1, 5, 1, 4]
    blocks = [b for g in groups for b in g]
    assert len(blocks) == 16
    assert [b.stride for b in blocks] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    assert [b.se is not None for b in blocks] == [
        False, False, False, True, True, False, False, False, False, True, True, True, False, True, False, True]
    assert [b.ghost1.out_channels for b in blocks] == [
        16, 48, 72, 72, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960, 960, 960]
    # SE squeeze = make_divisible(exp * 0.25, 4); e.g. 72 -> 20, 120 -> 32, 480 -> 120, 672 -> 168.
    assert [b.se.conv_reduce.out_channels for b in blocks if b.se is not None] == [20, 32, 120, 168, 168, 240, 240]


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_timm():
    """Independent reference: timm's ghostnet_100 (its parameter shapes, stored by timm 1.0.31 in
    tests/fixtures/ghostnet_parity.npz): 5,182,508 parameters with the 1280-d head and the 1000-way classifier.
    The trunk with the final 1x1 conv, and the detection backbone (to the stride-32 bottlenecks), are timm's
    model cut at the same blocks."""
    assert _count(GhostNetClassifier(1.0)) == timm_ghostnet_100_parameter_count() == 5_182_508
    assert _count(GhostNet(1.0, out_indices=(5, ))) == timm_ghostnet_100_parameter_count(deepest_output=5)
    for deepest in range(5):  # only the stages up to the deepest output are built
        assert _count(GhostNet(1.0, out_indices=(deepest, ))) == timm_ghostnet_100_parameter_count(deepest)
    assert _count(GhostNet(1.0)) == timm_ghostnet_100_parameter_count(deepest_output=4)


@pytest.mark.parametrize('widen_factor,timm_name', [(0.5, 'ghostnet_050'), (1.0, 'ghostnet_100'),
                                                     (1.3, 'ghostnet_130')])
def test_parameter_counts_match_live_timm(widen_factor, timm_name):
    """Independent reference, computed live where timm is installed (the torch 2.1 stack): our ImageNet
    classifier has exactly as many parameters as timm's GhostNet of the same width (V2 and V3:
    tests/test_family_parity.py)."""
    timm = pytest.importorskip('timm', reason='timm is installed in .venv-torch21 only')
    reference = timm.create_model(timm_name, pretrained=False)
    assert _count(GhostNetClassifier(widen_factor)) == _count(reference)


@pytest.mark.parametrize('widen_factor', sorted(PAPER_TABLE7_PARAMS))
def test_parameter_counts_match_paper(widen_factor):
    """GhostNet paper Table 7 (2.6M / 5.2M / 7.3M at 0.5x / 1.0x / 1.3x, given to 0.1M): within 1%."""
    count = _count(GhostNetClassifier(widen_factor))
    assert abs(count / PAPER_TABLE7_PARAMS[widen_factor] - 1) < 0.01, count


def test_parameter_count_1_1x_drift():
    """Drift check, not a reference: neither the paper nor timm gives a parameter count for the 1.1x detection
    backbone. The figure is this code's own, measured with
    ``python tools/get_flops.py configs/retinanet_ghostnet_fpn.py --no-detector``; a change means the
    architecture changed, which the checks against timm above should explain."""
    assert _count(GhostNet(1.1)) == 3_033_722


def _macs(model, shape=(3, 224, 224)):
    info = get_model_complexity_info(model.eval(), input_shape=shape, show_table=False, show_arch=False)
    return info['flops']


@pytest.mark.parametrize('widen_factor', sorted(PAPER_TABLE7_FLOPS))
def test_classifier_flops_match_paper(widen_factor):
    """GhostNet paper Table 7: 42M / 141M / 226M FLOPs (multiply-adds) at 224x224 for 0.5x / 1.0x / 1.3x.
    Counted on the deployed network (batch norms folded into the convs, which is what the paper counts; eval
    mode adds mmengine's one multiply-add per BN element) by mmengine, which also skips activations and the SE
    gate product: within 2% of the paper."""
    flops = _macs(GhostNetClassifier(widen_factor).eval().switch_to_deploy(channels_last=False))
    paper = PAPER_TABLE7_FLOPS[widen_factor]
    assert abs(flops / paper - 1) < 0.02, (flops, paper)


def test_detection_backbone_flops_match_paper():
    """GhostNet paper Table 8: the GhostNet-1.1x detection backbone has 164M FLOPs at 224x224. The backbone to
    the stride-32 bottlenecks, counted by mmengine in eval mode (BN included), is within 2%."""
    detection = _macs(GhostNet(1.1))
    assert abs(detection / PAPER_TABLE8_BACKBONE_FLOPS_1_1X - 1) < 0.02, detection


@pytest.mark.parametrize('ratio', [2, 3, 4])
def test_ghost_module_compression_ratio(ratio):
    """A Ghost module costs ~1/s of a plain conv: r = c*k*k / (c*k*k/s + (s-1)/s*d*d) ~ s*c/(s+c-1)."""
    c = n = 128
    k = d = 3
    ghost = GhostModule(c, n, kernel_size=k, ratio=ratio, dw_size=d, norm_cfg=dict(type='BN'), act_cfg=None)
    conv = nn.Conv2d(c, n, k, padding=1, bias=False)

    def conv_params(m):
        return sum(p.numel() for mod in m.modules() if isinstance(mod, nn.Conv2d) for p in mod.parameters())

    def conv_macs(m):
        info = get_model_complexity_info(m.eval(), input_shape=(c, 32, 32), show_table=False, show_arch=False)
        return info['flops']

    theory = (c * k * k) / (c * k * k / ratio + (ratio - 1) / ratio * d * d)
    assert abs(theory - ratio * c / (ratio + c - 1)) / theory < 0.01
    param_ratio = conv_params(conv) / conv_params(ghost)
    flop_ratio = conv_macs(conv) / conv_macs(ghost)
    # ceil(n / s) intrinsic maps make the measured ratio a little lower than n/s would.
    assert abs(param_ratio - theory) / theory < 0.03, (param_ratio, theory)
    assert abs(flop_ratio - theory) / theory < 0.06, (flop_ratio, theory)  # includes the BN's cost
    assert abs(param_ratio - ratio) / ratio < 0.05


@pytest.mark.parametrize('ratio,dw_size', [(2, 3), (3, 3), (4, 5), (1, 3)])
def test_ghost_module_drop_in_for_conv(ratio, dw_size):
    module = GhostModule(10, 30, kernel_size=3, stride=2, ratio=ratio, dw_size=dw_size)
    out = module(torch.rand(2, 10, 17, 16))
    assert out.shape == (2, 30, 9, 8)
    assert module.intrinsic_channels == math.ceil(30 / ratio)
    assert (out >= 0).all()  # ReLU on both halves by default
    linear = GhostModule(10, 30, act_cfg=None)
    assert (linear(torch.rand(2, 10, 8, 8)) < 0).any()


def test_ghost_bottleneck_shapes_and_shortcut():
    identity = GhostBottleneck(16, 48, 16)
    assert len(identity.shortcut) == 0
    x = torch.rand(2, 16, 20, 20)
    assert identity(x).shape == x.shape
    down = GhostBottleneck(16, 48, 24, kernel_size=5, stride=2, se_ratio=0.25)
    assert len(down.shortcut) == 4 and down.se is not None  # dw conv, norm, 1x1 conv, norm (official keys 0-3)
    assert down(x).shape == (2, 24, 10, 10)


def _stage_params(model, stage):
    return [p for m in model.stage_modules(stage) for p in m.parameters()]


@pytest.mark.parametrize('frozen_stages', [-1, 0, 2, 5])
def test_frozen_stages(frozen_stages):
    model = GhostNet(frozen_stages=frozen_stages, out_indices=(1, 2, 3, 4, 5))
    model.train()
    for stage in range(6):
        frozen = stage <= frozen_stages
        assert all(p.requires_grad != frozen for p in _stage_params(model, stage))
        for module in model.stage_modules(stage):
            assert all(m.training != frozen for m in module.modules() if isinstance(m, _BatchNorm))
    # Frozen statistics really stay put through a training forward.
    if frozen_stages >= 0:
        before = model.bn1.running_mean.clone()
        model(torch.rand(2, 3, 64, 64))
        assert torch.equal(before, model.bn1.running_mean)


def test_norm_eval():
    model = GhostNet(norm_eval=True)
    model.train()
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))
    assert all(p.requires_grad for p in model.parameters())  # norm_eval freezes statistics, not weights
    model = GhostNet(norm_eval=False).train()
    assert all(m.training for m in model.modules() if isinstance(m, _BatchNorm))


def test_backward_reaches_every_trainable_parameter():
    model = GhostNet(frozen_stages=1, out_indices=(0, 1, 2, 3, 4, 5))
    model.train()
    outs = model(torch.rand(2, 3, 64, 64))
    sum(o.mean() for o in outs).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


@pytest.mark.parametrize('input_grad', [True, False])
def test_with_cp_same_output_and_gradients(input_grad):
    torch.manual_seed(0)
    plain = GhostNet(widen_factor=0.5, memory_efficient=False)
    cp_model = GhostNet(widen_factor=0.5, with_cp=True)
    cp_model.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    a, b = (train_step(model, x, input_grad=input_grad) for model in (plain, cp_model))
    for out_a, out_b in zip(a['outs'], b['outs']):
        torch.testing.assert_close(out_a, out_b)
    if input_grad:
        torch.testing.assert_close(a['input_grad'], b['input_grad'])
    for name, g in a['grads'].items():
        torch.testing.assert_close(g, b['grads'][name], msg=name)
    # It really recomputes: far less activation memory is kept for backward.
    assert b['saved'] < 0.5 * a['saved'], (a['saved'], b['saved'])


def test_with_cp_updates_norm_statistics_once_per_step():
    """Issue 11: the recomputation in backward moved every BN's statistics a second time
    (num_batches_tracked was 2 after one step)."""
    torch.manual_seed(0)
    plain = GhostNet(widen_factor=0.5, out_indices=(1, 2, 3, 4, 5))
    cp_model = GhostNet(widen_factor=0.5, out_indices=(1, 2, 3, 4, 5), with_cp=True)
    cp_model.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    for model in (plain, cp_model):
        train_step(model, x)
    norms = [m for m in cp_model.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(m.num_batches_tracked.item() == 1 for m in norms)
    state = cp_model.state_dict()
    for name, value in plain.state_dict().items():  # running means and variances moved exactly once
        torch.testing.assert_close(value, state[name], msg=name)


HOOKED = ['blocks.4.0.ghost1', 'blocks.4.0.se', 'blocks.4.0.ghost2', 'blocks.3.0.bn_dw', 'blocks.3.0.ghost2',
          'blocks.3.0.shortcut', 'blocks.6.3.ghost1.primary_conv.1', 'blocks.6.3.ghost1.cheap_operation.1', 'bn1']


@pytest.mark.parametrize('mode', ['eval', 'train', 'deploy'])
def test_forward_hooks_see_outputs_as_produced(mode):
    """Issue 11: in-place SE scaling and residual adds changed tensors that forward hooks already held (a hook
    on blocks.4.0.ghost1 saw a value off by 0.155). Every module's output must stay as it was returned."""
    model = GhostNet(1.0)
    randomize_bn(model)
    model.train(mode == 'train')
    if mode == 'deploy':
        model.switch_to_deploy(channels_last=False)
    held = {}

    def hook(name):
        def fn(module, inputs, output):
            held[name] = (output, output.detach().clone(), inputs[0], inputs[0].detach().clone())
        return fn

    names = [n for n in HOOKED if not (mode == 'deploy' and n.endswith(('.1', 'bn_dw', 'bn1')))]
    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    with torch.set_grad_enabled(mode == 'train'):
        model(torch.rand(1, 3, 64, 96))
    for h in handles:
        h.remove()
    assert set(held) == set(names)
    for name, (output, copy, inp, inp_copy) in held.items():
        assert torch.equal(output, copy), name
        assert torch.equal(inp, inp_copy), name


def test_squeeze_excite_leaves_its_input_alone():
    from mmghost.models import SqueezeExcite
    se = SqueezeExcite(16).eval()
    x = torch.rand(2, 16, 5, 5)
    before = x.clone()
    with torch.no_grad():
        out = se(x)
    assert torch.equal(x, before) and not torch.equal(out, x)


@pytest.mark.parametrize('widen_factor', [1.0, 1.1])
def test_switch_to_deploy_keeps_outputs(widen_factor):
    model = GhostNet(widen_factor=widen_factor, out_indices=(0, 1, 2, 3, 4, 5))
    randomize_bn(model)
    model.eval()
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        expected = model(x)
        model.switch_to_deploy()
        got = model(x)
    assert model.deploy
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    for e, g in zip(expected, got):
        assert ((e - g).abs().max() / e.abs().max()).item() <= 1e-4
    assert model.switch_to_deploy() is model  # idempotent


def test_official_module_names():
    """The keys are those of the official/timm checkpoints (tests/test_parity.py checks the full list)."""
    keys = GhostNet(1.0, out_indices=(5, )).state_dict()
    for key in ['conv_stem.weight', 'bn1.running_var', 'blocks.0.0.ghost1.primary_conv.0.weight',
                'blocks.0.0.ghost1.primary_conv.1.running_mean', 'blocks.0.0.ghost1.cheap_operation.0.weight',
                'blocks.3.0.conv_dw.weight', 'blocks.3.0.bn_dw.bias', 'blocks.3.0.se.conv_reduce.weight',
                'blocks.3.0.se.conv_expand.bias', 'blocks.3.0.shortcut.0.weight', 'blocks.3.0.shortcut.3.running_var',
                'blocks.9.0.conv.weight', 'blocks.9.0.bn1.weight']:
        assert key in keys, key
    assert not any('.conv.' in k and not k.startswith('blocks.9.') for k in keys)  # no ConvModule names left


@pytest.mark.parametrize('kwargs,exc,words', [
    (dict(widen_factor=0), ValueError, 'widen_factor'),
    (dict(widen_factor=-1.0), ValueError, 'widen_factor'),
    (dict(widen_factor=float('nan')), ValueError, 'widen_factor'),
    (dict(out_indices=(6, )), ValueError, 'range(0, 6)'),
    (dict(out_indices=(-1, )), ValueError, 'out_indices'),
    (dict(out_indices=()), ValueError, 'empty'),
    (dict(out_indices=(1, 1)), ValueError, 'duplicates'),
    (dict(out_indices=(3, 1)), ValueError, 'sorted'),
    (dict(out_indices=3), TypeError, 'out_indices'),
    (dict(out_indices=(1.0, )), TypeError, 'out_indices'),
    (dict(frozen_stages=6), ValueError, 'frozen_stages'),
    (dict(frozen_stages=-2), ValueError, 'frozen_stages'),
    (dict(ratio=0), ValueError, 'ratio'),
    (dict(ratio=2.5), ValueError, 'ratio'),
    (dict(dw_size=2), ValueError, 'dw_size'),
    (dict(dw_size=0), ValueError, 'dw_size'),
    (dict(norm_cfg=dict(type='NoSuchNorm')), ValueError, 'NoSuchNorm'),
    (dict(norm_cfg='BN'), TypeError, 'norm_cfg'),
])
def test_bad_arguments(kwargs, exc, words):
    with pytest.raises(exc, match=words.replace('(', r'\(').replace(')', r'\)')):
        GhostNet(**kwargs)


@pytest.mark.parametrize('x,words', [
    (torch.rand(1, 1, 32, 32), '3 input channels'),
    (torch.rand(1, 4, 32, 32), '3 input channels'),
    (torch.rand(3, 32, 32), '4-D'),
])
def test_bad_input(x, words):
    with pytest.raises(ValueError, match=words):
        GhostNet()(x)


def test_group_norm_builds_and_runs():
    model = GhostNet(widen_factor=1.0, norm_cfg=dict(type='GN', num_groups=4, requires_grad=True))
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and not any(isinstance(m, _BatchNorm) for m in model.modules())
    assert all(m.num_groups == 4 for m in norms)
    assert model(torch.rand(1, 3, 64, 64))[-1].shape == (1, 160, 2, 2)


def test_sync_batch_norm_is_used_and_behaves_as_batch_norm_without_a_process_group():
    """norm_cfg=SyncBN (the multi-GPU detection configs) gives SyncBatchNorm in every norm position. Without a
    process group (here, on the CPU) torch runs it as plain batch norm: train-mode outputs, gradients and updated
    running statistics, and eval-mode outputs, equal those of the same model with BN; deploy mode folds it.
    Cross-process synchronisation itself needs CUDA and several processes (tests/test_cuda.py scope)."""
    torch.manual_seed(0)
    sync = GhostNet(widen_factor=0.5, norm_cfg=dict(type='SyncBN'), out_indices=(1, 2, 3, 4))
    plain = GhostNet(widen_factor=0.5, out_indices=(1, 2, 3, 4))
    sync_norms = [n for n, m in sync.named_modules() if isinstance(m, _BatchNorm)]
    assert sync_norms == [n for n, m in plain.named_modules() if isinstance(m, _BatchNorm)]
    assert all(isinstance(sync.get_submodule(n), nn.SyncBatchNorm) for n in sync_norms), sync_norms
    randomize_bn(plain)
    sync.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    a, b = (train_step(model, x) for model in (plain, sync))
    for out_a, out_b in zip(a['outs'], b['outs']):
        torch.testing.assert_close(out_a, out_b)
    for name, g in a['grads'].items():
        torch.testing.assert_close(g, b['grads'][name], msg=name)
    state = sync.state_dict()
    for name, value in plain.state_dict().items():  # running statistics moved alike
        torch.testing.assert_close(value, state[name], msg=name)
    assert sync.get_submodule(sync_norms[0]).num_batches_tracked.item() == 1
    plain.eval()
    sync.eval()
    with torch.no_grad():
        for out_a, out_b in zip(plain(x), sync(x)):
            torch.testing.assert_close(out_a, out_b)
        expected = sync(x)
        sync.switch_to_deploy(channels_last=False)
        assert not any(isinstance(m, _BatchNorm) for m in sync.modules())
        for e, g in zip(expected, sync(x)):
            assert ((e - g).abs().max() / e.abs().max()).item() <= 1e-4


def test_memory_efficient_same_results_less_memory():
    """Recomputing the cheap operations changes nothing but the activation memory kept for backward."""
    torch.manual_seed(0)
    plain = GhostNet(widen_factor=0.5, memory_efficient=False)
    efficient = GhostNet(widen_factor=0.5, memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 96, 128)
    a, b = (train_step(model, x) for model in (plain, efficient))
    for out_a, out_b in zip(a['outs'], b['outs']):
        torch.testing.assert_close(out_a, out_b)
    for name, g in a['grads'].items():
        torch.testing.assert_close(g, b['grads'][name], msg=name)
    state_b = efficient.state_dict()
    for name, value in plain.state_dict().items():  # running statistics moved exactly once
        torch.testing.assert_close(value, state_b[name], msg=name)
    assert b['saved'] <= 0.8 * a['saved'], (a['saved'], b['saved'])
