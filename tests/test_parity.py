"""Bit-level parity with the reference GhostNet (timm's ghostnet_100, same keys as the official code).

tests/fixtures/ghostnet_parity.npz holds the reference's stem and stride 4/8/16/32 features for deterministic
weights and input, produced by tests/fixtures/make_ghostnet_parity_fixture.py in an environment with timm.
Here the same weights are rebuilt, saved in the official layout, loaded through ``init_cfg`` and compared.
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


@pytest.fixture(scope='module')
def reference():
    data = np.load(FIXTURE)
    return data, json.loads(str(data['key_shapes']))


def _official_checkpoint(tmp_path, key_shapes):
    path = tmp_path / 'ghostnet_official.pth'
    torch.save(deterministic_state_dict(key_shapes), path)
    return str(path)


@pytest.mark.parametrize('deploy', [False, True])
def test_features_match_reference(tmp_path, reference, deploy):
    data, key_shapes = reference
    model = GhostNet(1.0, out_indices=(0, 1, 2, 3, 4, 5),
                     init_cfg=dict(type='Pretrained', checkpoint=_official_checkpoint(tmp_path, key_shapes)))
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


def test_reference_keys_all_used(tmp_path, reference):
    """Every official key maps onto an mmghost tensor (none left over but the classifier)."""
    _, key_shapes = reference
    classifier = GhostNetClassifier(1.0)
    report = classifier.load_imagenet_checkpoint(_official_checkpoint(tmp_path, key_shapes))
    assert report.ok
    assert sorted(report.dropped) == ['classifier.bias', 'classifier.weight', 'conv_head.bias', 'conv_head.weight']
    assert len(report.loaded) == len(key_shapes) - 4


def test_benchmark_baseline_matches_reference(reference):
    """benchmarks/reference_ghostnet.py (the eager baseline of the speed benchmark and of
    convert_weights --verify) loads the official keys strictly and gives the reference's features."""
    from benchmarks.reference_ghostnet import ReferenceGhostNet
    data, key_shapes = reference
    model = ReferenceGhostNet(1.0)
    model.load_state_dict(deterministic_state_dict(key_shapes), strict=True)
    with torch.no_grad():
        outs = model.eval()(deterministic_input())
    for name, out in zip(FEATURES[1:5], outs):
        assert (out - torch.from_numpy(data[name])).abs().max().item() <= 1e-5, name
