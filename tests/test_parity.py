"""Parity of GhostNet (V1) with the reference implementation (timm's ghostnet_100, same keys as the official code).

tests/fixtures/ghostnet_parity.npz holds the reference's stem, stride 4/8/16/32 and final-conv features for
deterministic weights and input, produced by tests/fixtures/make_ghostnet_parity_fixture.py in an environment
with timm, and the reference's key list. Here the same weights are rebuilt under the official keys and loaded
with mmengine's stock ``init_cfg`` (no renaming: mmghost has the official module names). Where timm is
importable (the torch 2.1 stack), the backbone and the classifier are also compared with real timm.
"""
import json
import os.path as osp

import numpy as np
import pytest
import torch

from fixtures.deterministic_weights import deterministic_input, deterministic_state_dict
from mmghost.models import GhostNet, GhostNetClassifier

FIXTURE = osp.join(osp.dirname(__file__), 'fixtures', 'ghostnet_parity.npz')
FEATURES = ['stem', 'blocks2', 'blocks4', 'blocks6', 'blocks8', 'blocks9']
HEAD = ['conv_head.weight', 'conv_head.bias', 'classifier.weight', 'classifier.bias']


@pytest.fixture(scope='module')
def reference():
    data = np.load(FIXTURE)
    return data, json.loads(str(data['key_shapes']))


def _official_file(tmp_path, key_shapes):
    path = tmp_path / 'state_dict_73.98.pth'
    torch.save(deterministic_state_dict(key_shapes), path)
    return str(path)


def test_state_dict_is_the_official_one(reference):
    """Same keys, order and shapes as the reference classifier; the backbone is that minus the ImageNet head."""
    _, key_shapes = reference
    ours = [(k, list(v.shape)) for k, v in GhostNetClassifier(1.0).state_dict().items()]
    assert ours == [(k, s) for k, s in key_shapes]
    trunk = [(k, list(v.shape)) for k, v in GhostNet(1.0, out_indices=(5, )).state_dict().items()]
    assert trunk == [(k, s) for k, s in key_shapes if k not in HEAD]


@pytest.mark.parametrize('deploy', [False, True])
def test_features_match_reference(tmp_path, reference, deploy):
    data, key_shapes = reference
    model = GhostNet(1.0, out_indices=(0, 1, 2, 3, 4, 5),
                     init_cfg=dict(type='Pretrained', checkpoint=_official_file(tmp_path, key_shapes)))
    model.init_weights()
    model.eval()
    if deploy:
        model.switch_to_deploy()
    with torch.no_grad():
        outs = model(deterministic_input())
    for name, out in zip(FEATURES, outs):
        ref = torch.from_numpy(data[name])
        assert out.shape == ref.shape, name
        err = (out - ref).abs().max().item()
        # fp32; folding BN into the conv reorders the arithmetic, so deploy mode gets a little more room.
        assert err <= (1e-5 if not deploy else 1e-4 * ref.abs().max().item()), (name, err)


def test_classifier_loads_official_weights_strictly(reference):
    _, key_shapes = reference
    classifier = GhostNetClassifier(1.0)
    classifier.load_state_dict(deterministic_state_dict(key_shapes), strict=True)
    with torch.no_grad():
        logits = classifier.eval()(deterministic_input())
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


def test_benchmark_baseline_matches_reference(reference):
    """benchmarks/reference_ghostnet.py (the eager baseline of the speed benchmark) loads the official keys
    strictly and gives the reference's features."""
    from benchmarks.reference_ghostnet import ReferenceGhostNet
    data, key_shapes = reference
    model = ReferenceGhostNet(1.0)
    model.load_state_dict(deterministic_state_dict(key_shapes), strict=True)
    with torch.no_grad():
        outs = model.eval()(deterministic_input())
    for name, out in zip(FEATURES[1:5], outs):
        assert (out - torch.from_numpy(data[name])).abs().max().item() <= 1e-5, name


# ---- against real timm (installed in .venv-torch21) ----


def _relative_error(out, ref):
    return ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize('widen_factor,timm_name', [(1.0, 'ghostnet_100'), (0.5, 'ghostnet_050'),
                                                    (1.3, 'ghostnet_130')])
@pytest.mark.parametrize('size', [(96, 128), (75, 113)])
def test_every_output_matches_timm(widen_factor, timm_name, size):
    """Every out index (0-5) equals timm's stem and ends of blocks 2/4/6/8/9, odd sizes included, and the
    classifier's logits equal timm's, all with the same weights (timm's state dict loaded strictly)."""
    timm = pytest.importorskip('timm', reason='timm is installed in .venv-torch21 only')
    torch.manual_seed(0)
    net = timm.create_model(timm_name, pretrained=False).eval()
    state = net.state_dict()
    state = {k: deterministic_state_dict([(k, list(v.shape))])[k] if v.is_floating_point() else v
             for k, v in state.items()}
    net.load_state_dict(state, strict=True)
    model = GhostNet(widen_factor, out_indices=(0, 1, 2, 3, 4, 5)).eval()
    model.load_state_dict({k: v for k, v in state.items() if k not in HEAD}, strict=True)
    classifier = GhostNetClassifier(widen_factor).eval()
    classifier.load_state_dict(state, strict=True)
    assert sum(p.numel() for p in classifier.parameters()) == sum(p.numel() for p in net.parameters())
    x = deterministic_input((2, 3) + size)
    with torch.no_grad():
        y = net.act1(net.bn1(net.conv_stem(x)))
        expected = [y]
        for i, block in enumerate(net.blocks):
            y = block(y)
            if i in (2, 4, 6, 8, 9):
                expected.append(y)
        outs = model(x)
        logits, timm_logits = classifier(x), net(x)
    assert len(outs) == len(expected) == 6
    for index, (out, ref) in enumerate(zip(outs, expected)):
        assert out.shape == ref.shape, index
        assert _relative_error(out, ref) <= 1e-5, (index, _relative_error(out, ref))
    assert _relative_error(logits, timm_logits) <= 1e-5
