"""RepGhostNet: parity with timm at every published width, the official README's parameter counts, both weight
forms (training and re-parameterised) through SafePretrained and tools/convert_weights.py, deploy mode, training.

The timm half needs timm (the torch 2.1 stack, ``.venv-torch21``): timm's ``repghostnet_*`` with random weights and
random batch-norm statistics are saved as the official files are laid out (``{'state_dict_ema': {'module.' + key:
tensor}}``), loaded into our backbone through ``init_cfg=dict(type='SafePretrained')`` and compared at every output
and at the classifier's logits (eval, fp32), before and after both sides re-parameterise. The rest runs on any stack.
"""
import math

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

import convert_weights  # tools/convert_weights.py
from mmghost.models import RepGhostNet, RepGhostNetClassifier, make_divisible
from mmghost.models.layers import RepGhostBottleneck, RepGhostModule
from mmghost.utils.safe_load import CheckpointError
from test_family_parity import ALL_OUTPUTS, STRIDES, max_rel_error, randomize_, timm_taps

# timm's names of the published widths.
TIMM_NAMES = {0.5: 'repghostnet_050', 0.58: 'repghostnet_058', 0.8: 'repghostnet_080', 1.0: 'repghostnet_100',
              1.11: 'repghostnet_111', 1.3: 'repghostnet_130', 1.5: 'repghostnet_150', 2.0: 'repghostnet_200'}
# The official README's table (ChengpengChen/RepGhost): parameters of the ImageNet classifiers (1280-d conv_head and
# 1000-class head included), in millions, rounded to 0.1M there.
README_PARAMS_M = {0.5: 2.3, 0.58: 2.5, 0.8: 3.3, 1.0: 4.1, 1.11: 4.5, 1.3: 5.5, 1.5: 6.6, 2.0: 9.8}
# The same table's FLOPs (multiply-adds at 224x224 of the deployed classifiers), in millions.
README_FLOPS_M = {0.5: 43, 0.58: 60, 0.8: 96, 1.0: 142, 1.11: 170, 1.3: 231, 1.5: 301, 2.0: 516}
# Every published width (all eight together take about 15 s on 2 cores).
WIDTHS = [pytest.param(w, id=TIMM_NAMES[w]) for w in TIMM_NAMES]
# The official cfgs: output channels of each group's last bottleneck and the expansion of every bottleneck.
OFFICIAL_OUT = (16, 24, 40, 112, 160)
OFFICIAL_EXPANSIONS = [8, 24, 36, 36, 60, 120, 100, 120, 120, 240, 336, 336, 480, 480, 480, 480]


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def official_layout(state_dict):
    """A state dict laid out as the official RepGhost files are: EMA weights under ``state_dict_ema``, every key
    prefixed ``module.`` (DataParallel)."""
    return {'state_dict_ema': {'module.' + k: v for k, v in state_dict.items()}}


def build_safe_loaded(widen_factor, path, **kwargs):
    model = RepGhostNet(widen_factor=widen_factor, out_indices=ALL_OUTPUTS,
                        init_cfg=dict(type='SafePretrained', checkpoint=path), **kwargs)
    model.init_weights()
    return model.eval()


def expected_channels(widen_factor):
    """The official code's channel rule: ``_make_divisible(c * width, 4)``, the final conv
    ``_make_divisible(exp_size * width * 2, 4)`` with the last expansion 480."""
    return [make_divisible(c * widen_factor, 4) for c in OFFICIAL_OUT] + [make_divisible(480 * widen_factor * 2, 4)]


# ---------------------------------------------------------------------------------------------------------
# Parity with timm (torch 2.1 stack)
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def timm_models(tmp_path_factory):
    """width -> (timm model in eval mode, path of its weights in the official file layout); built once."""
    timm = pytest.importorskip('timm', reason='timm is installed in .venv-torch21 only')
    root = tmp_path_factory.mktemp('timm_repghost')
    cache = {}

    def get(widen_factor):
        if widen_factor not in cache:
            torch.manual_seed(0)
            model = randomize_(timm.create_model(TIMM_NAMES[widen_factor], pretrained=False), seed=1)
            path = str(root / f'{TIMM_NAMES[widen_factor]}.pth.tar')
            torch.save(official_layout(model.state_dict()), path)
            cache[widen_factor] = (model, path)
        return cache[widen_factor]

    return get


@pytest.mark.parametrize('widen_factor', WIDTHS)
def test_every_output_equals_timm_at_every_width(timm_models, widen_factor):
    timm_model, path = timm_models(widen_factor)
    model = build_safe_loaded(widen_factor, path)
    assert model.out_channels == expected_channels(widen_factor)
    errors = {}
    for h, w in [(224, 224), (97, 131)]:
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            ours, theirs = model(x), timm_taps(timm_model, x)
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert a.shape == b.shape == (1, model.out_channels[i], math.ceil(h / STRIDES[i]),
                                          math.ceil(w / STRIDES[i]))
            errors[(h, w, i)] = max_rel_error(a, b)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-5, f'{widen_factor}x: output {worst[2]} at {worst[:2]}: {errors[worst]:.2e}'


@pytest.mark.parametrize('widen_factor', WIDTHS)
def test_classifier_has_timms_parameters_the_readme_count_and_timms_logits(timm_models, widen_factor):
    timm_model, path = timm_models(widen_factor)
    classifier = RepGhostNetClassifier(widen_factor=widen_factor).eval()
    state_dict = {k[len('module.'):]: v for k, v in torch.load(path)['state_dict_ema'].items()}
    classifier.load_state_dict(state_dict, strict=True)  # timm's keys, all of them, nothing left over
    theirs = sum(p.numel() for p in timm_model.parameters())
    assert sum(p.numel() for p in classifier.parameters()) == theirs
    assert round(theirs / 1e6, 1) == README_PARAMS_M[widen_factor]  # timm against the official README
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert max_rel_error(classifier(x), timm_model(x)) <= 1e-5


@pytest.mark.parametrize('widen_factor', WIDTHS)
def test_deploy_equals_timm_after_both_reparameterise(timm_models, widen_factor):
    import copy
    timm_model, path = timm_models(widen_factor)
    deployed_timm = copy.deepcopy(timm_model)
    deployed_timm.convert_to_deploy()  # timm's (and the official) re-parameterisation
    assert not any('fusion_bn' in k for k in deployed_timm.state_dict())
    classifier = RepGhostNetClassifier(widen_factor=widen_factor).eval()
    classifier.load_state_dict({k[len('module.'):]: v for k, v in torch.load(path)['state_dict_ema'].items()})
    model = build_safe_loaded(widen_factor, path).switch_to_deploy()
    classifier.switch_to_deploy()
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    x = torch.randn(1, 3, 225, 301)
    with torch.no_grad():
        errors = [max_rel_error(a, b) for a, b in zip(model(x), timm_taps(deployed_timm, x))]
        errors.append(max_rel_error(classifier(x), deployed_timm(x)))
    assert max(errors) <= 1e-4, errors


@pytest.mark.parametrize('widen_factor', [1.0, 1.11])
def test_timm_deploy_form_file_loads_into_a_reparameterized_model(timm_models, tmp_path, widen_factor):
    import copy
    timm_model, _ = timm_models(widen_factor)
    deployed_timm = copy.deepcopy(timm_model)
    deployed_timm.convert_to_deploy()
    path = str(tmp_path / 'deploy.pth.tar')
    torch.save(official_layout(deployed_timm.state_dict()), path)
    model = build_safe_loaded(widen_factor, path, reparameterized=True)
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        expected = timm_taps(deployed_timm, x)
        assert max(max_rel_error(a, b) for a, b in zip(model(x), expected)) <= 1e-5
        assert max(max_rel_error(a, b) for a, b in zip(model.switch_to_deploy()(x), expected)) <= 1e-4
    # The same file into the training form: one line that says what to do.
    with pytest.raises(CheckpointError, match='reparameterized=True') as error:
        build_safe_loaded(widen_factor, path)
    assert '\n' not in str(error.value)


@pytest.mark.parametrize('deploy_form', [False, True], ids=['training-form', 'deploy-form'])
def test_convert_weights_reads_the_official_file_and_verifies_against_timm(timm_models, tmp_path, capsys,
                                                                           deploy_form):
    import copy
    timm = pytest.importorskip('timm')
    timm_model, path = timm_models(1.11)
    if deploy_form:
        net = copy.deepcopy(timm_model)
        net.convert_to_deploy()
        path = str(tmp_path / 'deploy.pth.tar')
        torch.save(official_layout(net.state_dict()), path)
    dst = str(tmp_path / 'converted.pth')
    assert convert_weights.main([path, dst, '--verify']) == 0
    out = capsys.readouterr().out
    assert '-> RepGhostNet(widen_factor=1.11)' in out and f'vs timm {timm.__version__} repghostnet_111' in out
    assert out.count(': OK') == 2 and 'FAILED' not in out, out
    converted = torch.load(dst)['state_dict']
    assert any(k.endswith('cheap_operation.weight') for k in converted) == deploy_form
    assert any('fusion_bn' in k for k in converted) != deploy_form


# ---------------------------------------------------------------------------------------------------------
# Without timm (any stack)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('widen_factor', list(README_PARAMS_M))
def test_classifier_parameters_are_the_official_readme_figures(widen_factor):
    classifier = RepGhostNetClassifier(widen_factor=widen_factor)
    assert round(sum(p.numel() for p in classifier.parameters()) / 1e6, 1) == README_PARAMS_M[widen_factor]


@pytest.mark.parametrize('widen_factor', [pytest.param(w, marks=[] if w in (1.0, 1.11) else [pytest.mark.slow])
                                          for w in README_FLOPS_M])
def test_deployed_classifier_flops_within_1_percent_of_the_official_readme(widen_factor):
    import get_flops  # tools/get_flops.py: mmengine's counter, multiply-adds
    classifier = RepGhostNetClassifier(widen_factor=widen_factor).switch_to_deploy(channels_last=False)
    flops = get_flops.backbone_complexity(classifier)['flops']
    assert abs(flops / (README_FLOPS_M[widen_factor] * 1e6) - 1) < 0.01, flops


@pytest.mark.parametrize('widen_factor', [0.5, 0.58, 1.11, 2.0])
def test_output_shapes_channels_and_feature_info(widen_factor):
    model = RepGhostNet(widen_factor=widen_factor, out_indices=ALL_OUTPUTS).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 65, 97))
    assert model.out_channels == [o.shape[1] for o in outs] == [make_divisible(16 * widen_factor, 4)] + \
        expected_channels(widen_factor)[1:]
    for out, info, stride in zip(outs, model.feature_info, STRIDES):
        assert info['reduction'] == stride
        assert tuple(out.shape[2:]) == (math.ceil(65 / stride), math.ceil(97 / stride))


def test_detection_width_taps_ghostnet_1_1x_channels():
    from mmdet.registry import MODELS
    model = MODELS.build(dict(type='RepGhostNet', widen_factor=1.11, out_indices=(1, 2, 3, 4, 5)))
    assert type(model) is RepGhostNet and model.out_channels == [28, 44, 124, 176, 1064]


def test_official_block_layout_and_names():
    classifier = RepGhostNetClassifier()
    bottlenecks = [b for group in classifier.blocks[:9] for b in group]
    assert [b.stride for b in bottlenecks] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    assert [b.ghost1.out_channels for b in bottlenecks] == OFFICIAL_EXPANSIONS
    assert [b.se is not None for b in bottlenecks] == [
        False, False, False, True, True, False, False, False, False, True, True, True, False, True, False, True]
    keys = set(classifier.state_dict())
    for key in ('conv_stem.weight', 'bn1.running_var', 'blocks.0.0.ghost1.primary_conv.0.weight',
                'blocks.0.0.ghost1.primary_conv.1.bias', 'blocks.0.0.ghost1.cheap_operation.0.weight',
                'blocks.0.0.ghost1.cheap_operation.1.running_mean', 'blocks.0.0.ghost1.fusion_bn.0.weight',
                'blocks.1.0.conv_dw.weight', 'blocks.1.0.bn_dw.bias', 'blocks.3.0.se.conv_reduce.weight',
                'blocks.3.0.se.conv_expand.bias', 'blocks.1.0.shortcut.2.weight', 'blocks.9.0.conv.weight',
                'blocks.9.0.bn1.running_mean', 'conv_head.weight', 'classifier.bias'):
        assert key in keys, key
    assert isinstance(bottlenecks[0].ghost1.relu, nn.ReLU) and isinstance(bottlenecks[0].ghost2.relu, nn.Identity)


def test_reparameterize_gives_the_official_deploy_form_with_the_same_outputs():
    model = randomize_(RepGhostNet(out_indices=ALL_OUTPUTS), seed=3)
    x = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        expected = model(x)
        model.reparameterize()
        actual = model(x)
    assert max(max_rel_error(a, b) for a, b in zip(actual, expected)) <= 1e-5
    keys = list(model.state_dict())
    assert not any('fusion_bn' in k for k in keys)
    assert 'blocks.0.0.ghost1.cheap_operation.weight' in keys and 'blocks.0.0.ghost1.cheap_operation.bias' in keys
    assert 'blocks.0.0.ghost1.primary_conv.1.running_mean' in keys  # the other norms stay, as in the official form
    # The re-parameterised weights load, strict, into a model built in that form, and give the same outputs.
    rebuilt = RepGhostNet(out_indices=ALL_OUTPUTS, reparameterized=True).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(rebuilt(x), actual))


def test_deploy_outputs_equal_eval_outputs():
    model = randomize_(RepGhostNet(out_indices=ALL_OUTPUTS), seed=3)
    x = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        expected = model(x)
        model.switch_to_deploy()
        actual = model(x)
    assert model.deploy and model.reparameterized and model.channels_last  # on the CPU
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    module = model.blocks[0][0].ghost1
    assert type(module.cheap_operation) is nn.Conv2d and module.cheap_operation.bias is not None
    assert max(max_rel_error(a, b) for a, b in zip(actual, expected)) <= 1e-4
    with torch.no_grad():
        again = model.switch_to_deploy()(x)
    assert all(torch.equal(a, b) for a, b in zip(again, actual))


def test_deploy_is_exact_in_float64():
    model = randomize_(RepGhostNet(out_indices=ALL_OUTPUTS), seed=11).double()
    x = torch.randn(1, 3, 97, 131, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)
        actual = model.switch_to_deploy(channels_last=False)(x)
    assert max(max_rel_error(a, b) for a, b in zip(actual, expected)) <= 1e-10


@pytest.mark.parametrize('dw_size', [1, 5])
def test_module_fold_is_exact_for_other_cheap_kernels(dw_size):
    # The identity branch sits at the kernel's centre for any odd dw_size (the official code pads to 3x3 only).
    module = randomize_(RepGhostModule(8, 12, dw_size=dw_size), seed=5, calibrate=False).double().eval()
    x = torch.randn(2, 8, 9, 7, dtype=torch.float64)
    with torch.no_grad():
        expected = module(x)
        module.reparameterize()
        assert max_rel_error(module(x), expected) <= 1e-12


def test_official_file_layout_loads_through_safe_pretrained(tmp_path):
    source = randomize_(RepGhostNet(widen_factor=1.11, out_indices=ALL_OUTPUTS), seed=4)
    path = str(tmp_path / 'repghostnet_1_11x.pth.tar')
    torch.save(official_layout(source.state_dict()), path)
    loaded = build_safe_loaded(1.11, path).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())


def test_convert_weights_finds_the_backbone_width_and_form(tmp_path, capsys):
    source = randomize_(RepGhostNetClassifier(widen_factor=0.58), seed=4)
    source.reparameterize()
    src, dst = str(tmp_path / 'deploy.pth.tar'), str(tmp_path / 'converted.pth')
    torch.save(official_layout(source.state_dict()), src)
    assert convert_weights.main([src, dst]) == 0
    assert '-> RepGhostNet(widen_factor=0.58)' in capsys.readouterr().out
    model = build_safe_loaded(0.58, dst, reparameterized=True)
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in model.state_dict().items())


def test_mixing_the_forms_is_refused_in_one_line_that_says_what_to_do(tmp_path):
    training = RepGhostNet(out_indices=ALL_OUTPUTS).state_dict()
    reparameterized = RepGhostNet(out_indices=ALL_OUTPUTS, reparameterized=True).state_dict()
    cases = [(reparameterized, dict(), 'build it with reparameterized=True'),
             (training, dict(reparameterized=True), 'build it with reparameterized=False')]
    for state_dict, kwargs, advice in cases:
        with pytest.raises(CheckpointError, match=advice) as error:
            RepGhostNet(out_indices=ALL_OUTPUTS, **kwargs).load_state_dict(state_dict)
        assert '\n' not in str(error.value)
        path = str(tmp_path / 'weights.pth')
        torch.save(official_layout(state_dict), path)
        with pytest.raises(CheckpointError, match=advice):  # init_cfg would otherwise only log missing keys
            build_safe_loaded(1.0, path, **kwargs)
    deployed = RepGhostNet(out_indices=ALL_OUTPUTS).switch_to_deploy(channels_last=False)
    with pytest.raises(CheckpointError, match='load the weights first, then call switch_to_deploy'):
        deployed.load_state_dict(training)


def test_frozen_stages_and_norm_eval():
    model = RepGhostNet(frozen_stages=2, norm_eval=True, out_indices=(1, 2, 3, 4)).train()
    frozen = {id(p) for stage in range(3) for m in model.stage_modules(stage) for p in m.parameters()}
    assert frozen
    assert all(p.requires_grad == (id(p) not in frozen) for p in model.parameters())
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and not any(m.training for m in bns)
    stats = [m.running_mean.clone() for m in bns]
    model(torch.rand(2, 3, 64, 64))
    assert all(torch.equal(s, m.running_mean) for s, m in zip(stats, bns))


def test_backward_reaches_every_trainable_parameter():
    model = RepGhostNet(out_indices=ALL_OUTPUTS, frozen_stages=0).train()
    outs = model(torch.rand(2, 3, 96, 96))
    sum(o.pow(2).mean() for o in outs).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not missing, missing


@pytest.mark.parametrize('option', ['memory_efficient', 'with_cp'])
def test_recomputation_changes_no_output_gradient_or_statistic(option):
    reference = RepGhostNet(out_indices=(2, 3), memory_efficient=False).train()
    other = RepGhostNet(out_indices=(2, 3), memory_efficient=option == 'memory_efficient',
                        with_cp=option == 'with_cp').train()
    other.load_state_dict(reference.state_dict())
    x = torch.rand(2, 3, 64, 64)
    results = []
    for model in (reference, other):
        outs = model(x)
        sum(o.pow(2).mean() for o in outs).backward()
        results.append(([o.detach() for o in outs], {n: p.grad for n, p in model.named_parameters()},
                        {n: b.clone() for n, b in model.named_buffers()}))
    (outs_a, grads_a, stats_a), (outs_b, grads_b, stats_b) = results
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(outs_a, outs_b))
    assert all(torch.allclose(grads_a[n], grads_b[n], rtol=1e-4, atol=1e-6) for n in grads_a)
    assert all(torch.allclose(stats_a[n].float(), stats_b[n].float(), rtol=1e-5, atol=1e-6) for n in stats_a)
    assert all(v.item() == 1 for n, v in stats_b.items() if n.endswith('num_batches_tracked'))


@pytest.mark.parametrize('kwargs,error', [
    (dict(widen_factor=0), ValueError),
    (dict(out_indices=(6, )), ValueError),
    (dict(dw_size=4), ValueError),
    (dict(reparameterized='yes'), ValueError),
    (dict(ratio=2), TypeError),  # RepGhost has no Ghost ratio
])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        RepGhostNet(**kwargs)


def test_bottleneck_rejects_other_strides():
    with pytest.raises(ValueError, match='stride'):
        RepGhostBottleneck(8, 16, 8, stride=3)
