"""The installed package, as a user gets it: a wheel built by ``pip wheel . --no-deps``, and the stack's editable
install. Their configs resolve from outside the checkout, and a config of the user's that builds on ours trains,
with mmdet's own ``tools/train.py`` and with ours.

The wheel goes into a scratch venv layered on the running stack: a plain path line in a ``.pth`` file of the scratch
venv appends the stack's site-packages (torch, mmdet, ...). Python runs the ``.pth`` files of site directories
only, so the stack's own ``__editable__.mmghost*.pth`` (the import hook of its editable mmghost) is not run, and the
wheel's mmghost is the one imported; the test checks that, and that the stack's site-packages is unchanged.
The wheel is built with the stack's setuptools (``--no-build-isolation``: no download).
"""
import contextlib
import fcntl
import glob
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from fixtures.tiny_config import DEMO_CONFIG, make_dataset, tiny_config_text

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
pytestmark = pytest.mark.slow

DEMO = 'demo/retinanet_ghostnet_shapes.py'


def run(args, cwd, timeout=300, env=None):
    env = dict(os.environ if env is None else env)
    env.pop('PYTHONPATH', None)  # the checkout must not leak into the processes that check the installed package
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f'{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
    return proc.stdout


def user_config(base: str, data_root: str) -> str:
    """A config of the user's on top of ``base`` (a path or ``mmghost::NAME``): the demo detector shrunk to one
    training iteration on 64-pixel images (tests/fixtures/tiny_config.py, with its ``_base_`` line replaced)."""
    text = tiny_config_text(data_root, iters=1, size=64, batch_size=2)
    first = f'_base_ = {DEMO_CONFIG!r}\n'
    assert text.startswith(first)
    return f'_base_ = {base!r}\n' + text[len(first):]


def assert_trained_one_step(work_dir):
    assert osp.isfile(osp.join(work_dir, 'iter_1.pth')), os.listdir(work_dir)
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    assert files, f'no scalars.json under {work_dir}'
    with open(files[0]) as f:
        losses = [json.loads(line)['loss'] for line in f if '"loss"' in line]
    assert len(losses) == 1 and losses[0] == losses[0] and losses[0] > 0  # one finite, positive loss


@contextlib.contextmanager
def build_lock():
    """setuptools builds in the checkout (build/, mmghost.egg-info): one build at a time when the two stacks'
    suites run side by side (tools/run_tests.sh)."""
    os.makedirs(osp.join(ROOT, 'build'), exist_ok=True)
    with open(osp.join(ROOT, 'build', '.test-build.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def site_packages(python):
    return run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'], cwd='/').strip()


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """The wheel of the checkout, and the configs that were in the checkout before it was built."""
    from mmghost.configs import list_configs  # conftest puts the checkout first on sys.path
    configs = list_configs()
    out = tmp_path_factory.mktemp('wheel')
    with build_lock():
        run([sys.executable, '-m', 'pip', 'wheel', '.', '--no-deps', '--no-build-isolation',
             '--disable-pip-version-check', '-q', '-w', str(out)], cwd=ROOT)
    wheels = glob.glob(str(out / 'mmghost-*.whl'))
    assert len(wheels) == 1, wheels
    return dict(path=wheels[0], configs=configs)


@pytest.fixture(scope='module')
def scratch(wheel, tmp_path_factory):
    """A venv with the wheel installed, layered on the running stack; returns its python and site-packages."""
    base = tmp_path_factory.mktemp('scratch')
    venv = str(base / 'venv')
    stack_site = sysconfig.get_paths()['purelib']
    stack_before = sorted(os.listdir(stack_site))
    run([sys.executable, '-m', 'venv', '--without-pip', venv], cwd=str(base))
    python = osp.join(venv, 'bin', 'python')
    site = site_packages(python)
    with open(osp.join(site, '_stack.pth'), 'w') as f:
        f.write(stack_site + '\n')  # a plain path line: the stack's own .pth files are not run
    # pip comes from the stack; --ignore-installed: never uninstall the stack's editable mmghost it can see.
    run([python, '-m', 'pip', 'install', '--no-deps', '--no-index', '--ignore-installed',
         '--disable-pip-version-check', '-q', wheel['path']], cwd=str(base))
    assert sorted(os.listdir(stack_site)) == stack_before, 'installing the wheel changed the stack'
    return dict(python=python, site=site, base=base)


def test_wheel_carries_configs_model_index_and_licence(wheel):
    with zipfile.ZipFile(wheel['path']) as z:
        names = set(z.namelist())
        metadata = z.read(next(n for n in names if n.endswith('.dist-info/METADATA'))).decode()
    shipped = {n[len('mmghost/.mim/configs/'):] for n in names if n.startswith('mmghost/.mim/configs/')}
    assert set(wheel['configs']) <= shipped
    assert {'metafile.yml', 'ghost_head/retinanet_ghostnet_fpn_ghost-head.py'} <= shipped
    assert 'mmghost/.mim/model-index.yml' in names
    assert not any('__pycache__' in n for n in names)
    stale = [n for n in names if n.startswith('mmghost/') and '/.mim/' not in n and not osp.exists(osp.join(ROOT, n))]
    assert not stale, f'modules that are not in the checkout: {stale}'  # build/lib is reused by in-tree builds
    assert any(n.endswith('.dist-info/licenses/LICENSE') or n.endswith('.dist-info/LICENSE') for n in names)
    assert 'License: Apache-2.0' in metadata and 'License-File: LICENSE' in metadata
    assert 'Requires-Python: >=3.10' in metadata


def test_sdist_carries_configs_as_mim(tmp_path):
    with build_lock():
        run([sys.executable, '-c', f'from setuptools import build_meta; build_meta.build_sdist({str(tmp_path)!r})'],
            cwd=ROOT)
    import tarfile
    with tarfile.open(glob.glob(str(tmp_path / 'mmghost-*.tar.gz'))[0]) as t:
        names = {n.split('/', 1)[1] for n in t.getnames() if '/' in n}
    assert {'LICENSE', 'CHANGELOG.md', 'setup.py', 'mmghost/.mim/model-index.yml',
            'mmghost/.mim/configs/metafile.yml', f'mmghost/.mim/configs/{DEMO}'} <= names
    assert not any(n.startswith('configs/') for n in names)  # once, as mmghost/.mim/configs (as mmdet's sdist)


def test_user_config_on_wheel_trains_with_mmdet_and_mmghost_tools(scratch):
    python, base = scratch['python'], scratch['base']
    data = make_dataset(str(base / 'shapes'), images=2, size=64)
    mim_configs = osp.join(scratch['site'], 'mmghost', '.mim', 'configs')

    # The printed path, run from /: `python -m mmghost.configs NAME --new OUT` writes a starter config whose _base_
    # is that path. It imports the wheel's mmghost (not the stack's editable one): the path is in the scratch venv.
    stock_cfg = str(base / 'my_stock.py')
    printed = run([python, '-m', 'mmghost.configs', DEMO, '--new', stock_cfg], cwd='/').strip()
    assert printed == stock_cfg
    with open(stock_cfg) as f:
        assert f'_base_ = {osp.join(mim_configs, DEMO)!r}' in f.read()
    with open(stock_cfg, 'a') as f:
        f.write(user_config(osp.join(mim_configs, DEMO), data).split('\n', 1)[1])
    ours_cfg = str(base / 'my_ours.py')
    with open(ours_cfg, 'w') as f:
        f.write(user_config(f'mmghost::{DEMO}', data))

    # mmdet's own tools/train.py (mmdet's wheel ships it under mmdet/.mim/tools) with the printed path as _base_,
    # and mmghost's tools/train.py (tools/ are not in the wheel: the checkout's, run by the scratch venv, whose
    # sys.path has tools/ but not the checkout) with mmghost::. Both from outside the checkout, side by side.
    mmdet_train = osp.join(osp.dirname(importlib.util.find_spec('mmdet').origin), '.mim', 'tools', 'train.py')
    assert osp.isfile(mmdet_train), mmdet_train
    runs = {'work_mmdet': [python, mmdet_train, stock_cfg], 'work_ours': [python, osp.join(ROOT, 'tools', 'train.py'),
                                                                          ours_cfg]}
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['OMP_NUM_THREADS'] = '1'
    procs = {name: subprocess.Popen(args + ['--work-dir', str(base / name)], cwd=str(base), env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, args in runs.items()}
    for name, proc in procs.items():
        output = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, f'{runs[name]} failed:\n{output[-6000:]}'
    for name in runs:
        assert_trained_one_step(str(base / name))


def test_editable_install_resolves_configs_from_the_checkout(tmp_path):
    """The stack's editable install (pip install -e .): configs come from the checkout's configs/."""
    printed = run([sys.executable, '-m', 'mmghost.configs', DEMO], cwd='/').strip()
    assert printed == osp.join(ROOT, 'configs', DEMO)
    # mmghost:: with the loader of mmghost's tools (in this process: the same checkout files the install maps to).
    from mmghost.engine.config import read_config
    cfg_file = tmp_path / 'mine.py'
    cfg_file.write_text(f"_base_ = 'mmghost::{DEMO}'\nmodel = dict(backbone=dict(widen_factor=0.5))\n")
    cfg = read_config(str(cfg_file))
    assert osp.join(ROOT, 'configs', DEMO) in cfg.text and cfg.model.backbone.widen_factor == 0.5
    assert cfg.filename == str(cfg_file)


def test_generated_config_on_wheel_trains_and_evaluates_with_mmdets_train_tool(scratch):
    """`python -m mmghost.configs NAME --new OUT --train ... --val ...` of the installed wheel, run from /, writes a
    config whose _base_ is the wheel's copy; mmdet's own tools/train.py trains and evaluates it (no edit)."""
    python, base = scratch['python'], scratch['base']
    data = make_dataset(str(base / 'shapes_generated'), images=2, size=64)
    ann = osp.join(data, 'annotations')
    config = str(base / 'generated.py')
    run([python, '-m', 'mmghost.configs', DEMO, '--new', config, '--train', osp.join(ann, 'instances_train.json'),
         data, '--val', osp.join(ann, 'instances_val.json'), data, '--image-size', '64', '--batch', '2'], cwd='/')
    with open(config) as f:
        assert f"_base_ = {osp.join(scratch['site'], 'mmghost', '.mim', 'configs', DEMO)!r}" in f.read()
    mmdet_train = osp.join(osp.dirname(importlib.util.find_spec('mmdet').origin), '.mim', 'tools', 'train.py')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['OMP_NUM_THREADS'] = '1'
    proc = subprocess.run([python, mmdet_train, config, '--work-dir', str(base / 'work_generated'), '--cfg-options',
                           'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'model.test_cfg.score_thr=0.0'],
                          cwd=str(base), env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert osp.isfile(base / 'work_generated' / 'epoch_1.pth') and 'coco/bbox_mAP' in output
