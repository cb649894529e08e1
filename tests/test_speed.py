"""Speed work keeps results: deploy/channels_last equality, torch.compile without graph breaks, the benchmark."""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mmghost.models import GhostNet
from test_backbone import _randomize_bn, train_step

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.mark.parametrize('channels_last', [None, True, False])
def test_deploy_layouts_match_eval(channels_last):
    model = GhostNet(1.1, out_indices=(1, 2, 3, 4, 5))
    _randomize_bn(model)
    model.eval()
    x = torch.rand(1, 3, 96, 160)
    with torch.no_grad():
        expected = model(x)
        model.switch_to_deploy(channels_last=channels_last)
        got = model(x)  # an NCHW input is converted when the model runs channels_last
    # On the CPU the default is channels_last.
    assert model.channels_last == (channels_last is not False)
    assert model.stem.conv.weight.is_contiguous(memory_format=torch.channels_last) == model.channels_last
    for e, g in zip(expected, got):
        assert g.is_contiguous(memory_format=torch.channels_last) == model.channels_last
        assert ((e - g).abs().max() / e.abs().max()).item() <= 1e-4


def test_channels_last_training_matches():
    """The NHWC concatenation path gives the same outputs and gradients as the NCHW one."""
    torch.manual_seed(0)
    nchw = GhostNet(0.5, memory_efficient=False)
    nhwc = GhostNet(0.5, memory_efficient=False).to(memory_format=torch.channels_last)
    nhwc.load_state_dict(nchw.state_dict())
    x = torch.rand(2, 3, 64, 96)
    a, b = train_step(nchw, x), train_step(nhwc, x.contiguous(memory_format=torch.channels_last))
    # Different conv algorithms sum in another order. Some gradients are numerically zero (a BN bias right
    # before another BN) or come out of batch-norm backward sums with heavy cancellation: an absolute floor.
    for out_a, out_b in zip(a['outs'], b['outs']):
        assert ((out_a - out_b).abs().max() / out_a.abs().max()).item() <= 1e-4
    for name, g in a['grads'].items():
        err = (g - b['grads'][name]).abs().max().item()
        assert err <= 5e-4 * g.abs().max().item() + 1e-5, (name, err)


def test_inference_in_place_ops_leave_input_untouched():
    model = GhostNet(0.5).eval()
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
def test_benchmark_script_reports_every_case(tmp_path):
    out = tmp_path / 'bench.json'
    subprocess.run([sys.executable, 'benchmarks/benchmark.py', '--size', '64', '96', '--repeats', '2', '--warmup',
                    '1', '--no-compile', '--out', str(out)], check=True, capture_output=True, cwd=ROOT)
    results = json.loads(out.read_text())
    rows = results['backbone']['fp32-b1']
    assert {'reference', 'mmghost-eval', 'mmghost-deploy', 'mmghost-deploy-nchw', 'mobilenetv2', 'resnet50',
            'train-step-reference', 'train-step-mmghost'} <= set(rows)
    assert rows['reference']['ratio_to_reference'] == 1.0
    assert all(r['median_ms'] > 0 and r['min_ms'] <= r['median_ms'] <= r['max_ms'] for r in rows.values())
    assert rows['train-step-mmghost']['saved_for_backward_mib'] > 0
