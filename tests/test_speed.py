"""Speed work keeps results: deploy/channels_last equality, torch.compile without graph breaks, the benchmark."""
import importlib.util
import json
import os.path as osp
import subprocess
import sys
import types

import pytest
import torch

from fixtures.backbone_training import randomize_bn, train_step
from mmghost.models import GhostNet

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.mark.parametrize('channels_last', [None, True, False])
def test_deploy_layouts_match_eval(channels_last):
    model = GhostNet(1.1, out_indices=(1, 2, 3, 4, 5))
    randomize_bn(model)
    model.eval()
    x = torch.rand(1, 3, 96, 160)
    with torch.no_grad():
        expected = model(x)
        model.switch_to_deploy(channels_last=channels_last)
        got = model(x)  # an NCHW input is converted when the model runs channels_last
    # On the CPU the default is channels_last.
    assert model.channels_last == (channels_last is not False)
    assert model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last) == model.channels_last
    for e, g in zip(expected, got):
        assert g.is_contiguous(memory_format=torch.channels_last) == model.channels_last
        assert ((e - g).abs().max() / e.abs().max()).item() <= 1e-4


def test_default_deploy_layout_rule():
    """The fixed rule switch_to_deploy(channels_last=None) follows: channels_last on the CPU, NCHW elsewhere."""
    from mmghost.models.backbones.base import default_channels_last
    assert default_channels_last(torch.device('cpu')) is True and default_channels_last('cpu') is True
    assert default_channels_last('cuda') is False and default_channels_last(torch.device('cuda', 1)) is False
    assert default_channels_last('meta') is False


def test_deploy_layout_on_cuda_is_a_fixed_rule_without_timing(monkeypatch):
    """Issue 20: switch_to_deploy() on CUDA chose the layout by timing, so ranks and runs could differ. Now a
    fixed rule: NCHW on CUDA; nothing is run or timed. The model's device is faked as CUDA (the rule only reads
    it), and any forward or clock read fails the test."""
    import time

    def no_timing(*args, **kwargs):
        raise AssertionError('switch_to_deploy() timed the model')

    model = GhostNet(0.5).eval()
    monkeypatch.setattr(model, 'parameters', lambda *a, **k: iter([types.SimpleNamespace(
        device=torch.device('cuda', 0))]))
    monkeypatch.setattr(model, 'forward_taps', no_timing)
    monkeypatch.setattr(time, 'perf_counter', no_timing)
    model.switch_to_deploy()
    assert model.channels_last is False
    assert model.conv_stem.weight.is_contiguous()


def test_deploy_layout_tool_times_both_layouts(tmp_path, capsys):
    """tools/deploy_layout.py: the measurement that used to run inside switch_to_deploy() (here on the CPU,
    tiny): both layouts timed, the faster one and the rule's choice reported, the results written as JSON."""
    import deploy_layout  # tools/deploy_layout.py
    out = tmp_path / 'layout.json'
    result = deploy_layout.main(['--device', 'cpu', '--widen-factor', '0.5', '--shape', '1', '3', '64', '64',
                                 '--warmup', '0', '--repeats', '1', '--json', str(out)])
    assert set(result['ms']) == {'nchw', 'channels_last'} and all(v > 0 for v in result['ms'].values())
    assert result['faster'] in result['ms'] and result['default'] == 'channels_last'  # the CPU rule
    assert json.loads(out.read_text()) == result
    assert 'switch_to_deploy() default here: channels_last' in capsys.readouterr().out


def test_channels_last_training_matches():
    """The NHWC concatenation path gives the same outputs and gradients as the NCHW one.

    Compared in float64: in float32 the training gradients of this small random model are ill-conditioned
    (batch norms over a few pixels at stride 32 amplify rounding), and on torch 2.13 the channels_last kernels'
    rounding then moves early-layer gradients by up to 5% against a float64 reference, NCHW's by 1e-5 (measured;
    the same at mmghost 0.1). Float64 runs the same code paths (the NHWC concatenation included) exactly enough
    to catch a wrong permutation or slice.
    """
    torch.manual_seed(0)
    nchw = GhostNet(0.5, memory_efficient=False).double()
    nhwc = GhostNet(0.5, memory_efficient=False).double().to(memory_format=torch.channels_last)
    nhwc.load_state_dict(nchw.state_dict())
    x = torch.rand(2, 3, 64, 96, dtype=torch.float64)
    a, b = train_step(nchw, x), train_step(nhwc, x.contiguous(memory_format=torch.channels_last))
    assert all(o.is_contiguous(memory_format=torch.channels_last) for o in b['outs'])
    for out_a, out_b in zip(a['outs'], b['outs']):
        assert ((out_a - out_b).abs().max() / out_a.abs().max()).item() <= 1e-10
    for name, g in a['grads'].items():
        err = (g - b['grads'][name]).abs().max().item()
        assert err <= 1e-9 * g.abs().max().item() + 1e-12, (name, err)
    # float32 forward: the layouts agree to rounding.
    nchw32, nhwc32 = nchw.float().eval(), nhwc.float().eval()
    with torch.no_grad():
        for out_a, out_b in zip(nchw32(x.float()), nhwc32(x.float().contiguous(memory_format=torch.channels_last))):
            assert ((out_a - out_b).abs().max() / out_a.abs().max()).item() <= 1e-4


@pytest.mark.parametrize('deploy', [False, True])
def test_inference_leaves_input_untouched(deploy):
    model = GhostNet(0.5).eval()
    if deploy:
        model.switch_to_deploy(channels_last=False)  # activations after the folded convs run in place
        assert model.act1.inplace and model.blocks[0][0].ghost1.primary_conv[2].inplace
        assert not model.blocks[3][0].se.act1.inplace  # follows a conv too, but SE's unit is not a Sequential
    x = torch.rand(1, 3, 64, 64)
    before = x.clone()
    with torch.no_grad():
        model(x)
    assert torch.equal(x, before)


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['train', 'eval', 'deploy'])
def test_torch_compile_has_no_graph_breaks(mode):
    model = GhostNet(1.0)
    model.train(mode == 'train')
    if mode == 'deploy':
        model.switch_to_deploy()
    x = torch.rand(2, 3, 64, 96)
    with torch.set_grad_enabled(mode == 'train'):
        explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.slow
@pytest.mark.parametrize('backbone_type', ['GhostNet', 'GhostNetV2', 'GhostNetV3'])
def test_benchmark_script_reports_every_case(backbone_type, tmp_path):
    from mmdet.registry import MODELS
    assert MODELS.get(backbone_type) is not None, f'{backbone_type} is not registered after `import mmghost`'
    out = tmp_path / 'bench.json'
    # 128x160: V2's DFC pools the stride-32 map 2x; a 1x1 map would leave train-mode batch norm one value.
    subprocess.run([sys.executable, 'benchmarks/benchmark.py', '--backbone', backbone_type, '--size', '128', '160',
                    '--repeats', '2', '--warmup', '1', '--no-compile', '--out', str(out)], check=True,
                   capture_output=True, cwd=ROOT)
    results = json.loads(out.read_text())
    assert results['backbone_type'] == backbone_type
    assert results['widen_factor'] == (1.1 if backbone_type == 'GhostNet' else 1.0)
    rows = results['backbone']['fp32-b1']
    assert {'mmghost-eval', 'mmghost-deploy', 'mmghost-deploy-nchw', 'mobilenetv2', 'resnet50',
            'train-step-mmghost'} <= set(rows)
    # The reference: timm's model where timm is importable, else (GhostNet only) the official-structure baseline.
    has_reference = results['reference'] is not None
    assert has_reference == (backbone_type == 'GhostNet' or importlib.util.find_spec('timm') is not None)
    assert ('reference' in rows) == has_reference == ('train-step-reference' in rows)
    baseline = 'reference' if has_reference else 'mmghost-eval'
    assert rows[baseline]['ratio_to_reference'] == 1.0
    assert all(r['median_ms'] > 0 and r['min_ms'] <= r['median_ms'] <= r['max_ms'] for r in rows.values())
    assert rows['train-step-mmghost']['saved_for_backward_mib'] > 0
