"""mmghost's one checkpoint reader (mmghost/utils/checkpoint_reader.py): model-zoo names resolved to torch hub's cache
and read without running anything, through every path that loads a checkpoint; and nothing else reads one.

Offline: the files are planted in a temporary ``TORCH_HOME`` under the name torch hub gives the URL that mmengine's
open-mmlab table maps the name to (``open-mmlab://resnet50_v1c`` -> ``resnet50_v1c-2cccc1ad.pth``); any download
attempt fails the test. The crafted file unpickles to ``os.mkdir(marker)``: the marker exists afterwards if and only
if code from the file ran.
"""
import ast
import glob
import os
import os.path as osp
import subprocess
import sys
from urllib.parse import urlparse

import pytest
import torch

from fixtures.tiny_config import TINY_DETECTORS, make_dataset, tiny_config_text
from fixtures.toy_training import ToyModel, toy_runner_args
from mmghost.utils import CheckpointError
from mmghost.utils import checkpoint_reader
from mmghost.utils.checkpoint_reader import is_safetensors, is_state_dict, read_checkpoint

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
ZOO_NAME = 'resnet50_v1c'  # the issue's example; any http entry of mmengine's open-mmlab table would do
URI = f'open-mmlab://{ZOO_NAME}'


class MakesMarker:
    """Unpickling it calls ``os.mkdir(path)``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path, )


def cached_name(uri: str = URI) -> str:
    """The file name torch hub caches ``uri`` under: the last part of the URL mmengine's table gives for it."""
    from mmengine.runner.checkpoint import get_external_models
    url = get_external_models()[uri[len('open-mmlab://'):]]
    return osp.basename(urlparse(url).path)


def test_the_cached_name_is_the_one_the_issue_names():
    assert cached_name() == 'resnet50_v1c-2cccc1ad.pth'


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """A fresh ``TORCH_HOME`` (for this process and the tools it starts); downloads fail. Returns the folder
    torch hub caches checkpoints in."""
    from torch import hub
    home = tmp_path / 'torch_home'
    monkeypatch.setenv('TORCH_HOME', str(home))
    monkeypatch.setattr(hub, '_hub_dir', None)  # hub.get_dir() then reads TORCH_HOME

    def no_download(url, *args, **kwargs):
        raise AssertionError(f'tried to download {url}: the planted file should have been read')

    monkeypatch.setattr(hub, 'download_url_to_file', no_download)
    monkeypatch.delenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', raising=False)
    folder = home / 'hub' / 'checkpoints'
    folder.mkdir(parents=True)
    return folder


def plant_crafted(folder, marker):
    path = folder / cached_name()
    torch.save({'state_dict': {'w': torch.zeros(2)}, 'meta': {'payload': MakesMarker(marker)}}, path)
    return path


def assert_refused_in_one_line(error, marker):
    text = str(error)
    assert '\n' not in text and 'refused' in text and cached_name() in text, text
    assert not osp.exists(marker), 'code from the planted file ran'


# ---- the reader itself ----


def test_state_dicts_and_safetensors_are_recognised_once_for_everyone():
    assert is_state_dict({'a': torch.zeros(1)}) and not is_state_dict({}) and not is_state_dict({'a': 1})
    assert not is_state_dict({'state_dict': {'a': torch.zeros(1)}})
    header = b'{"a":1}'
    data = len(header).to_bytes(8, 'little') + header
    assert is_safetensors(data, len(data)) and not is_safetensors(b'PK\x03\x04' + bytes(8), 12)


def test_a_crafted_file_in_torch_hubs_cache_runs_nothing_when_read_by_its_model_zoo_name(torch_home, tmp_path):
    marker = tmp_path / 'pwned'
    plant_crafted(torch_home, marker)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(URI)
    assert_refused_in_one_line(error.value, marker)


def test_torch_force_no_weights_only_load_is_the_only_way_out_and_says_so_in_one_line(torch_home, tmp_path,
                                                                                      monkeypatch, logged_warnings):
    marker = tmp_path / 'pwned'
    plant_crafted(torch_home, marker)
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    monkeypatch.setattr(checkpoint_reader, '_said', set())  # said once per process: this test is the first
    read_checkpoint(URI)
    assert marker.exists()  # what the user asked for: unpickled without restriction, as mmengine and torch do
    said = [line for line in logged_warnings if 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1' in line]
    assert len(said) == 1 and '\n' not in said[0] and 'without restriction' in said[0], logged_warnings


# ---- a runner's load_from ----


def _toy_runner(work_dir, load_from):
    from mmghost.engine import MMGhostRunner
    return MMGhostRunner(**toy_runner_args(work_dir), load_from=load_from)


def test_load_from_a_model_zoo_name_runs_nothing_from_a_crafted_cached_file(torch_home, tmp_path):
    marker = tmp_path / 'pwned'
    plant_crafted(torch_home, marker)
    runner = _toy_runner(tmp_path / 'work', URI)
    with pytest.raises(CheckpointError) as error:
        runner.load_or_resume()
    assert_refused_in_one_line(error.value, marker)


def test_load_from_a_model_zoo_name_loads_a_genuine_cached_file(torch_home, tmp_path):
    genuine = ToyModel()
    with torch.no_grad():
        genuine.linear.weight.copy_(torch.tensor([[3.0, -2.0]]))
        genuine.linear.bias.fill_(0.5)
    torch.save({'state_dict': genuine.state_dict()}, torch_home / cached_name())
    runner = _toy_runner(tmp_path / 'work', URI)
    runner.load_or_resume()
    loaded = runner.model.linear
    assert torch.equal(loaded.weight, genuine.linear.weight) and torch.equal(loaded.bias, genuine.linear.bias)


# ---- the tools, as a user runs them ----


@pytest.fixture(scope='module')
def tiny_detector(tmp_path_factory):
    """A shapes dataset, the tiny GhostNet detector's config on it, and a genuine checkpoint of that detector."""
    from mmghost.engine import build_detector, load_config
    base = tmp_path_factory.mktemp('zoo_tools')
    data = make_dataset(str(base / 'shapes'), images=2, size=96)
    config = base / 'tiny.py'
    config.write_text(tiny_config_text(data, epochs=1, val_batch_size=1, extra=TINY_DETECTORS['ghostnet']))
    model = build_detector(load_config(str(config)))
    checkpoint = base / 'genuine.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    image = sorted(glob.glob(osp.join(data, 'val', '*.png')))[0]
    return dict(config=str(config), checkpoint=checkpoint, image=image, base=base)


def run_tool(tool, *args, torch_home):
    env = dict(os.environ, TORCH_HOME=str(torch_home.parent.parent), PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    return subprocess.run([sys.executable, osp.join(ROOT, 'tools', tool), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)


def assert_tool_refused_in_one_line(proc, marker):
    assert proc.returncode != 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and 'refused' in errors[0] and cached_name() in errors[0], proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert not osp.exists(marker), 'code from the planted file ran'


@pytest.mark.slow
def test_infer_py_runs_nothing_from_a_crafted_cached_file_and_loads_a_genuine_one(tiny_detector, torch_home,
                                                                                   tmp_path):
    marker = tmp_path / 'pwned'
    plant_crafted(torch_home, marker)
    out_dir = tmp_path / 'out'
    proc = run_tool('infer.py', tiny_detector['config'], URI, tiny_detector['image'], '--out-dir', out_dir,
                    torch_home=torch_home)
    assert_tool_refused_in_one_line(proc, marker)

    (torch_home / cached_name()).write_bytes(tiny_detector['checkpoint'].read_bytes())
    proc = run_tool('infer.py', tiny_detector['config'], URI, tiny_detector['image'], '--out-dir', out_dir,
                    torch_home=torch_home)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert glob.glob(str(out_dir / '*.json'))


@pytest.mark.slow
def test_test_py_runs_nothing_from_a_crafted_cached_file_and_loads_a_genuine_one(tiny_detector, torch_home,
                                                                                  tmp_path):
    marker = tmp_path / 'pwned'
    plant_crafted(torch_home, marker)
    proc = run_tool('test.py', tiny_detector['config'], URI, '--work-dir', tmp_path / 'work', torch_home=torch_home)
    assert_tool_refused_in_one_line(proc, marker)

    (torch_home / cached_name()).write_bytes(tiny_detector['checkpoint'].read_bytes())
    proc = run_tool('test.py', tiny_detector['config'], URI, '--work-dir', tmp_path / 'work', torch_home=torch_home)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f'Load checkpoint from {URI}' in proc.stdout + proc.stderr


# ---- nothing else reads a checkpoint ----


def _calls(path):
    """``(line, name)`` of every call in ``path`` to a function that reads a checkpoint file."""
    readers = {'load', '_load_checkpoint', 'load_checkpoint', 'load_state_dict_from_url', 'load_url',
               'load_from_local', 'load_from_http'}
    found = []
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == 'load' and isinstance(func.value, ast.Name) \
                and func.value.id == 'torch':
            found.append((node.lineno, 'torch.load'))
        elif isinstance(func, ast.Name) and func.id in readers - {'load'}:
            found.append((node.lineno, func.id))
        elif isinstance(func, ast.Attribute) and func.attr in readers - {'load', 'load_checkpoint'}:
            found.append((node.lineno, func.attr))
        for keyword in node.keywords:  # init_cfg=dict(type='Pretrained'): mmengine's unrestricted reader
            if keyword.arg == 'type' and isinstance(keyword.value, ast.Constant) and keyword.value.value == \
                    'Pretrained':
                found.append((node.lineno, "type='Pretrained'"))
    return found


def test_no_module_or_tool_reads_a_checkpoint_except_through_the_reader():
    allowed = {osp.join('mmghost', 'utils', 'safe_load.py'), osp.join('mmghost', 'utils', 'checkpoint_reader.py')}
    files = glob.glob(osp.join(ROOT, 'mmghost', '**', '*.py'), recursive=True) + \
        glob.glob(osp.join(ROOT, 'tools', '*.py'))
    offenders = {osp.relpath(f, ROOT): calls for f in files if osp.relpath(f, ROOT) not in allowed
                 for calls in [_calls(f)] if calls}
    assert not offenders, offenders
