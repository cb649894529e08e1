"""ImageNet weights in every layout users have: loaded by mmengine's stock ``init_cfg`` where mmengine can read
them, converted by tools/convert_weights.py where it cannot; width mismatches and bad files explained.

The weights are synthetic but realistic: the official/timm key list and shapes of GhostNet-1.0x
(tests/fixtures/ghostnet_parity.npz) filled by tests/fixtures/deterministic_weights.py, saved in each layout.
Each must give the reference's features stored in the fixture (timm's, for the same weights and input).
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

import convert_weights  # tools/convert_weights.py
from fixtures.deterministic_weights import deterministic_input, deterministic_state_dict
from mmghost.models import GhostNet, GhostNetBase, GhostNetClassifier
from mmghost.models.weights import read_trunk_weights
from mmghost.utils.safe_load import CheckpointError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FIXTURE = osp.join(ROOT, 'tests', 'fixtures', 'ghostnet_parity.npz')
ATOL = 1e-5
NUM_TRUNK = 508  # official keys without conv_head/classifier


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a small shared machine an oversubscribed OpenMP pool stalls at every barrier.
    Results do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def official():
    """GhostNet-1.0x in the official/timm layout: 512 tensors, conv_head and classifier included."""
    return deterministic_state_dict(json.loads(str(np.load(FIXTURE)['key_shapes'])))


@pytest.fixture(scope='module')
def reference_features():
    """timm's stride 4/8/16/32 features for the official weights and the deterministic input."""
    data = np.load(FIXTURE)
    return [torch.from_numpy(data[name]) for name in ('blocks2', 'blocks4', 'blocks6', 'blocks8')]


# mmghost 0.1 named its layers after mmcv's ConvModule; these are the renames it applied to official keys.
OFFICIAL_TO_01 = [
    (r'^conv_stem\.', 'stem.conv.'), (r'^bn1\.', 'stem.bn.'),
    (r'\.(primary_conv|cheap_operation)\.0\.', r'.\1.conv.'), (r'\.(primary_conv|cheap_operation)\.1\.', r'.\1.bn.'),
    (r'\.conv_dw\.', '.conv_dw.conv.'), (r'\.bn_dw\.', '.conv_dw.bn.'),
    (r'\.shortcut\.0\.', '.shortcut.0.conv.'), (r'\.shortcut\.1\.', '.shortcut.0.bn.'),
    (r'\.shortcut\.2\.', '.shortcut.1.conv.'), (r'\.shortcut\.3\.', '.shortcut.1.bn.'),
    (r'^(blocks\.\d+\.0)\.bn1\.', r'\1.bn.'),
]


def to_mmghost_01(state_dict):
    out = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith(('conv_head.', 'classifier.')):
            continue
        for pattern, repl in OFFICIAL_TO_01:
            new_key, n = re.subn(pattern, repl, key)
            if n:
                key = new_key
                break
        out[key] = value
    return out


def _features(checkpoint, prefix=None, widen_factor=1.0, init_cfg=None):
    """Stride 4-32 features of a detection GhostNet initialised through mmengine's stock ``init_cfg``."""
    if init_cfg is None:
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


def _small_detector():
    """The project's RetinaNet-GhostNet-1.0x with a narrow neck and head (fast), random weights."""
    from mmengine.config import Config

    from mmdet.registry import MODELS
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'retinanet_ghostnet-1.0x_fpn.py'))
    cfg.model.backbone.init_cfg = None
    cfg.model.neck.out_channels = 32
    cfg.model.bbox_head.update(in_channels=32, feat_channels=32, stacked_convs=1)
    return MODELS.build(cfg.model)


@pytest.fixture(scope='module')
def detector_checkpoint(official, tmp_path_factory):
    """An mmengine checkpoint of a RetinaNet-GhostNet-1.0x whose backbone holds the official weights (it stops
    at stride 32: no ``blocks.9``)."""
    detector = _small_detector()
    detector.backbone.load_state_dict({k: v for k, v in official.items() if not k.startswith(
        ('blocks.9.', 'conv_head.', 'classifier.'))}, strict=True)
    state_dict = detector.state_dict()
    path = tmp_path_factory.mktemp('detector') / 'epoch_12.pth'
    torch.save({'meta': dict(epoch=12, iter=1000, mmengine_version='0.10.7'), 'state_dict': state_dict,
                'message_hub': dict(runtime_info=dict(epoch=12, iter=1000))}, path)
    return path, state_dict


@pytest.fixture(scope='module')
def detector_checkpoint_01(detector_checkpoint, tmp_path_factory):
    """The same detector as saved by mmghost 0.1: backbone keys ``backbone.stem.conv.weight``, ..."""
    _, state_dict = detector_checkpoint
    backbone = to_mmghost_01(OrderedDict((k[len('backbone.'):], v) for k, v in state_dict.items()
                                         if k.startswith('backbone.')))
    assert 'stem.conv.weight' in backbone and 'blocks.3.0.conv_dw.bn.running_var' in backbone
    renamed = OrderedDict((f'backbone.{k}', v) for k, v in backbone.items())
    renamed.update((k, v) for k, v in state_dict.items() if not k.startswith('backbone.'))
    path = tmp_path_factory.mktemp('detector01') / 'epoch_12.pth'
    torch.save({'meta': dict(epoch=12), 'state_dict': renamed}, path)
    return path


# ---- what mmengine loads as it is ----

STOCK_LAYOUTS = {
    # name: (what to save, init_cfg prefix)
    'official_pth': (lambda w: w, None),  # state_dict_73.98.pth
    'timm_bin': (lambda w: OrderedDict(w), None),  # pytorch_model.bin
    'state_dict_wrapper': (lambda w: {'state_dict': w, 'epoch': 300}, None),
    'ddp_module_prefix': (lambda w: {f'module.{k}': v for k, v in w.items()}, None),
    'backbone_prefix': (lambda w: {'state_dict': {f'backbone.{k}': v for k, v in w.items()}}, 'backbone.'),
    'mmghost_01_imagenet': (lambda w: {'state_dict': to_mmghost_01(w)}, None),
}


@pytest.mark.parametrize('layout', sorted(STOCK_LAYOUTS))
def test_stock_init_cfg_loads(layout, official, reference_features, tmp_path):
    """No custom loader: mmengine's PretrainedInit reads these files; mmghost 0.1's names are renamed while
    loading."""
    assert not any('init_weights' in cls.__dict__ for cls in (GhostNet, GhostNetBase))
    make, prefix = STOCK_LAYOUTS[layout]
    path = tmp_path / 'weights.pth'
    torch.save(make(official), path)
    _assert_matches_reference(_features(path, prefix), reference_features)


def test_detector_checkpoints_with_prefix(detector_checkpoint, detector_checkpoint_01, reference_features):
    """A detector's backbone (this version's, or mmghost 0.1's) with init_cfg's prefix='backbone.'."""
    for path in (detector_checkpoint[0], detector_checkpoint_01):
        _assert_matches_reference(_features(path, prefix='backbone.'), reference_features)


def test_mmghost_01_detector_checkpoint_loads_into_a_detector(detector_checkpoint_01, reference_features):
    """Issue 12: "a V1 checkpoint saved by mmghost 0.1 still loads" — strictly, with mmengine's own loader."""
    from mmengine.runner import load_checkpoint
    detector = _small_detector()
    load_checkpoint(detector, str(detector_checkpoint_01), map_location='cpu', strict=True)
    with torch.no_grad():
        _assert_matches_reference(detector.backbone.eval()(deterministic_input()), reference_features)


def test_init_cfg_list_loads_the_pretrained_weights(official, reference_features, tmp_path):
    """Issue 11: an init_cfg list bypassed the GhostNet loader and loaded nothing."""
    path = tmp_path / 'official.pth'
    torch.save(official, path)
    init_cfg = [dict(type='Kaiming', layer='Conv2d'), dict(type='Constant', val=1, layer='_BatchNorm'),
                dict(type='Pretrained', checkpoint=str(path))]
    _assert_matches_reference(_features(None, init_cfg=init_cfg), reference_features)


@pytest.mark.parametrize('widen_factor', [1.3, 1.1])
def test_width_mismatch_names_both_widths(widen_factor, tmp_path):
    """1.1x has the 16-channel stem of 1.0x, so the width is worked out from the other tensors."""
    path = tmp_path / f'ghostnet_{widen_factor}x.pth'
    torch.save(GhostNetClassifier(widen_factor).state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        _features(path)  # through mmengine's stock init_cfg
    message = str(info.value)
    assert f'width {widen_factor} (widen_factor={widen_factor})' in message
    assert 'width 1.0 (widen_factor=1.0)' in message and f'--width {widen_factor}' in message
    with pytest.raises(CheckpointError, match=f'widen_factor={widen_factor}'):
        GhostNet(1.0).load_state_dict(torch.load(path, weights_only=True), strict=False)


# ---- tools/convert_weights.py ----

CONVERTED_LAYOUTS = {
    'timm_safetensors': None,  # written with safetensors below
    'model_wrapper': lambda w: {'model': w, 'epoch': 300, 'optimizer': {'state': {}, 'param_groups': [{'lr': 0.1}]}},
    'model_wrapper_module_prefix': lambda w: {'model': {f'module.{k}': v for k, v in w.items()}},
    'ema_wrapper': lambda w: {'state_dict_ema': w},
    'mmghost_01_imagenet': lambda w: {'state_dict': to_mmghost_01(w)},
}


def _write(layout, official, tmp_path):
    if layout == 'timm_safetensors':
        from safetensors.torch import save_file
        path = tmp_path / 'model.safetensors'
        save_file(official, str(path))
    else:
        path = tmp_path / f'{layout}.pth'
        torch.save(CONVERTED_LAYOUTS[layout](official), path)
    return path


@pytest.mark.parametrize('layout', sorted(CONVERTED_LAYOUTS))
def test_convert_then_stock_init_cfg(layout, official, reference_features, tmp_path, capsys):
    if layout == 'timm_safetensors':
        pytest.importorskip('safetensors', reason='safetensors is not installed in this stack')
    src = _write(layout, official, tmp_path)
    dst = tmp_path / 'out' / 'ghostnet.pth'
    assert convert_weights.main([str(src), str(dst)]) == 0
    table = capsys.readouterr().out
    assert re.search(rf'^loaded\s+{NUM_TRUNK}\b', table, re.M), table
    assert re.search(r'^missing\s+0\b', table, re.M) and re.search(r'^unexpected\s+0\b', table, re.M)
    if layout != 'mmghost_01_imagenet':
        assert 'conv_head.* (2)' in table and 'classifier.* (2)' in table  # dropped
    checkpoint = torch.load(dst, weights_only=True)
    assert set(checkpoint) == {'state_dict', 'meta'}
    assert list(checkpoint['state_dict']) == [k for k in official if not k.startswith(('conv_head.', 'classifier.'))]
    record = checkpoint['meta']['ghostnet_weights']
    assert record['backbone'] == 'GhostNet' and record['widen_factor'] == 1.0 and record['source'] == src.name
    assert record['features']['stride'] == 32 and len(record['features']['channel_mean']) == 160
    _assert_matches_reference(_features(dst), reference_features)


def test_convert_mmghost_01_detector(detector_checkpoint_01, reference_features, tmp_path, capsys):
    dst = tmp_path / 'backbone.pth'
    assert convert_weights.main([str(detector_checkpoint_01), str(dst)]) == 0
    table = capsys.readouterr().out
    assert 'layout: mmghost-0.1' in table and "prefix: 'backbone.'" in table
    assert 'serves out_indices up to 4' in table and 'outside prefix' in table
    state_dict = torch.load(dst, weights_only=True)['state_dict']
    assert 'conv_stem.weight' in state_dict and not any(k.startswith('blocks.9.') for k in state_dict)
    _assert_matches_reference(_features(dst), reference_features)


def test_read_trunk_weights_finds_layout_and_prefix(official, detector_checkpoint, detector_checkpoint_01):
    found = read_trunk_weights(dict(official))
    assert (found.layout, found.prefix, len(found.trunk()), len(found.head())) == ('official', '', NUM_TRUNK, 4)
    found = read_trunk_weights(str(detector_checkpoint[0]))
    assert (found.layout, found.prefix) == ('official', 'backbone.') and found.num_ignored > 0
    found = read_trunk_weights(str(detector_checkpoint_01))
    assert (found.layout, found.prefix) == ('mmghost-0.1', 'backbone.')
    assert 'conv_stem.weight' in found.tensors and 'blocks.3.0.bn_dw.running_var' in found.tensors


def test_converted_file_loads_with_mmengine(official, tmp_path):
    """DST is a plain mmengine checkpoint: mmengine's own loader reads it into a whole trunk strictly, and into a
    detector's backbone by adding the ``backbone.`` prefix."""
    from mmengine.runner import load_checkpoint
    src, dst = tmp_path / 'official.pth', tmp_path / 'ghostnet.pth'
    torch.save(official, src)
    assert convert_weights.main([str(src), str(dst)]) == 0
    trunk = GhostNet(1.0, out_indices=(0, 1, 2, 3, 4, 5))
    load_checkpoint(trunk, str(dst), map_location='cpu', strict=True)
    assert torch.equal(trunk.conv_stem.weight, official['conv_stem.weight'])
    assert torch.equal(trunk.blocks[9][0].bn1.running_var, official['blocks.9.0.bn1.running_var'])
    detector = _small_detector()
    load_checkpoint(detector, str(dst), map_location='cpu', revise_keys=[(r'^', 'backbone.')])
    assert torch.equal(detector.backbone.conv_stem.weight, official['conv_stem.weight'])


def test_keep_head_serves_the_classifier(official, tmp_path, capsys):
    from mmengine.runner import load_checkpoint
    src, dst = tmp_path / 'model.safetensors', tmp_path / 'ghostnet_cls.pth'
    pytest.importorskip('safetensors', reason='safetensors is not installed in this stack')
    from safetensors.torch import save_file
    save_file(official, str(src))
    assert convert_weights.main([str(src), str(dst), '--keep-head']) == 0
    out = capsys.readouterr().out
    assert 'kept for the ImageNet classifier:' in out and 'conv_head.* (2)' in out and 'classifier.* (2)' in out
    logits = []
    for load in (lambda c: c.load_state_dict(official, strict=True),
                 lambda c: load_checkpoint(c, str(dst), map_location='cpu', strict=True)):
        classifier = GhostNetClassifier(1.0)
        load(classifier)
        with torch.no_grad():
            logits.append(classifier.eval()(deterministic_input()))
    assert torch.equal(logits[0], logits[1])


def _verify_differences(out):
    return [float(m) for m in re.findall(r'max \|difference\| \S+ = (\S+) x max \|x\|', out)]


def test_verify_without_timm_and_against_stored_statistics(official, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'timm', None)  # import timm raises ImportError
    src, dst = tmp_path / 'official.pth', tmp_path / 'ghostnet.pth'
    torch.save(official, src)
    assert convert_weights.main([str(src), str(dst), '--verify']) == 0
    out = capsys.readouterr().out
    assert "loaded by init_cfg=dict(type='SafePretrained')" in out and 'reference check skipped' in out
    assert _verify_differences(out) == [0.0]

    # Without the source: the statistics stored in DST are compared.
    assert convert_weights.main([str(dst), '--verify']) == 0
    out = capsys.readouterr().out
    assert 'statistics stored for official.pth' in out and out.count(': OK') == 1

    # A changed tensor is caught by the stored statistics.
    checkpoint = torch.load(dst, weights_only=True)
    checkpoint['state_dict']['blocks.8.0.ghost2.primary_conv.0.weight'] *= 1.5
    torch.save(checkpoint, dst)
    assert convert_weights.main([str(dst), '--verify']) == convert_weights.EXIT_VERIFY_FAILED
    assert 'FAILED' in capsys.readouterr().out


def test_verify_uses_timm_when_importable(official, tmp_path, capsys, monkeypatch):
    """A stand-in timm (the benchmark's official-structure model) checks the wiring of that branch in every
    environment: the model name per width and the forward through its official-named modules."""
    from benchmarks.reference_ghostnet import ReferenceGhostNet
    created = []

    def create_model(name, pretrained):
        assert pretrained is False
        created.append(name)
        return ReferenceGhostNet({'ghostnet_100': 1.0, 'ghostnet_130': 1.3}[name])

    monkeypatch.setitem(sys.modules, 'timm', types.SimpleNamespace(create_model=create_model, __version__='x'))
    src = tmp_path / 'pytorch_model.bin'
    torch.save(official, src)
    assert convert_weights.main([str(src), '--verify']) == 0
    out = capsys.readouterr().out
    assert created == ['ghostnet_100'] and 'vs timm x ghostnet_100' in out
    assert _verify_differences(out) == [0.0]


def test_width_is_found_and_checked(tmp_path, capsys):
    path = tmp_path / 'ghostnet_1.3x.pth'
    torch.save(GhostNetClassifier(1.3).state_dict(), path)
    assert convert_weights.main([str(path), str(tmp_path / 'out.pth'), '--width', '1.0']) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'width 1.3 (widen_factor=1.3)' in err and '--width 1.3' in err
    assert not (tmp_path / 'out.pth').exists()
    assert convert_weights.main([str(path), str(tmp_path / 'out.pth')]) == 0  # the width is read from the shapes
    assert 'GhostNet(widen_factor=1.3)' in capsys.readouterr().out


def _resnet_like():
    return {'conv1.weight': torch.zeros(64, 3, 7, 7), 'bn1.weight': torch.ones(64), 'bn1.bias': torch.zeros(64),
            'layer1.0.conv1.weight': torch.zeros(64, 64, 1, 1), 'fc.weight': torch.zeros(1000, 2048)}


def test_malformed_inputs(official, tmp_path, capsys):
    """Each case: exit status 1 and one ``error:`` line saying what is wrong; nothing written."""
    resnet = tmp_path / 'resnet50.pth'
    torch.save({'state_dict': _resnet_like()}, resnet)
    full = tmp_path / 'full.pth'
    torch.save(official, full)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(full.read_bytes()[:full.stat().st_size // 2])
    partial = tmp_path / 'partial.pth'  # a tensor of stage 2 is gone: no shallower trunk can explain it
    torch.save({k: v for k, v in official.items() if k != 'blocks.3.0.ghost1.primary_conv.1.running_var'}, partial)
    not_a_dict = tmp_path / 'list.pth'
    torch.save([torch.zeros(3)], not_a_dict)
    cases = [(resnet, 'not a GhostNet'), (truncated, ''), (partial, 'missing'), (not_a_dict, 'not a GhostNet'),
             (tmp_path / 'absent.pth', 'not found')]
    try:
        from safetensors.torch import save_file
        save_file(official, str(tmp_path / 'full.safetensors'))
        truncated_st = tmp_path / 'truncated.safetensors'
        truncated_st.write_bytes((tmp_path / 'full.safetensors').read_bytes()[:1_000_000])
        cases.append((truncated_st, 'safetensors'))
    except ImportError:
        pass
    for path, message in cases:
        assert convert_weights.main([str(path), str(tmp_path / 'out.pth')]) == 1, path
        err = capsys.readouterr().err
        assert err.startswith('error: ') and message in err, (path, err)
    assert not (tmp_path / 'out.pth').exists()


class _RunsAShell:
    """Unpickling this runs a shell command: proof that the pickle ran code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f'touch {self.path}', )


def test_pickle_that_runs_code_is_refused(tmp_path, capsys):
    marker = tmp_path / 'pwned'
    saved = tmp_path / 'torch_saved.pth'  # a zip checkpoint whose pickle calls os.system
    torch.save({'state_dict': {'conv_stem.weight': torch.zeros(16, 3, 3, 3)}, 'hook': _RunsAShell(str(marker))},
               saved)
    raw = tmp_path / 'raw_pickle.bin'  # a legacy (non-zip) pickle
    raw.write_bytes(pickle.dumps(_RunsAShell(str(marker)), protocol=2))
    for path in (saved, raw):
        assert convert_weights.main([str(path), str(tmp_path / 'out.pth')]) == 1
        assert capsys.readouterr().err.startswith('error: ')
        assert not marker.exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit) as exc:
        convert_weights.main([str(tmp_path / 'a.pth')])  # neither DST nor --verify
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        convert_weights.main([str(tmp_path / 'a.pth'), str(tmp_path / 'b.pth'), '--width', '0'])


def test_command_line_convert_and_verify(official, tmp_path):
    src, dst = tmp_path / 'state_dict_73.98.pth', tmp_path / 'checkpoints' / 'ghostnet_1.0x_imagenet.pth'
    torch.save(official, src)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, 'tools/convert_weights.py', str(src), str(dst), '--width', '1.0',
                             '--verify'], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for row in (rf'^loaded\s+{NUM_TRUNK}\b', r'^dropped \(unused\)\s+4\s+conv_head\.\* \(2\), classifier\.\* \(2\)',
                r'^missing\s+0\b'):
        assert re.search(row, result.stdout, re.M), result.stdout
    assert all(d <= 1e-4 for d in _verify_differences(result.stdout))
    assert dst.exists()


# ---- the family ----


@pytest.mark.parametrize('backbone_type,widen_factor', [('GhostNetV2', 1.3), ('GhostNetV3', 1.0)])
def test_convert_family_weights(backbone_type, widen_factor, tmp_path, capsys):
    """The backbone and the width are read from the keys and shapes; the result loads through init_cfg."""
    from mmdet.registry import MODELS

    from mmghost.models import classifier_class
    assert MODELS.get(backbone_type) is not None, f'{backbone_type} is not registered after `import mmghost`'
    torch.manual_seed(0)
    weights = classifier_class(backbone_type)(widen_factor).state_dict()
    src, dst = tmp_path / 'checkpoint.pth.tar', tmp_path / 'converted.pth'
    torch.save({'model': weights, 'epoch': 450}, src)
    assert convert_weights.main([str(src), str(dst)]) == 0
    assert f'-> {backbone_type}(widen_factor={widen_factor})' in capsys.readouterr().out
    record = torch.load(dst, weights_only=True)['meta']['ghostnet_weights']
    assert (record['backbone'], record['widen_factor']) == (backbone_type, widen_factor)
    model = MODELS.build(dict(type=backbone_type, widen_factor=widen_factor, out_indices=(0, 1, 2, 3, 4, 5),
                              init_cfg=dict(type='Pretrained', checkpoint=str(dst))))
    model.init_weights()
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize('backbone_type,timm_name', [('GhostNet', 'ghostnet_100'), ('GhostNetV2', 'ghostnetv2_100'),
                                                     ('GhostNetV3', 'ghostnetv3_100')])
def test_convert_and_verify_against_real_timm(backbone_type, timm_name, tmp_path, capsys):
    """timm's own file (its key names) converts, and --verify compares with timm's forward."""
    timm = pytest.importorskip('timm', reason='timm is installed in .venv-torch21 only')
    from mmdet.registry import MODELS
    assert MODELS.get(backbone_type) is not None, f'{backbone_type} is not registered after `import mmghost`'
    if timm_name not in timm.list_models():
        pytest.skip(f'timm {timm.__version__} has no {timm_name} (an older timm than the torch-2.1 stack pins)')
    torch.manual_seed(0)
    src, dst = tmp_path / 'pytorch_model.bin', tmp_path / 'converted.pth'
    torch.save(timm.create_model(timm_name, pretrained=False).state_dict(), src)
    assert convert_weights.main([str(src), str(dst), '--verify']) == 0
    out = capsys.readouterr().out
    assert f'vs timm {timm.__version__} {timm_name}' in out and f'-> {backbone_type}(widen_factor=1.0)' in out
    assert all(d <= 1e-5 for d in _verify_differences(out)), out


def test_whole_model_weights_without_prefix(official, reference_features, tmp_path):
    """An mmpretrain ImageClassifier checkpoint (backbone.*, head.conv_head.*, head.classifier.*; issue 13) loads
    into GhostNetClassifier as it is, and into the detection backbone through init_cfg without prefix=."""
    from mmengine.runner import load_checkpoint
    state = OrderedDict((f'head.{k}' if k.startswith(('conv_head.', 'classifier.')) else f'backbone.{k}', v)
                        for k, v in official.items())
    path = tmp_path / 'epoch_300.pth'
    torch.save({'meta': {'epoch': 300}, 'state_dict': state}, path)
    classifier = GhostNetClassifier(1.0)
    load_checkpoint(classifier, str(path), map_location='cpu', strict=True)
    assert all(torch.equal(v, official[k]) for k, v in classifier.state_dict().items())
    _assert_matches_reference(_features(path), reference_features)
