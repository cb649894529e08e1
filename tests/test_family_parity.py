"""GhostNetV2 / GhostNetV3: parity with timm, loading of official and timm weights, deploy mode, training.

The timm half needs timm (the torch 2.1 stack, ``.venv-torch21``): timm's ``ghostnetv2_100/130/160`` and
``ghostnetv3_100/130`` with random weights and random batch-norm statistics are saved to files, loaded into our
backbones through mmengine's ``init_cfg=dict(type='Pretrained')`` and compared at every output (eval, fp32).
The rest runs on any stack without timm.
"""
import math

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmghost.models import GhostNetV2, GhostNetV3, classifier_class
from mmghost.models.layers import ConvBN, DFCAttention, GhostModuleV3, build_rep_branches, forward_rep_branches
from mmghost.models.layers import fuse_rep_branches

ALL_OUTPUTS = (0, 1, 2, 3, 4, 5)
# Where timm's ``blocks`` end for our outputs 1-5 (output 0 is the stem).
TIMM_TAP_GROUPS = (2, 4, 6, 8, 9)
STRIDES = (2, 4, 8, 16, 32, 32)
# Official GhostNetV3 names each re-parameterisation branch's norm ``bn``; timm ``bn1`` (its checkpoint filter).
REP_KEY_MARKERS = ('_rpr_conv.', '_rpr_scale.')


@pytest.fixture(autouse=True)
def seeded():
    """Every test draws its inputs from the same seed: float32 results of random networks are deterministic."""
    torch.manual_seed(0)


def randomize_(model: nn.Module, seed: int = 0, calibrate: bool = True) -> nn.Module:
    """Random weights and batch-norm statistics, in place, with activations of a trained network's scale.

    Conv/linear weights are He-scaled normals, norm affine parameters random (divided among the branches of a
    re-parameterised conv, so that their sum has the scale of one conv). With ``calibrate`` the running
    statistics are first set from a forward pass in training mode on random images, then perturbed by random
    factors (so they are not the batch statistics of any test input). Statistics that do not fit the
    activations blow them up (1e5-1e7 after 16 blocks) and saturate DFC's sigmoid gates, where float32 rounding
    differences of 1e-7 grow to 1e-4-1 between two exact implementations (deploy vs eval: 0 in float64).
    Returns the model in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
        for m in norms:
            m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
            m.running_mean.zero_()
            m.running_var.fill_(1)
        for site in rep_sites(model):
            # A re-parameterised conv sums its branches: each gets its share, as training would make them.
            for m in site:
                m.weight.div_(len(site))
                m.bias.div_(len(site))
        if calibrate and norms:
            momenta = [m.momentum for m in norms]
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # running statistics = the calibration batch's
            model.train()
            # At 224x224: DFC's stage-4 statistics depend on the pooled map size (7x7 -> 3x3 here); calibrated on
            # much smaller images they do not fit the test inputs, and the gates' inputs reach 1e3-1e4.
            model(torch.randn(2, 3, 224, 224, generator=gen))
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
        for m in norms:
            # A channel whose few calibration values (DFC's pooled stride-32 maps) happened to agree gets a tiny
            # variance and a huge gain; a trained network has no such channel.
            m.running_var.clamp_(min=0.1 * m.running_var.median().item())
            m.running_var.mul_(torch.rand(m.running_var.shape, generator=gen) * 0.4 + 0.8)
            m.running_mean.add_(torch.randn(m.running_mean.shape, generator=gen) * 0.1 * m.running_var.sqrt())
    return model.eval()


def rep_sites(model: nn.Module):
    """The norm layers of each re-parameterised conv (GhostNetV3's ``<site>_rpr_*``; ours and timm's names)."""
    for module in model.modules():
        for site in ('primary', 'cheap', 'dw'):
            branches = list(getattr(module, f'{site}_rpr_conv', None) or [])
            branches += [getattr(module, f'{site}_rpr_{kind}', None) for kind in ('scale', 'skip')]
            norms = [n for b in branches if b is not None for n in b.modules() if isinstance(n, _BatchNorm)]
            if norms:
                yield norms


def max_rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.double(), expected.double()
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()


def to_timm_names(state_dict):
    """Official GhostNetV3 keys -> timm's (``..._rpr_conv.0.bn.*`` -> ``..._rpr_conv.0.bn1.*``)."""
    return {(k.replace('.bn.', '.bn1.') if any(s in k for s in REP_KEY_MARKERS) else k): v
            for k, v in state_dict.items()}


def to_official_names(state_dict):
    return {(k.replace('.bn1.', '.bn.') if any(s in k for s in REP_KEY_MARKERS) else k): v
            for k, v in state_dict.items()}


def build_loaded(backbone_cls, widen_factor, path, **kwargs):
    model = backbone_cls(widen_factor=widen_factor, out_indices=ALL_OUTPUTS,
                         init_cfg=dict(type='Pretrained', checkpoint=path), **kwargs)
    model.init_weights()
    return model.eval()


# ---------------------------------------------------------------------------------------------------------
# Parity with timm (torch 2.1 stack)
# ---------------------------------------------------------------------------------------------------------

TIMM_VARIANTS = [
    ('ghostnetv2_100', GhostNetV2, 1.0),
    ('ghostnetv2_130', GhostNetV2, 1.3),
    ('ghostnetv2_160', GhostNetV2, 1.6),
    ('ghostnetv3_100', GhostNetV3, 1.0),
    ('ghostnetv3_130', GhostNetV3, 1.3),
]
# The 1.0x models are compared by default; the wider ones (same code, more channels) are slow on 2 cores.
TIMM_PARAMS = [pytest.param(*v, id=v[0], marks=[pytest.mark.slow] if v[2] > 1.0 else []) for v in TIMM_VARIANTS]
# timm's parameter counts (``timm.create_model(name).parameters()``, classifier included), to 0.01M: the
# figures timm publishes for its ImageNet weights (ghostnetv3_130 has none).
TIMM_PARAMS_M = {'ghostnetv2_100': 6.16, 'ghostnetv2_130': 8.96, 'ghostnetv2_160': 12.39, 'ghostnetv3_100': 8.13}
SIZES = [(224, 224), (225, 301), (97, 131)]


def timm_taps(model, x):
    """timm's features at our outputs 0-5: after the stem and after blocks 2, 4, 6, 8 and 9."""
    x = model.act1(model.bn1(model.conv_stem(x)))
    outs = [x]
    for i, group in enumerate(model.blocks):
        x = group(x)
        if i in TIMM_TAP_GROUPS:
            outs.append(x)
    return outs


@pytest.fixture(scope='module')
def timm_models(tmp_path_factory):
    """name -> (timm model in eval mode, path of its saved state dict); built once per module."""
    timm = pytest.importorskip('timm', reason='timm is installed in .venv-torch21 only')
    root = tmp_path_factory.mktemp('timm_weights')
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            model = randomize_(timm.create_model(name, pretrained=False), seed=1)
            path = str(root / f'{name}.pth')
            torch.save(model.state_dict(), path)
            cache[name] = (model, path)
        return cache[name]

    return get


@pytest.mark.parametrize('name,backbone_cls,widen_factor', TIMM_PARAMS)
def test_every_output_equals_timm_features_at_odd_and_even_sizes(timm_models, name, backbone_cls, widen_factor):
    timm_model, path = timm_models(name)
    model = build_loaded(backbone_cls, widen_factor, path)
    errors = {}
    for h, w in SIZES:
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            ours = model(x)
            theirs = timm_taps(timm_model, x)
        assert len(ours) == 6
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert a.shape == b.shape == (1, model.all_feature_info[i]['num_chs'], math.ceil(h / STRIDES[i]),
                                          math.ceil(w / STRIDES[i])), (i, a.shape, b.shape)
            errors[(h, w, i)] = max_rel_error(a, b)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-5, f'{name}: output {worst[2]} at {worst[:2]}: relative error {errors[worst]:.2e}'


@pytest.mark.parametrize('name,backbone_cls,widen_factor', TIMM_PARAMS)
def test_classifier_has_timms_parameters_and_logits(timm_models, name, backbone_cls, widen_factor):
    timm_model, path = timm_models(name)
    classifier = classifier_class(backbone_cls)(widen_factor=widen_factor).eval()
    state_dict = torch.load(path, map_location='cpu')
    classifier.load_state_dict(state_dict, strict=True)  # timm's keys, all of them, nothing left over
    ours = sum(p.numel() for p in classifier.parameters())
    theirs = sum(p.numel() for p in timm_model.parameters())
    assert ours == theirs
    if name in TIMM_PARAMS_M:
        assert round(ours / 1e6, 2) == TIMM_PARAMS_M[name]
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert max_rel_error(classifier(x), timm_model(x)) <= 1e-5


@pytest.mark.parametrize('name,widen_factor', [('ghostnetv3_100', 1.0),
                                                pytest.param('ghostnetv3_130', 1.3, marks=pytest.mark.slow)])
def test_v3_official_and_timm_named_files_both_load(timm_models, tmp_path, name, widen_factor):
    timm_model, timm_path = timm_models(name)
    state_dict = torch.load(timm_path, map_location='cpu')
    official = to_official_names(state_dict)
    renamed = [k for k in official if k not in state_dict]
    assert renamed and all('.bn.' in k for k in renamed)  # the two files really differ
    official_path = str(tmp_path / 'official.pth')
    torch.save(official, official_path)
    # Every key of either file is used by the classifier (strict), and the backbone loads both via init_cfg.
    for sd in (state_dict, official):
        classifier_class(GhostNetV3)(widen_factor=widen_factor).load_state_dict(dict(sd), strict=True)
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        expected = timm_taps(timm_model, x)
        for path in (timm_path, official_path):
            outs = build_loaded(GhostNetV3, widen_factor, path)(x)
            assert max(max_rel_error(a, b) for a, b in zip(outs, expected)) <= 1e-5, path


@pytest.mark.parametrize('name', ['ghostnetv3_100', 'ghostnetv2_100'])
def test_deploy_outputs_equal_timm_eval_outputs(timm_models, name):
    timm_model, path = timm_models(name)
    backbone_cls = GhostNetV3 if 'v3' in name else GhostNetV2
    model = build_loaded(backbone_cls, 1.0, path).switch_to_deploy()
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    x = torch.randn(1, 3, 225, 301)
    with torch.no_grad():
        errors = [max_rel_error(a, b) for a, b in zip(model(x), timm_taps(timm_model, x))]
    assert max(errors) <= 1e-4, errors


# ---------------------------------------------------------------------------------------------------------
# Without timm (any stack)
# ---------------------------------------------------------------------------------------------------------

BACKBONES = [GhostNetV2, GhostNetV3]


@pytest.mark.parametrize('backbone_cls', BACKBONES, ids=lambda c: c.__name__)
@pytest.mark.parametrize('widen_factor', [0.5, 1.0, 1.3])
def test_output_shapes_channels_and_feature_info(backbone_cls, widen_factor):
    model = backbone_cls(widen_factor=widen_factor, out_indices=ALL_OUTPUTS).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 65, 97))
    assert [o.shape[1] for o in outs] == model.out_channels
    expected = [make_width(c, widen_factor) for c in (16, 24, 40, 112, 160, 960)]
    assert model.out_channels == expected
    for out, info, stride in zip(outs, model.feature_info, STRIDES):
        assert info['reduction'] == stride
        assert tuple(out.shape[2:]) == (math.ceil(65 / stride), math.ceil(97 / stride))


def make_width(c, widen_factor):
    from mmghost.models import make_divisible
    return make_divisible(c * widen_factor, 4)


@pytest.mark.parametrize('backbone_cls', BACKBONES, ids=lambda c: c.__name__)
def test_registered_in_mmdets_registry(backbone_cls):
    from mmdet.registry import MODELS
    model = MODELS.build(dict(type=backbone_cls.__name__, widen_factor=1.3, out_indices=(2, 3, 4)))
    assert type(model) is backbone_cls and model.out_channels == [52, 144, 208]


@pytest.mark.parametrize('backbone_cls', BACKBONES, ids=lambda c: c.__name__)
def test_attention_from_the_third_bottleneck_on(backbone_cls):
    model = backbone_cls(out_indices=(5, ))
    bottlenecks = [b for group in model.blocks[:9] for b in group]
    assert len(bottlenecks) == 16
    assert [b.ghost1.short_conv is not None for b in bottlenecks] == [False, False] + [True] * 14
    assert all(getattr(b.ghost2, 'short_conv', None) is None for b in bottlenecks)


@pytest.mark.parametrize('backbone_cls', BACKBONES, ids=lambda c: c.__name__)
def test_deploy_outputs_equal_eval_outputs(backbone_cls):
    model = randomize_(backbone_cls(out_indices=ALL_OUTPUTS), seed=3).eval()
    x = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        expected = model(x)
        n_params = sum(p.numel() for p in model.parameters())
        model.switch_to_deploy()
        actual = model(x)
    assert model.deploy and model.channels_last  # on the CPU
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    assert sum(p.numel() for p in model.parameters()) < n_params
    errors = [max_rel_error(a, b) for a, b in zip(actual, expected)]
    assert max(errors) <= 1e-4, errors
    # Calling it again changes nothing.
    with torch.no_grad():
        again = model.switch_to_deploy()(x)
    assert all(torch.equal(a, b) for a, b in zip(again, actual))


@pytest.mark.parametrize('name', list(TIMM_PARAMS_M))
def test_classifier_parameters_are_timms_published_figures(name):
    backbone_cls = GhostNetV3 if name.startswith('ghostnetv3') else GhostNetV2
    classifier = classifier_class(backbone_cls)(widen_factor=int(name[-3:]) / 100)
    assert round(sum(p.numel() for p in classifier.parameters()) / 1e6, 2) == TIMM_PARAMS_M[name]


@pytest.mark.parametrize('backbone_cls', BACKBONES, ids=lambda c: c.__name__)
def test_deploy_is_exact_in_float64(backbone_cls):
    # Branch fusion and BN folding are exact algebra: in float64 nothing is left but rounding.
    # Stages 1-3 hold every kind of fused site (stride-2 depthwise branches, DFC, SE); stage 4 repeats them.
    model = randomize_(backbone_cls(out_indices=(0, 1, 2, 3)), seed=11).double()
    x = torch.randn(1, 3, 97, 131, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)
        actual = model.switch_to_deploy(channels_last=False)(x)
    assert max(max_rel_error(a, b) for a, b in zip(actual, expected)) <= 1e-10


def test_v3_deploy_leaves_single_convs():
    model = GhostNetV3(out_indices=(4, )).switch_to_deploy(channels_last=False)
    names = [name for name, _ in model.named_modules()]
    assert not any('_rpr_' in name for name in names)
    block = model.blocks[1][0]  # stride 2
    assert isinstance(block.conv_dw, nn.Conv2d) and block.conv_dw.bias is not None
    assert isinstance(block.ghost1.primary_conv[0], nn.Conv2d) and block.ghost1.primary_conv[0].bias is not None
    assert block.ghost1.cheap_operation[0].groups == block.ghost1.intrinsic_channels


def test_v3_has_the_official_branches_and_keys():
    classifier = classifier_class(GhostNetV3)(widen_factor=1.0)
    keys = list(classifier.state_dict())
    assert len(keys) == 1956  # as the official and timm files
    assert 'blocks.0.0.ghost1.primary_rpr_conv.2.bn.running_var' in keys
    assert 'blocks.0.0.ghost1.cheap_rpr_skip.weight' in keys
    assert 'blocks.0.0.ghost1.cheap_rpr_scale.conv.weight' in keys
    assert 'blocks.1.0.dw_rpr_conv.0.conv.weight' in keys and 'blocks.1.0.dw_rpr_scale.bn.bias' in keys
    assert 'blocks.2.0.ghost1.short_conv.5.running_mean' in keys
    assert not any('primary_rpr_skip' in k or 'primary_rpr_scale' in k or 'dw_rpr_skip' in k for k in keys)


def test_v3_timm_named_weights_load_into_the_official_names(tmp_path):
    source = randomize_(GhostNetV3(out_indices=ALL_OUTPUTS), seed=4).eval()
    path = str(tmp_path / 'timm_named.pth')
    torch.save(to_timm_names(source.state_dict()), path)
    assert any('.bn1.' in k and '_rpr_' in k for k in torch.load(path))
    loaded = build_loaded(GhostNetV3, 1.0, path).state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded[key], value), key
    # Plain load_state_dict, strict: nothing missing, nothing unexpected.
    GhostNetV3(out_indices=ALL_OUTPUTS).load_state_dict(torch.load(path), strict=True)


@pytest.mark.parametrize('backbone_cls', BACKBONES, ids=lambda c: c.__name__)
def test_frozen_stages_and_norm_eval(backbone_cls):
    model = backbone_cls(frozen_stages=2, norm_eval=True, out_indices=(1, 2, 3, 4))
    model.train()
    frozen = set()
    for stage in range(3):
        for module in model.stage_modules(stage):
            for p in module.parameters():
                frozen.add(id(p))
            for m in module.modules():
                assert not m.training
    assert frozen
    for p in model.parameters():
        assert p.requires_grad == (id(p) not in frozen)
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and not any(m.training for m in bns)
    stats = [m.running_mean.clone() for m in bns]
    model(torch.rand(2, 3, 64, 64))
    assert all(torch.equal(s, m.running_mean) for s, m in zip(stats, bns))


@pytest.mark.parametrize('backbone_cls', BACKBONES, ids=lambda c: c.__name__)
def test_backward_reaches_every_trainable_parameter(backbone_cls):
    model = backbone_cls(out_indices=ALL_OUTPUTS, frozen_stages=0).train()
    # 128 px: DFC's pooled maps at stride 32 are 2x2; at 1x1 the bias of short_conv.1 has no gradient in training
    # (the next batch norm removes any per-channel constant).
    outs = model(torch.rand(2, 3, 128, 128))
    sum(o.float().pow(2).mean() for o in outs).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not missing, missing
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith(('conv_stem', 'bn1')))


def _train_step(model, x):
    model.zero_grad()
    outs = model(x)
    sum(o.pow(2).mean() for o in outs).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    stats = {n: b.clone() for n, b in model.named_buffers()}
    return [o.detach() for o in outs], grads, stats


@pytest.mark.parametrize('backbone_cls', BACKBONES, ids=lambda c: c.__name__)
@pytest.mark.parametrize('option', ['memory_efficient', 'with_cp'])
def test_recomputation_changes_no_output_gradient_or_statistic(backbone_cls, option):
    torch.manual_seed(5)
    reference = backbone_cls(out_indices=(2, 3), memory_efficient=False).train()
    other = backbone_cls(out_indices=(2, 3), memory_efficient=option == 'memory_efficient',
                         with_cp=option == 'with_cp').train()
    other.load_state_dict(reference.state_dict())
    x = torch.rand(2, 3, 64, 64)
    outs_a, grads_a, stats_a = _train_step(reference, x)
    outs_b, grads_b, stats_b = _train_step(other, x)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(outs_a, outs_b))
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6), name
    for name in stats_a:
        assert torch.allclose(stats_a[name].float(), stats_b[name].float(), rtol=1e-5, atol=1e-6), name
    assert all(v.item() == 1 for n, v in stats_b.items() if n.endswith('num_batches_tracked'))


@pytest.mark.parametrize('kwargs', [
    dict(widen_factor=0),
    dict(widen_factor=float('nan')),
    dict(out_indices=(3, 1)),
    dict(out_indices=(6, )),
    dict(frozen_stages=6),
    dict(ratio=0),
    dict(dw_size=4),
    dict(norm_cfg=dict(type='NoSuchNorm')),
])
@pytest.mark.parametrize('backbone_cls', BACKBONES, ids=lambda c: c.__name__)
def test_bad_arguments_raise_value_error(backbone_cls, kwargs):
    with pytest.raises(ValueError):
        backbone_cls(**kwargs)


def test_v3_needs_a_cheap_operation():
    with pytest.raises(ValueError, match='ratio'):
        GhostNetV3(ratio=1)
    GhostNetV2(ratio=1, out_indices=(1, ))  # V2, like V1, degenerates to plain convs


def test_v3_with_group_norm_trains_but_refuses_to_fold():
    model = GhostNetV3(out_indices=(1, ), norm_cfg=dict(type='GN', num_groups=4))
    model(torch.rand(1, 3, 32, 32))
    with pytest.raises(NotImplementedError, match='batch norm'):
        model.switch_to_deploy()


# ---- the blocks ----

def test_dfc_attention_pools_floor_and_upsamples_nearest_on_odd_sizes():
    torch.manual_seed(6)
    dfc = randomize_(DFCAttention(4, 6), seed=7, calibrate=False).eval()
    x = torch.randn(1, 4, 7, 9)
    with torch.no_grad():
        gate = dfc(x, (7, 9))
        pooled = x[:, :, :6, :8].reshape(1, 4, 3, 2, 4, 2).mean((3, 5))  # floor: last row/column unseen
        small = torch.sigmoid(nn.Sequential(*dfc)(pooled))
    rows = torch.arange(7) * 3 // 7  # nearest: output i reads floor(i * in / out)
    cols = torch.arange(9) * 4 // 9
    assert torch.allclose(gate, small[:, :, rows][:, :, :, cols], atol=1e-6)
    assert gate.shape == (1, 6, 7, 9)


def test_dfc_attention_runs_on_one_pixel_sides():
    dfc = DFCAttention(4, 4).eval()
    with torch.no_grad():
        assert dfc(torch.randn(1, 4, 1, 5), (1, 5)).shape == (1, 4, 1, 5)
        assert dfc(torch.randn(1, 4, 1, 1), (1, 1)).shape == (1, 4, 1, 1)
    model = GhostNetV2(out_indices=(4, )).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32))[0].shape == (1, 160, 1, 1)


@pytest.mark.parametrize('stride,groups,with_skip', [(1, 1, False), (1, 8, True), (2, 8, False), (1, 1, True)])
def test_fused_branches_compute_the_branch_sum(stride, groups, with_skip):
    convs, scale, skip = build_rep_branches(8, 8, 3, stride=stride, groups=groups, with_skip=with_skip)
    randomize_(nn.ModuleList([convs, scale] + ([skip] if skip is not None else [])), seed=8, calibrate=False).eval()
    fused = fuse_rep_branches(convs, scale, skip)
    x = torch.randn(2, 8, 11, 13)
    with torch.no_grad():
        assert max_rel_error(fused(x), forward_rep_branches(x, convs, scale, skip)) <= 1e-5


def test_convbn_reads_timm_bn1_keys_with_plain_load_state_dict():
    source = randomize_(ConvBN(4, 4, 3, padding=1), seed=9, calibrate=False)
    timm_named = {k.replace('bn.', 'bn1.'): v for k, v in source.state_dict().items()}
    target = ConvBN(4, 4, 3, padding=1)
    target.load_state_dict(timm_named, strict=True)
    assert all(torch.equal(target.state_dict()[k], v) for k, v in source.state_dict().items())


def test_ghost_module_v3_switch_to_deploy_is_exact_for_a_module_with_every_branch():
    # in == intrinsic channels builds primary_rpr_skip (official rule), a 3x3 primary conv builds its scale.
    module = randomize_(GhostModuleV3(8, 16, kernel_size=3, attention=True), seed=10, calibrate=False).eval()
    assert module.primary_rpr_skip is not None and module.primary_rpr_scale is not None
    x = torch.randn(2, 8, 9, 7)
    with torch.no_grad():
        expected = module(x)
        module.switch_to_deploy()
        actual = module(x)
    assert max_rel_error(actual, expected) <= 1e-5



def test_v2_bottleneck_builds_only_the_modules_it_keeps(monkeypatch):
    """Issue 20: GhostBottleneckV2 built V1's ghost1 (a plain GhostModule), initialised it and replaced it. Each
    V2 bottleneck builds exactly one GhostModuleV2 (ghost1) and one plain GhostModule (ghost2), and the
    state-dict keys stay those of the official/timm layout (ghost1 before the stride path, SE and ghost2)."""
    from mmghost.models.backbones.ghostnetv2 import GhostBottleneckV2
    from mmghost.models.layers import GhostModule
    built = []
    original = GhostModule.__init__

    def counting_init(self, *args, **kwargs):
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(GhostModule, '__init__', counting_init)
    block = GhostBottleneckV2(16, 48, 24, kernel_size=5, stride=2, se_ratio=0.25)
    assert sorted(built) == ['GhostModule', 'GhostModuleV2'], built
    assert type(block.ghost1).__name__ == 'GhostModuleV2' and block.ghost1.short_conv is not None  # DFC
    assert list(block._modules)[:2] == ['ghost1', 'conv_dw']
    no_attention = GhostBottleneckV2(16, 48, 16, attention=False)
    assert type(no_attention.ghost1).__name__ == 'GhostModuleV2' and no_attention.ghost1.short_conv is None
    built.clear()
    GhostNetV2(1.0)
    assert built.count('GhostModule') == built.count('GhostModuleV2'), 'a V1 module was built and thrown away'
