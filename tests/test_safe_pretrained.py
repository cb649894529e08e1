"""SafePretrained (mmghost.models.pretrained): mmengine's ``Pretrained`` initializer that reads weights files without
running code from them (issue 20, item 1).

The malicious files here unpickle to ``os.mkdir(marker)``: the marker folder exists afterwards if and only if code
from the file ran. Tests named ``test_upstream_*`` document what mmengine 0.10.7's plain ``Pretrained`` does with
such files (why SafePretrained exists); if one of them fails, upstream changed, not mmghost.

The good files hold GhostNet-1.0x weights in the official/timm layout, filled by tests/fixtures/
deterministic_weights.py with the key list of tests/fixtures/ghostnet_parity.npz, whose features were computed by
timm (the independent reference). Model-zoo names are served from local files by replacing torch hub's download
function: no network.
"""
import json
import logging
import os
import os.path as osp
import pickle
import re
import shutil
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseModule
from mmengine.model.weight_init import PretrainedInit, initialize
from mmengine.registry import WEIGHT_INITIALIZERS
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.utils import digit_version

import mmghost  # noqa: F401  registers SafePretrained
from fixtures.deterministic_weights import deterministic_input, deterministic_state_dict
from mmghost.models import GhostNet
from mmghost.models.pretrained import SafePretrainedInit
from mmghost.utils import CheckpointError, UserFacingError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FIXTURE = osp.join(ROOT, 'tests', 'fixtures', 'ghostnet_parity.npz')
DETECTOR_CONFIG = osp.join(ROOT, 'configs', 'retinanet_ghostnet-1.0x_fpn.py')
# torch 2.6 made weights_only=True the default of torch.load (mmengine's load_from_local passes no weights_only).
TORCH_DEFAULTS_TO_WEIGHTS_ONLY = digit_version(torch.__version__) >= digit_version('2.6.0')
HEAD = ('conv_head.', 'classifier.')


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: the machine is small and shared; results do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class MakesMarker:
    """Unpickling it calls ``os.mkdir(path)``: the side effect every malicious file here carries."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path, )


def write_malicious(path, marker, kind='zip'):
    """A weights file whose unpickling creates ``marker``: torch's zip format (a real state dict beside the
    payload) or a bare pickle (torch's legacy path unpickles it while looking for its magic number)."""
    if kind == 'zip':
        torch.save({'state_dict': {'conv_stem.weight': torch.zeros(16, 3, 3, 3)}, 'extra': MakesMarker(marker)},
                   str(path))
    else:
        with open(path, 'wb') as f:
            pickle.dump(MakesMarker(marker), f, protocol=2)
    return str(path)


def assert_one_line_naming(error, name):
    text = str(error.value)
    assert isinstance(error.value, UserFacingError) and isinstance(error.value, CheckpointError)
    assert '\n' not in text, text
    assert str(name) in text, text


@pytest.fixture(scope='module')
def official():
    """GhostNet-1.0x in the official/timm layout (conv_head and classifier included)."""
    return deterministic_state_dict(json.loads(str(np.load(FIXTURE)['key_shapes'])))


@pytest.fixture(scope='module')
def reference_features():
    """timm's stride 4/8/16/32 features for the official weights and the deterministic input."""
    data = np.load(FIXTURE)
    return [torch.from_numpy(data[name]) for name in ('blocks2', 'blocks4', 'blocks6', 'blocks8')]


def trunk(weights):
    return OrderedDict((k, v) for k, v in weights.items() if not k.startswith(HEAD))


def loaded_directly(weights):
    """The backbone's existing path without any file: ``load_state_dict`` of the trunk's tensors."""
    model = GhostNet(1.0)
    model.load_state_dict({k: v for k, v in trunk(weights).items() if not k.startswith('blocks.9.')}, strict=True)
    return model


def initialised(init_cfg, **kwargs):
    model = GhostNet(1.0, init_cfg=init_cfg, **kwargs)
    model.init_weights()
    return model


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, different[:5]


def small_detector_config(init_cfg):
    """configs/retinanet_ghostnet-1.0x_fpn.py with a narrow neck and head (fast) and the given backbone init_cfg."""
    cfg = Config.fromfile(DETECTOR_CONFIG)
    cfg.model.backbone.init_cfg = init_cfg
    cfg.model.neck.out_channels = 32
    cfg.model.bbox_head.update(in_channels=32, feat_channels=32, stacked_convs=1)
    return cfg


def build_detector(cfg):
    from mmdet.registry import MODELS
    return MODELS.build(cfg.model)


@pytest.fixture
def info_lines():
    """Lines logged through mmengine's current logger while the test runs."""
    from mmengine.logging import MMLogger
    lines = []

    class Handler(logging.Handler):

        def emit(self, record):
            lines.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = Handler(level=logging.INFO)
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


# ---- registration ----


def test_safe_pretrained_is_added_to_the_root_registry_and_pretrained_is_untouched():
    assert WEIGHT_INITIALIZERS.scope == 'mmengine'
    assert WEIGHT_INITIALIZERS.get('SafePretrained') is SafePretrainedInit
    assert WEIGHT_INITIALIZERS.get('Pretrained') is PretrainedInit


@pytest.mark.parametrize('scope', ['mmdet', 'mmpretrain'])
def test_safe_pretrained_is_found_from_the_detection_and_classification_scopes(scope, official, tmp_path):
    if scope == 'mmpretrain':
        pytest.importorskip('mmpretrain', reason='mmpretrain is only in the torch 2.1 stack')
    from mmengine.registry import DefaultScope
    path = tmp_path / 'official.pth'
    torch.save(official, path)
    model = GhostNet(1.0)
    with DefaultScope.overwrite_default_scope(scope):
        initialize(model, dict(type='SafePretrained', checkpoint=str(path)))
    assert_same_weights(model, loaded_directly(official))


# ---- code in the file never runs ----


@pytest.mark.parametrize('kind', ['zip', 'raw_pickle'])
def test_code_in_the_file_a_real_config_names_never_runs(kind, tmp_path):
    """Issue 20's reproduction, with SafePretrained: the file named as model.backbone.init_cfg.checkpoint of
    configs/retinanet_ghostnet-1.0x_fpn.py, the detector built with mmdet's registry, init_weights() called."""
    marker = tmp_path / 'pwned'
    path = write_malicious(tmp_path / 'ghostnet_1.0x_imagenet.pth', marker, kind)
    cfg = small_detector_config(dict(type='SafePretrained', checkpoint=path))
    assert Config.fromfile(DETECTOR_CONFIG).model.backbone.init_cfg.type == 'SafePretrained'
    detector = build_detector(cfg)
    with pytest.raises(CheckpointError) as error:
        detector.init_weights()
    assert not marker.exists()
    assert_one_line_naming(error, path)
    assert 'Nothing from it was executed' in str(error.value)


def test_prefix_path_refuses_code_too(tmp_path):
    marker = tmp_path / 'pwned'
    path = write_malicious(tmp_path / 'epoch_12.pth', marker)
    with pytest.raises(CheckpointError) as error:
        initialised(dict(type='SafePretrained', checkpoint=path, prefix='backbone.'))
    assert not marker.exists()
    assert_one_line_naming(error, path)


def test_missing_file_is_one_line_naming_it(tmp_path):
    path = str(tmp_path / 'no_such_weights.pth')
    with pytest.raises(CheckpointError) as error:
        initialised(dict(type='SafePretrained', checkpoint=path))
    assert_one_line_naming(error, path)


@pytest.mark.upstream
@pytest.mark.skipif(TORCH_DEFAULTS_TO_WEIGHTS_ONLY,
                    reason='upstream: torch >= 2.6 unpickles a local file weights-only when mmengine passes no '
                    'weights_only (test_upstream_plain_pretrained_refuses_code_in_a_local_file_from_torch_2_6)')
def test_upstream_plain_pretrained_runs_code_in_a_local_file_before_torch_2_6(tmp_path):
    """UPSTREAM BEHAVIOUR, not mmghost's: mmengine 0.10.7's PretrainedInit reads a local file with
    ``torch.load(filename, map_location)``, which on torch < 2.6 is plain pickle. Fails only if upstream changed."""
    marker = tmp_path / 'pwned'
    path = write_malicious(tmp_path / 'ghostnet_1.0x_imagenet.pth', marker)
    try:
        initialised(dict(type='Pretrained', checkpoint=path))
    except Exception:
        pass
    assert marker.exists(), f'upstream changed: plain Pretrained on torch {torch.__version__} no longer runs code'


@pytest.mark.upstream
@pytest.mark.skipif(not TORCH_DEFAULTS_TO_WEIGHTS_ONLY, reason='upstream: torch < 2.6 unpickles local files fully '
                    '(test_upstream_plain_pretrained_runs_code_in_a_local_file_before_torch_2_6)')
def test_upstream_plain_pretrained_refuses_code_in_a_local_file_from_torch_2_6(tmp_path, monkeypatch):
    """UPSTREAM BEHAVIOUR: from torch 2.6 ``torch.load`` defaults to ``weights_only=True``, so plain Pretrained
    refuses the file (unless TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set). Fails only if upstream changed."""
    monkeypatch.delenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', raising=False)
    marker = tmp_path / 'pwned'
    path = write_malicious(tmp_path / 'ghostnet_1.0x_imagenet.pth', marker)
    with pytest.raises(Exception):
        initialised(dict(type='Pretrained', checkpoint=path))
    assert not marker.exists(), f'upstream changed: torch {torch.__version__} ran code from a plain torch.load'


# ---- good files: the same result as the backbone's existing path ----

# name: (file name, what to save, prefix)
LAYOUTS = {
    'official_pth': ('state_dict_73.98.pth', lambda w: w, None),
    'official_pth_tar': ('ck_ghostnet.pth.tar', lambda w: {'state_dict': w, 'epoch': 299, 'arch': 'ghostnet_100',
                                                          'metric': 73.98}, None),
    'timm_bin': ('pytorch_model.bin', lambda w: OrderedDict(w), None),
    'ddp_module_prefix': ('ddp.pth', lambda w: {f'module.{k}': v for k, v in w.items()}, None),
    # mmghost 0.1 named the stem stem.conv/stem.bn (mmcv ConvModule); the backbone renames it while loading
    'mmghost_01_stem': ('mmghost01.pth', lambda w: {'state_dict': {
        re.sub(r'^conv_stem\.', 'stem.conv.', re.sub(r'^bn1\.', 'stem.bn.', k)): v for k, v in w.items()}}, None),
    'classifier_prefix': ('cls.pth', lambda w: {'state_dict': {f'backbone.{k}': v for k, v in w.items()}},
                          'backbone.'),
}


@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_good_files_load_like_the_existing_path(layout, official, reference_features, tmp_path):
    name, make, prefix = LAYOUTS[layout]
    path = tmp_path / name
    torch.save(make(official), path)
    init_cfg = dict(type='SafePretrained', checkpoint=str(path))
    if prefix:
        init_cfg['prefix'] = prefix
    model = initialised(init_cfg)
    assert_same_weights(model, loaded_directly(official))
    # mmengine's own Pretrained reads these plain files on both torch versions: the same tensors come out
    assert_same_weights(model, initialised(dict(init_cfg, type='Pretrained')))
    with torch.no_grad():
        outs = model.eval()(deterministic_input())
    for out, ref in zip(outs, reference_features):  # timm's features for these weights
        assert (out - ref).abs().max().item() <= 1e-5


def test_timm_safetensors_loads_like_the_existing_path(official, reference_features, tmp_path):
    safetensors = pytest.importorskip('safetensors.torch', reason='safetensors is not installed in this stack')
    path = tmp_path / 'model.safetensors'
    safetensors.save_file({k: v.contiguous() for k, v in official.items()}, str(path))
    model = initialised(dict(type='SafePretrained', checkpoint=str(path)))
    assert_same_weights(model, loaded_directly(safetensors.load_file(str(path))))
    renamed = tmp_path / 'downloaded_blob'  # recognised by its content too (Hugging Face cache names)
    shutil.copy(path, renamed)
    assert_same_weights(initialised(dict(type='SafePretrained', checkpoint=str(renamed))), model)
    with torch.no_grad():
        outs = model.eval()(deterministic_input())
    for out, ref in zip(outs, reference_features):
        assert (out - ref).abs().max().item() <= 1e-5


def test_weights_under_another_wrapper_load_where_pretrained_loads_nothing(official, tmp_path, info_lines):
    path = tmp_path / 'ema.pth'
    torch.save({'state_dict_ema': official, 'epoch': 10}, path)
    model = initialised(dict(type='SafePretrained', checkpoint=str(path)))
    assert_same_weights(model, loaded_directly(official))
    assert any("using the weights under 'state_dict_ema'" in line for line in info_lines)


def test_logs_like_pretrained(official, tmp_path, info_lines):
    path = tmp_path / 'official.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in official.items()}}, path)
    initialised(dict(type='SafePretrained', checkpoint=str(path)))
    initialised(dict(type='SafePretrained', checkpoint=str(path), prefix='backbone.'))
    assert f'load model from: {path}' in info_lines
    assert f'load backbone. in model from: {path}' in info_lines
    assert any(line.startswith(f'Loads checkpoint by local backend from path: {path}') for line in info_lines)


# ---- detector checkpoints (mmengine training state) with prefix ----


@pytest.fixture(scope='module')
def detector_checkpoint(official, tmp_path_factory):
    """An mmengine training checkpoint of the small RetinaNet-GhostNet-1.0x whose backbone holds the official
    weights, with a real message hub (HistoryBuffer, numpy values), as mmengine's Runner saves it."""
    from mmengine.logging import MessageHub
    detector = build_detector(small_detector_config(None))
    detector.backbone.load_state_dict({k: v for k, v in trunk(official).items() if not k.startswith('blocks.9.')},
                                      strict=True)
    hub = MessageHub('safe_pretrained_test')
    hub.update_scalar('train/loss', np.float64(1.25))
    hub.update_info('epoch', 12)
    path = tmp_path_factory.mktemp('detector') / 'epoch_12.pth'
    torch.save({'meta': dict(epoch=12, iter=1000, mmengine_version='0.10.7'), 'state_dict': detector.state_dict(),
                'message_hub': hub.state_dict()}, path)
    return str(path)


def test_prefix_takes_the_backbone_of_a_detector_checkpoint(detector_checkpoint, official):
    model = initialised(dict(type='SafePretrained', checkpoint=detector_checkpoint, prefix='backbone.'))
    assert_same_weights(model, loaded_directly(official))
    # without prefix the family's loader finds the backbone.* keys itself
    assert_same_weights(initialised(dict(type='SafePretrained', checkpoint=detector_checkpoint)), model)


def test_prefix_in_a_real_detector_config(detector_checkpoint, official):
    cfg = small_detector_config(dict(type='SafePretrained', checkpoint=detector_checkpoint, prefix='backbone'))
    detector = build_detector(cfg)
    detector.init_weights()
    reference = loaded_directly(official)
    own = detector.backbone.state_dict()
    assert all(torch.equal(own[k], v) for k, v in reference.state_dict().items())


def test_prefix_not_in_the_file_is_one_line_naming_it(detector_checkpoint):
    with pytest.raises(CheckpointError) as error:
        initialised(dict(type='SafePretrained', checkpoint=detector_checkpoint, prefix='neck.nothing.'))
    assert_one_line_naming(error, detector_checkpoint)


# ---- model-zoo names: resolved as mmengine does, the download read safely ----


@pytest.fixture
def served(monkeypatch, tmp_path):
    """torch hub's download replaced by a copy of ``served['file']``; its cache in tmp_path. Records the URLs."""
    from torch import hub
    state = {'file': None, 'urls': []}

    def download_url_to_file(url, dst, hash_prefix=None, progress=True):
        state['urls'].append(url)
        shutil.copy(state['file'], dst)

    monkeypatch.setattr(hub, 'download_url_to_file', download_url_to_file)
    monkeypatch.setattr(hub, '_hub_dir', str(tmp_path / 'hub'))
    return state


def _zoo_names():
    """(name in a config, the URL mmengine resolves it to) per scheme, from mmengine's own tables."""
    from mmengine.runner.checkpoint import get_external_models, get_mmcls_models
    openmmlab = next(k for k, v in sorted(get_external_models().items()) if v.startswith('http'))
    mmcls = sorted(get_mmcls_models())[0]
    names = [(f'open-mmlab://{openmmlab}', get_external_models()[openmmlab]),
             (f'mmcls://{mmcls}', get_mmcls_models()[mmcls]),
             ('https://example.invalid/weights/ghostnet_1.0x_imagenet.pth',
              'https://example.invalid/weights/ghostnet_1.0x_imagenet.pth')]
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return names
    from mmengine.runner.checkpoint import get_torchvision_models
    return names + [('torchvision://resnet18', get_torchvision_models()['resnet18'])]


ZOO = _zoo_names()


@pytest.mark.parametrize('name,url', ZOO, ids=[n.split('://')[0] for n, _ in ZOO])
def test_model_zoo_download_with_code_is_refused_and_nothing_runs(name, url, served, tmp_path):
    marker = tmp_path / 'pwned'
    served['file'] = write_malicious(tmp_path / 'served.pth', marker)
    with pytest.raises(CheckpointError) as error:
        initialised(dict(type='SafePretrained', checkpoint=name))
    assert served['urls'] == [url]
    assert not marker.exists()
    assert_one_line_naming(error, url)


@pytest.mark.parametrize('name,url', ZOO, ids=[n.split('://')[0] for n, _ in ZOO])
def test_model_zoo_download_loads_good_weights(name, url, served, official, tmp_path):
    path = tmp_path / 'served.pth'
    # mmcls:// keeps the backbone.* keys of mmcls classifiers (mmengine's _process_mmcls_checkpoint)
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in official.items()}} if name.startswith('mmcls')
               else official, path)
    served['file'] = str(path)
    model = initialised(dict(type='SafePretrained', checkpoint=name))
    assert served['urls'] == [url]
    assert_same_weights(model, loaded_directly(official))
    # a second build reads torch hub's cache, as mmengine does: no second download
    initialised(dict(type='SafePretrained', checkpoint=name))
    assert served['urls'] == [url]


@pytest.mark.upstream
def test_upstream_plain_pretrained_runs_code_in_a_model_zoo_download_on_every_torch(served, tmp_path):
    """UPSTREAM BEHAVIOUR, not mmghost's: mmengine 0.10.7 reads URLs and model-zoo names with
    ``torch.hub.load_state_dict_from_url``, which passes ``weights_only=False`` to ``torch.load`` explicitly, so
    the download is unpickled fully even on torch >= 2.6. Fails only if upstream changed."""
    marker = tmp_path / 'pwned'
    served['file'] = write_malicious(tmp_path / 'served.pth', marker)
    name, url = ZOO[0]
    try:
        initialised(dict(type='Pretrained', checkpoint=name))
    except Exception:
        pass
    assert served['urls'] == [url]
    assert marker.exists(), (f'upstream changed: plain Pretrained no longer unpickles model-zoo downloads fully '
                             f'(torch {torch.__version__})')


def test_scheme_read_by_an_unknown_loader_is_refused(monkeypatch, official, tmp_path):
    calls = []

    def load_from_elsewhere(filename, map_location=None):
        calls.append(filename)
        return official

    monkeypatch.setattr(CheckpointLoader, '_schemes', CheckpointLoader._schemes.copy())
    CheckpointLoader.register_scheme('elsewhere://', load_from_elsewhere)  # undone with _schemes at teardown
    with pytest.raises(CheckpointError) as error:
        initialised(dict(type='SafePretrained', checkpoint='elsewhere://ghostnet'))
    assert calls == []
    assert_one_line_naming(error, 'elsewhere://ghostnet')
    assert 'load_from_elsewhere' in str(error.value)


# ---- the place mmengine gives 'Pretrained': after the children's own init_weights ----


class SelfInitialising(nn.Module):
    """Not a BaseModule, but has init_weights (as mmcv's ConvModule): mmengine calls it from its parent."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)

    def init_weights(self):
        nn.init.constant_(self.conv.weight, 5.0)
        nn.init.constant_(self.conv.bias, 5.0)


class Parent(BaseModule):

    def __init__(self, init_cfg=None):
        super().__init__(init_cfg)
        self.own = nn.Conv2d(2, 2, 1)
        self.child = BaseModule(init_cfg=dict(type='Constant', val=3.0, layer='Conv2d'))
        self.child.conv = nn.Conv2d(2, 2, 1)
        self.plain = SelfInitialising()


@pytest.mark.parametrize('init_type', ['Pretrained', 'SafePretrained'])
@pytest.mark.parametrize('listed', ['alone', 'after_constant'])
def test_loaded_weights_win_over_the_childrens_own_init(init_type, listed, tmp_path):
    path = tmp_path / 'parent.pth'
    torch.save({k: torch.full_like(v, 1.0) for k, v in Parent().state_dict().items()}, path)
    init_cfg = dict(type=init_type, checkpoint=str(path))
    if listed == 'after_constant':
        init_cfg = [dict(type='Constant', val=7.0, layer='Conv2d'), init_cfg]
    model = Parent(init_cfg)
    model.init_weights()
    assert all(torch.equal(v, torch.ones_like(v)) for v in model.state_dict().values())


def test_safe_pretrained_listed_before_other_initializers_is_refused(tmp_path):
    """mmengine applies 'Pretrained' last wherever it is listed; SafePretrained runs in list order, so an
    initializer after it would overwrite the weights: refused with the fix named."""
    path = tmp_path / 'parent.pth'
    torch.save(Parent().state_dict(), path)
    model = Parent([dict(type='SafePretrained', checkpoint=str(path)), dict(type='Constant', val=7.0, layer='Conv2d')])
    with pytest.raises(ValueError, match='put SafePretrained last'):
        model.init_weights()


# ---- every config of ours that reads weights uses SafePretrained ----


def _all_configs():
    configs = []
    for folder, _, files in os.walk(osp.join(ROOT, 'configs')):
        configs += [osp.join(folder, f) for f in files if f.endswith('.py')]
    return sorted(configs)


def _pretrained_types(obj, where='cfg'):
    """(where, type) of every initializer dict that reads weights (Pretrained*, anything with a checkpoint)."""
    found = []
    if isinstance(obj, dict):
        kind = obj.get('type')
        if isinstance(kind, str) and ('Pretrained' in kind or ('checkpoint' in obj and 'init_cfg' in where)):
            found.append((where, kind))
        for k, v in obj.items():
            found += _pretrained_types(v, f'{where}.{k}')
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found += _pretrained_types(v, f'{where}[{i}]')
    return found


def test_every_config_that_reads_weights_uses_safe_pretrained():
    unsafe, unreadable, readers = [], [], []
    for path in _all_configs():
        name = osp.relpath(path, ROOT)
        try:
            cfg = Config.fromfile(path, import_custom_modules=False)
        except Exception as e:  # a base config of a package this stack lacks (mmpretrain::, mmdeploy)
            unreadable.append((name, f'{type(e).__name__}: {e}'))
            with open(path) as f:
                text = f.read()
            unsafe += [(name, m) for m in re.findall(r"type\s*=\s*['\"]Pretrained['\"]", text)]
            continue
        for where, kind in _pretrained_types(cfg.to_dict()):
            readers.append((name, where))
            if kind != 'SafePretrained':
                unsafe.append((name, where, kind))
    assert not unsafe, unsafe
    assert readers, 'no config reads pretrained weights: the walk is broken'
    assert any(name == osp.join('configs', 'retinanet_ghostnet-1.0x_fpn.py') for name, _ in readers)
    for name, reason in unreadable:  # only configs built on packages missing from this stack are skipped
        assert re.search(r'mmpretrain|mmdeploy|No module named', reason), (name, reason)


def test_reads_pretrained_weights_knows_both_names(tmp_path):
    from mmghost.models.pretrained import reads_pretrained_weights
    assert reads_pretrained_weights(dict(type='SafePretrained', checkpoint='a.pth'))
    assert reads_pretrained_weights([dict(type='Kaiming', layer='Conv2d'), dict(type='Pretrained', checkpoint='a')])
    assert not reads_pretrained_weights(dict(type='Kaiming', layer='Conv2d'))
    assert not reads_pretrained_weights(None)


@pytest.mark.parametrize('served_kind', ['malicious', 'good', 'good_safetensors'])
def test_storage_backend_bytes_are_read_safely(served_kind, monkeypatch, official, tmp_path):
    """``s3://`` / ``petrel://``: mmengine reads the bytes with its file backend; here they are unpickled by the
    restricted reader (the backend is replaced by one serving a local file)."""
    import mmengine.fileio
    marker = tmp_path / 'pwned'
    path = tmp_path / 'served'
    if served_kind == 'malicious':
        write_malicious(path, marker)
    elif served_kind == 'good':
        torch.save(official, path)
    else:
        safetensors = pytest.importorskip('safetensors.torch', reason='safetensors is not installed in this stack')
        safetensors.save_file({k: v.contiguous() for k, v in official.items()}, str(path))
    requested = []

    class Backend:

        def get(self, filepath):
            requested.append(filepath)
            return path.read_bytes()

    monkeypatch.setattr(mmengine.fileio, 'get_file_backend', lambda uri, backend_args=None: Backend())
    name = 's3://bucket/ghostnet_1.0x_imagenet.pth'
    if served_kind == 'malicious':
        with pytest.raises(CheckpointError) as error:
            initialised(dict(type='SafePretrained', checkpoint=name))
        assert not marker.exists()
        assert_one_line_naming(error, name)
    else:
        assert_same_weights(initialised(dict(type='SafePretrained', checkpoint=name)), loaded_directly(official))
    assert requested == [name]


def test_truncated_file_is_one_line_naming_it(official, tmp_path):
    full, cut = tmp_path / 'full.pth', tmp_path / 'truncated.pth'
    torch.save(official, full)
    cut.write_bytes(full.read_bytes()[:100_000])
    with pytest.raises(CheckpointError) as error:
        initialised(dict(type='SafePretrained', checkpoint=str(cut)))
    assert_one_line_naming(error, cut)
