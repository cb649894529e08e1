"""Pretrained GhostNet weights: every layout users have loads through tools/convert_weights.py and ``init_cfg``.

The checkpoints are synthetic but realistic: the official/timm key list and shapes of GhostNet-1.0x
(tests/fixtures/ghostnet_parity.npz) filled by tests/fixtures/deterministic_weights.py, saved in each layout.
Each must give the features of the official-structure reference model (benchmarks/reference_ghostnet.py) with
the same weights. Malformed files must fail with exit status 1 and a message that says what is wrong.
"""
import json
import os
import os.path as osp
import pickle
import re
import subprocess
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch

import convert_weights
from benchmarks.reference_ghostnet import ReferenceGhostNet
from fixtures.deterministic_weights import deterministic_input, deterministic_state_dict
from mmghost.models import GhostNet, GhostNetClassifier
from mmghost.models.checkpoint import read_ghostnet_tensors
from mmghost.utils.safe_load import CheckpointError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FIXTURE = osp.join(ROOT, 'tests', 'fixtures', 'ghostnet_parity.npz')
# ReferenceGhostNet and mmghost run the same fp32 operations in the same order.
ATOL = 1e-5


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a small shared machine an oversubscribed OpenMP pool stalls at every barrier
    (this file took 7x longer with 2 threads on 2 busy cores). Results do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def official():
    """GhostNet-1.0x in the official/timm layout: 512 tensors, conv_head and classifier included."""
    return deterministic_state_dict(json.loads(str(np.load(FIXTURE)['key_shapes'])))


@pytest.fixture(scope='module')
def reference_features(official):
    model = ReferenceGhostNet(1.0)
    model.load_state_dict(official, strict=True)
    with torch.no_grad():
        return model.eval()(deterministic_input())


def _features(checkpoint, prefix=None, widen_factor=1.0):
    """Stride 4-32 features of a detection GhostNet initialised through ``init_cfg``."""
    init_cfg = dict(type='Pretrained', checkpoint=str(checkpoint))
    if prefix is not None:
        init_cfg['prefix'] = prefix
    model = GhostNet(widen_factor, init_cfg=init_cfg)
    model.init_weights()
    with torch.no_grad():
        return model.eval()(deterministic_input())


def _assert_matches_reference(outs, reference_features):
    assert len(outs) == len(reference_features) == 4
    for out, ref in zip(outs, reference_features):
        assert out.shape == ref.shape
        assert (out - ref).abs().max().item() <= ATOL


@pytest.fixture(scope='module')
def detector_checkpoint(official, tmp_path_factory):
    """An mmengine checkpoint of the project's RetinaNet-GhostNet-1.0x (narrowed neck and head, for speed)
    whose backbone holds the official weights; the backbone stops at stride 32, so it has no ``blocks.9``."""
    from mmengine.config import Config

    from mmdet.registry import MODELS
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'retinanet_ghostnet-1.0x_fpn.py'))
    cfg.model.backbone.init_cfg = None
    cfg.model.neck.out_channels = 32
    cfg.model.bbox_head.update(in_channels=32, feat_channels=32, stacked_convs=1)
    detector = MODELS.build(cfg.model)
    from mmghost.models import load_ghostnet_checkpoint
    load_ghostnet_checkpoint(detector.backbone, official)
    state_dict = detector.state_dict()
    assert any(k.startswith('neck.') for k in state_dict) and any(k.startswith('bbox_head.') for k in state_dict)
    assert not any(k.startswith('backbone.blocks.9.') for k in state_dict)
    path = tmp_path_factory.mktemp('detector') / 'epoch_12.pth'
    torch.save({'meta': dict(epoch=12, iter=1000, mmengine_version='0.10.7'), 'state_dict': state_dict,
                'message_hub': dict(runtime_info=dict(epoch=12, iter=1000))}, path)
    return path, detector


def _write(layout, official, tmp_path, detector_checkpoint):
    """Save ``official`` as a user would have it in ``layout``; return the path."""
    if layout == 'official_pth':
        path = tmp_path / 'state_dict_73.98.pth'
        torch.save(official, path)
    elif layout == 'timm_bin':
        path = tmp_path / 'pytorch_model.bin'
        torch.save(OrderedDict(official), path)
    elif layout == 'timm_safetensors':
        from safetensors.torch import save_file
        path = tmp_path / 'model.safetensors'
        save_file(official, str(path))
    elif layout == 'state_dict_wrapper':
        path = tmp_path / 'wrapped.pth'
        torch.save({'state_dict': official, 'epoch': 300, 'arch': 'ghostnet'}, path)
    elif layout == 'model_wrapper':
        path = tmp_path / 'checkpoint.pth.tar'
        torch.save({'model': official, 'epoch': 300, 'optimizer': {'state': {}, 'param_groups': [{'lr': 0.1}]}},
                   path)
    elif layout == 'module_prefix':
        path = tmp_path / 'ddp.pth'
        torch.save({f'module.{k}': v for k, v in official.items()}, path)
    elif layout == 'model_wrapper_module_prefix':
        path = tmp_path / 'ddp_wrapped.pth'
        torch.save({'model': {f'module.{k}': v for k, v in official.items()}}, path)
    elif layout == 'backbone_prefix':
        path = tmp_path / 'other_framework.pth'
        torch.save({'state_dict': {f'backbone.{k}': v for k, v in official.items()}}, path)
    elif layout == 'mmdet_detector':
        path = detector_checkpoint[0]
    elif layout == 'mmghost_converted':
        path = tmp_path / 'ghostnet_1.0x_imagenet.pth'
        src = tmp_path / 'src.pth'
        torch.save(official, src)
        assert convert_weights.main([str(src), str(path)]) == 0
    return path


LAYOUTS = ['official_pth', 'timm_bin', 'timm_safetensors', 'state_dict_wrapper', 'model_wrapper', 'module_prefix',
           'model_wrapper_module_prefix', 'backbone_prefix', 'mmdet_detector', 'mmghost_converted']
# (layout, prefix) the loader must report for each source.
EXPECTED_FOUND = {
    'official_pth': ('official', ''), 'timm_bin': ('official', ''), 'timm_safetensors': ('official', ''),
    'state_dict_wrapper': ('official', ''), 'model_wrapper': ('official', ''), 'module_prefix': ('official', 'module.'),
    'model_wrapper_module_prefix': ('official', 'module.'), 'backbone_prefix': ('official', 'backbone.'),
    'mmdet_detector': ('mmghost', 'backbone.'), 'mmghost_converted': ('mmghost', ''),
}


@pytest.mark.parametrize('layout', LAYOUTS)
def test_every_layout_converts_and_loads(layout, official, reference_features, detector_checkpoint, tmp_path,
                                         capsys):
    """Tool and ``init_cfg`` accept the source; the converted file too; both give the reference's features."""
    src = _write(layout, official, tmp_path, detector_checkpoint)
    found = read_ghostnet_tensors(src)
    assert (found.layout, found.prefix) == EXPECTED_FOUND[layout]
    capsys.readouterr()

    dst = tmp_path / 'out' / 'ghostnet.pth'
    assert convert_weights.main([str(src), str(dst)]) == 0
    table = capsys.readouterr().out
    detector = layout == 'mmdet_detector'
    # The detector's backbone stops at stride 32: no blocks.9 (its conv and 5 BN tensors).
    loaded = 508 - (6 if detector else 0)
    assert re.search(rf'^loaded\s+{loaded}\b', table, re.M), table
    assert re.search(r'^missing\s+0\b', table, re.M) and re.search(r'^shape mismatch\s+0\b', table, re.M)
    if EXPECTED_FOUND[layout][0] == 'official':
        assert 'conv_head.* (2)' in table and 'classifier.* (2)' in table  # dropped
    if detector:
        assert 'serves out_indices up to 4' in table and 'outside prefix' in table

    checkpoint = torch.load(dst, weights_only=True)
    assert set(checkpoint) == {'state_dict', 'meta'}
    assert all(k.startswith(('stem.', 'blocks.')) for k in checkpoint['state_dict'])
    record = checkpoint['meta']['ghostnet_weights']
    assert record['widen_factor'] == 1.0 and record['source'] == src.name and len(record['source_sha256']) == 64
    assert record['features']['stride'] == 32 and len(record['features']['channel_mean']) == 160

    _assert_matches_reference(_features(dst), reference_features)
    _assert_matches_reference(_features(src), reference_features)


def test_detector_checkpoint_with_explicit_prefix(detector_checkpoint, reference_features):
    _assert_matches_reference(_features(detector_checkpoint[0], prefix='backbone.'), reference_features)


def test_converted_file_loads_with_mmengine(official, detector_checkpoint, tmp_path):
    """DST is a plain mmengine checkpoint: mmengine's own loader reads it (weights_only) into a whole trunk,
    and into a detector's backbone by adding the ``backbone.`` prefix."""
    from mmengine.runner import load_checkpoint
    src, dst = tmp_path / 'official.pth', tmp_path / 'ghostnet.pth'
    torch.save(official, src)
    assert convert_weights.main([str(src), str(dst)]) == 0
    trunk = GhostNet(1.0, out_indices=(0, 1, 2, 3, 4, 5))
    load_checkpoint(trunk, str(dst), map_location='cpu', strict=True)
    assert torch.equal(trunk.state_dict()['stem.conv.weight'], official['conv_stem.weight'])
    assert torch.equal(trunk.state_dict()['blocks.9.0.bn.running_var'], official['blocks.9.0.bn1.running_var'])

    detector = detector_checkpoint[1]
    torch.nn.init.zeros_(detector.backbone.stem.conv.weight)
    load_checkpoint(detector, str(dst), map_location='cpu', revise_keys=[(r'^', 'backbone.')])
    assert torch.equal(detector.backbone.stem.conv.weight, official['conv_stem.weight'])


def test_keep_head_serves_the_classifier(official, tmp_path, capsys):
    src, dst = tmp_path / 'official.pth', tmp_path / 'ghostnet_cls.pth'
    torch.save(official, src)
    assert convert_weights.main([str(src), str(dst), '--keep-head']) == 0
    assert 'kept for GhostNetClassifier: conv_head.* (2), classifier.* (2)' in capsys.readouterr().out
    logits = []
    for checkpoint in (src, dst):
        classifier = GhostNetClassifier(1.0)
        classifier.load_imagenet_checkpoint(str(checkpoint))
        with torch.no_grad():
            logits.append(classifier.eval()(deterministic_input()))
    assert torch.equal(logits[0], logits[1])


def _verify_difference(out):
    match = re.search(r'max \|difference\| (\S+) = (\S+) x max \|x\|', out)
    assert match, out
    return float(match.group(2))


def test_verify_against_reference_and_stored_statistics(official, tmp_path, capsys):
    src, dst = tmp_path / 'official.pth', tmp_path / 'ghostnet.pth'
    torch.save(official, src)
    assert convert_weights.main([str(src), str(dst), '--verify']) == 0
    out = capsys.readouterr().out
    assert 'reference_ghostnet.py' in out and 'stride-32' in out
    assert _verify_difference(out) <= 1e-4

    # Without the source: the reference is fed DST's tensors, and the statistics stored in DST are compared.
    assert convert_weights.main([str(dst), '--verify']) == 0
    out = capsys.readouterr().out
    assert 'statistics stored for official.pth' in out and out.count(': OK') == 2

    # A changed tensor is caught by the stored statistics (the reference runs the changed weights too).
    checkpoint = torch.load(dst, weights_only=True)
    checkpoint['state_dict']['blocks.8.0.ghost2.primary_conv.conv.weight'] *= 1.5
    torch.save(checkpoint, dst)
    assert convert_weights.main([str(dst), '--verify']) == convert_weights.EXIT_VERIFY_FAILED
    assert 'FAILED' in capsys.readouterr().out


def test_verify_uses_timm_when_importable(official, tmp_path, capsys, monkeypatch):
    """timm cannot be installed beside torch 2.13, so a stand-in module checks the wiring of that branch: the
    model name per width and the forward through its official-named modules."""
    created = []

    def create_model(name, pretrained):
        assert pretrained is False
        created.append(name)
        return ReferenceGhostNet({'ghostnet_100': 1.0, 'ghostnet_130': 1.3}[name])

    monkeypatch.setitem(sys.modules, 'timm', types.SimpleNamespace(create_model=create_model))
    src = tmp_path / 'pytorch_model.bin'
    torch.save(official, src)
    assert convert_weights.main([str(src), '--verify']) == 0  # no DST: checks the source as init_cfg loads it
    out = capsys.readouterr().out
    assert created == ['ghostnet_100'] and 'vs timm ghostnet_100' in out
    assert _verify_difference(out) <= 1e-4
    # No timm model of width 1.1: the official-structure reference is used.
    path = tmp_path / 'ghostnet_1.1x.pth'
    torch.save(ReferenceGhostNet(1.1).state_dict(), path)
    assert convert_weights.main([str(path), '--verify', '--width', '1.1']) == 0
    assert created == ['ghostnet_100'] and 'reference_ghostnet.py' in capsys.readouterr().out


@pytest.mark.parametrize('widen_factor', [1.3, 1.1])
def test_width_mismatch(widen_factor, tmp_path, capsys):
    """1.1x has the 16-channel stem of 1.0x, so the width must be worked out from the other tensors."""
    path = tmp_path / f'ghostnet_{widen_factor}x.pth'
    torch.save(ReferenceGhostNet(widen_factor).state_dict(), path)
    assert convert_weights.main([str(path), str(tmp_path / 'out.pth'), '--width', '1.0']) == 1
    err = capsys.readouterr().err
    assert f'width {widen_factor} (widen_factor={widen_factor})' in err and f'--width {widen_factor}' in err
    assert not (tmp_path / 'out.pth').exists()
    with pytest.raises(CheckpointError, match=f'widen_factor={widen_factor}'):
        _features(path)
    # With the right width it converts.
    assert convert_weights.main([str(path), str(tmp_path / 'out.pth'), '--width', str(widen_factor)]) == 0


def test_self_pretrained_classifier_1_1x(tmp_path, capsys):
    """README's way to 1.1x weights: train GhostNetClassifier(1.1), save its state dict, convert with --width 1.1."""
    classifier = GhostNetClassifier(1.1)
    src, dst = tmp_path / 'ghostnet_1.1x_cls.pth', tmp_path / 'ghostnet_1.1x_imagenet.pth'
    torch.save({'state_dict': classifier.state_dict(), 'epoch': 300}, src)
    assert convert_weights.main([str(src), str(dst), '--width', '1.1']) == 0
    assert '4 tensors outside prefix \'backbone.\' ignored' in capsys.readouterr().out  # conv_head, classifier
    backbone = GhostNet(1.1, init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    backbone.init_weights()
    expected = classifier.backbone.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in backbone.state_dict().items())


def _resnet_like():
    return {'conv1.weight': torch.zeros(64, 3, 7, 7), 'bn1.weight': torch.ones(64), 'bn1.bias': torch.zeros(64),
            'layer1.0.conv1.weight': torch.zeros(64, 64, 1, 1), 'fc.weight': torch.zeros(1000, 2048)}


def test_malformed_inputs(official, tmp_path, capsys):
    """Each case: exit status 1, a message naming the problem, and the same error from ``init_cfg``."""
    resnet = tmp_path / 'resnet50.pth'
    torch.save({'state_dict': _resnet_like()}, resnet)
    full = tmp_path / 'full.pth'
    torch.save(official, full)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(full.read_bytes()[:full.stat().st_size // 2])
    from safetensors.torch import save_file
    save_file(official, str(tmp_path / 'full.safetensors'))
    truncated_st = tmp_path / 'truncated.safetensors'
    truncated_st.write_bytes((tmp_path / 'full.safetensors').read_bytes()[:1_000_000])
    partial = tmp_path / 'partial.pth'  # a tensor of stage 2 is gone: no shallower trunk can explain it
    torch.save({k: v for k, v in official.items() if k != 'blocks.3.0.ghost1.primary_conv.1.running_var'}, partial)
    not_a_dict = tmp_path / 'list.pth'
    torch.save([torch.zeros(3)], not_a_dict)

    cases = [(resnet, 'not a GhostNet checkpoint'), (truncated, 'truncated'), (truncated_st, 'safetensors'),
             (partial, 'missing'), (not_a_dict, 'not a GhostNet checkpoint'),
             (tmp_path / 'absent.pth', 'not found')]
    for path, message in cases:
        assert convert_weights.main([str(path), str(tmp_path / 'out.pth')]) == 1, path
        captured = capsys.readouterr()
        assert message in captured.err, (path, captured.err)
        assert captured.err.startswith('error: ')
        with pytest.raises(CheckpointError, match=message):
            _features(path)
    assert not (tmp_path / 'out.pth').exists()


class _OpensAFile:
    """Unpickling this object creates ``path``: proof that the pickle ran code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, 'w')


class _RunsAShell:

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f'touch {self.path}', )


def test_pickle_that_runs_code_is_refused(tmp_path, capsys):
    live = tmp_path / 'live'
    pickle.loads(pickle.dumps(_OpensAFile(str(live)))).close()
    assert live.exists()  # the payload does run when unpickled unsafely

    marker = tmp_path / 'pwned'
    saved = tmp_path / 'torch_saved.pth'  # a zip checkpoint whose pickle calls open()
    torch.save({'state_dict': {'conv_stem.weight': torch.zeros(16, 3, 3, 3)}, 'hook': _OpensAFile(str(marker))},
               saved)
    raw = tmp_path / 'raw_pickle.bin'  # a legacy (non-zip) pickle calling os.system
    # Protocol 2, as torch's legacy format: the unpickler gets as far as the GLOBAL and refuses it there.
    raw.write_bytes(pickle.dumps(_RunsAShell(str(marker)), protocol=2))
    for path, culprit in ((saved, 'open'), (raw, 'system')):
        assert convert_weights.main([str(path), str(tmp_path / 'out.pth')]) == 1
        err = capsys.readouterr().err
        assert 'refused' in err and 'Nothing from it was executed' in err and culprit in err
        with pytest.raises(CheckpointError, match='refused'):
            _features(path)
        assert not marker.exists()


def test_safetensors_recognised_by_content(official, tmp_path, reference_features):
    """A model.safetensors saved under another name is still read as safetensors."""
    from safetensors.torch import save_file
    path = tmp_path / 'ghostnet_100.bin'
    save_file(official, str(path))
    _assert_matches_reference(_features(path), reference_features)


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit) as exc:
        convert_weights.main([str(tmp_path / 'a.pth')])  # neither DST nor --verify
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        convert_weights.main([str(tmp_path / 'a.pth'), str(tmp_path / 'b.pth'), '--width', '0'])


def _run_tool(*args):
    env = dict(os.environ, OMP_NUM_THREADS='1')  # see one_thread()
    return subprocess.run([sys.executable, 'tools/convert_weights.py', *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_command_line_convert_and_verify(official, tmp_path):
    src, dst = tmp_path / 'state_dict_73.98.pth', tmp_path / 'checkpoints' / 'ghostnet_1.0x_imagenet.pth'
    torch.save(official, src)
    result = _run_tool(src, dst, '--width', '1.0', '--verify')
    assert result.returncode == 0, result.stderr
    for row in (r'^loaded\s+508\b', r'^dropped \(unused\)\s+4\s+conv_head\.\* \(2\), classifier\.\* \(2\)',
                r'^missing\s+0\b'):
        assert re.search(row, result.stdout, re.M), result.stdout
    assert _verify_difference(result.stdout) <= 1e-4
    assert dst.exists()


def test_command_line_refuses_code(tmp_path):
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    evil.write_bytes(pickle.dumps(_RunsAShell(str(marker)), protocol=2))
    result = _run_tool(evil, tmp_path / 'out.pth')
    assert result.returncode == 1 and 'refused' in result.stderr and 'posix.system' in result.stderr
    assert not marker.exists()
