"""mmghost.configs: finding our configs by name, the `python -m mmghost.configs` CLI, and the `_base_ =
'mmghost::NAME'` rewriting that mmghost's tools apply before mmengine reads a config (no mmengine needed here)."""
import ast
import os
import os.path as osp

import pytest

from mmghost import configs

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = 'demo/retinanet_ghostnet_shapes.py'


def base_of(path):
    """The value of a config file's `_base_`."""
    with open(path) as f:
        return ast.literal_eval(next(n for n in ast.parse(f.read()).body if isinstance(n, ast.Assign)
                                     and n.targets[0].id == '_base_').value)


def test_from_a_checkout_the_configs_are_the_repository_configs():
    assert configs.configs_dir() == osp.join(ROOT, 'configs')
    assert configs.model_index_path() == osp.join(ROOT, 'model-index.yml')


def test_list_configs_names_every_python_config_under_configs():
    on_disk = sorted(osp.relpath(osp.join(d, f), osp.join(ROOT, 'configs')).replace(os.sep, '/')
                     for d, _, files in os.walk(osp.join(ROOT, 'configs')) if '__pycache__' not in d
                     for f in files if f.endswith('.py'))
    assert configs.list_configs() == on_disk
    assert DEMO in on_disk and 'retinanet_ghostnet_fpn.py' in on_disk


@pytest.mark.parametrize('name', [DEMO, 'demo/retinanet_ghostnet_shapes', 'retinanet_ghostnet_shapes.py',
                                  'retinanet_ghostnet_shapes', f'mmghost::{DEMO}'])
def test_config_path_accepts_path_bare_name_and_scheme(name):
    assert configs.config_path(name) == osp.join(ROOT, 'configs', 'demo', 'retinanet_ghostnet_shapes.py')


def test_config_path_of_a_top_level_config():
    assert configs.config_path('mmghost::retinanet_ghostnet_fpn.py') == osp.join(ROOT, 'configs',
                                                                                 'retinanet_ghostnet_fpn.py')


def test_config_path_unknown_name_suggests_close_names():
    with pytest.raises(FileNotFoundError, match='did you mean: .*retinanet_ghostnet_fpn.py'):
        configs.config_path('retinanet_ghostnet_fnp.py')


def test_config_path_refuses_names_outside_configs():
    with pytest.raises(ValueError, match='outside'):
        configs.config_path('../setup.py')


def test_cli_prints_the_path_and_lists(capsys):
    assert configs.main([DEMO]) == 0
    assert capsys.readouterr().out.strip() == osp.join(ROOT, 'configs', DEMO)
    assert configs.main(['--list']) == 0
    assert DEMO in capsys.readouterr().out.split()
    assert configs.main(['no_such_config']) == 1
    assert capsys.readouterr().err.startswith('error: mmghost has no config')


def test_cli_new_writes_a_starter_config_on_the_absolute_path(tmp_path, capsys):
    out = tmp_path / 'mine.py'
    assert configs.main([DEMO, '--new', str(out)]) == 0
    assert base_of(out) == osp.join(ROOT, 'configs', DEMO)
    assert 'custom_imports' not in out.read_text().replace('# ', '')  # the base's is inherited
    with pytest.raises(SystemExit):  # no overwriting without --force
        configs.main([DEMO, '--new', str(out)])
    assert configs.main([DEMO, '--new', str(out), '--force']) == 0


def test_resolve_base_leaves_configs_without_the_scheme_alone(tmp_path):
    own = tmp_path / 'own.py'
    own.write_text(f"_base_ = ['{osp.join(ROOT, 'configs', DEMO)}', 'mmdet::_base_/default_runtime.py']\n")
    out = tmp_path / 'out'
    out.mkdir()
    assert configs.resolve_base(str(own), str(out)) == str(own)
    assert configs.resolve_base(osp.join(ROOT, 'configs', 'retinanet_ghostnet-1.0x_fpn.py'), str(out)) == \
        osp.join(ROOT, 'configs', 'retinanet_ghostnet-1.0x_fpn.py')
    assert os.listdir(out) == []  # nothing copied


def test_resolve_base_rewrites_the_scheme_through_local_bases(tmp_path):
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'mid.py').write_text(
        "# ünïcode before the base\n_base_ = ['mmghost::retinanet_ghostnet_fpn.py',\n"
        "          'mmdet::_base_/default_runtime.py']\n"
        "work_dir = '{{ fileDirname }}/{{fileBasenameNoExtension}}'\n")
    top = tmp_path / 'top.py'
    top.write_text("_base_ = 'sub/mid.py'\nx = 1\n")
    out = tmp_path / 'out'
    out.mkdir()
    resolved = configs.resolve_base(str(top), str(out))
    assert resolved.startswith(str(out)) and osp.basename(resolved) == 'top.py'  # named as the original
    mid = base_of(resolved)
    assert osp.basename(mid) == 'mid.py' and mid.startswith(str(out))
    assert base_of(mid) == [osp.join(ROOT, 'configs', 'retinanet_ghostnet_fpn.py'), 'mmdet::_base_/default_runtime.py']
    with open(mid) as f:
        text = f.read()
    assert f"work_dir = '{tmp_path / 'sub'}/mid'" in text  # the original file's predefined variables
    assert text.startswith('# ünïcode before the base\n')


def test_resolve_base_unknown_scheme_name_fails_with_the_lookup_error(tmp_path):
    cfg = tmp_path / 'bad.py'
    cfg.write_text("_base_ = 'mmghost::retinanet_ghostnet_fnp.py'\n")
    with pytest.raises(FileNotFoundError, match='did you mean'):
        configs.resolve_base(str(cfg), str(tmp_path))
