"""The config snippets of README.md and docs/*.md build as written.

A config snippet is a ```python block that assigns ``_base_`` or ``model`` at its top level. One with a ``_base_`` is
read as a config file of its own: ``mmdet::`` and ``mmghost::`` names as any of our tools reads them, and a path that ends in a
config of this repository (``/path/to/mmghost/configs/X.py``, ``../X.py`` from a folder of ``configs/``) as that
config. One without a ``_base_`` is a fragment for a detection config: it is read on top of
``configs/retinanet_ghostnet-1.0x_fpn.py``. Each builds with mmdet's registry (``build_detector``).
"""
import ast
import glob
import os.path as osp
import re

import pytest

from mmghost.engine import build_detector
from mmghost.engine.config import read_config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FRAGMENT_BASE = osp.join(ROOT, 'configs', 'retinanet_ghostnet-1.0x_fpn.py')
README_CONFIG = osp.join(ROOT, 'configs', 'retinanet_ghostnet-1.0x_fpn.py')


def python_blocks(path):
    """``(line, code)`` of every ```python block of a Markdown file."""
    text = open(path, encoding='utf-8').read()
    return [(text[:m.start()].count('\n') + 2, m.group(1)) for m in re.finditer(r'```python\n(.*?)```', text, re.S)]


def assigned_names(code):
    tree = ast.parse(code)
    return {target.id for node in tree.body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


def config_snippets():
    snippets = []
    for path in [osp.join(ROOT, 'README.md')] + sorted(glob.glob(osp.join(ROOT, 'docs', '*.md'))):
        for line, code in python_blocks(path):
            if assigned_names(code) & {'_base_', 'model'}:
                snippets.append(pytest.param(code, id=f'{osp.relpath(path, ROOT)}:{line}'))
    return snippets


def _repository_base(entry):
    """The repository's config that a ``_base_`` path names, or the entry itself (``mmdet::``, ``mmghost::``)."""
    if '::' in entry:
        return entry
    parts = entry.replace('\\', '/').split('/')
    for start in range(len(parts)):
        candidate = osp.join(ROOT, 'configs', *[p for p in parts[start:] if p not in ('.', '..')])
        if osp.isfile(candidate):
            return candidate
    raise AssertionError(f'_base_ {entry!r} names no config of this repository')


def snippet_config(code, tmp_path):
    names = assigned_names(code)
    if '_base_' in names:
        base = ast.literal_eval(next(node.value for node in ast.parse(code).body if isinstance(node, ast.Assign)
                                     and getattr(node.targets[0], 'id', None) == '_base_'))
        bases = [_repository_base(b) for b in ([base] if isinstance(base, str) else base)]
        value = bases[0] if len(bases) == 1 else bases
        code = re.sub(r'^_base_ = .*$', lambda _: f'_base_ = {value!r}', code, count=1, flags=re.M)
    else:
        code = f'_base_ = {FRAGMENT_BASE!r}\n' + code
    path = tmp_path / 'snippet.py'
    path.write_text(code)
    return read_config(str(path))


def test_the_docs_have_config_snippets():
    ids = [p.id for p in config_snippets()]
    assert any(i.startswith('README.md') for i in ids) and len(ids) >= 5, ids


@pytest.mark.parametrize('code', config_snippets())
def test_config_snippet_builds(code, tmp_path):
    cfg = snippet_config(code, tmp_path)
    model = build_detector(cfg.copy())
    assert model.backbone is not None


def test_readme_snippet_is_the_shipped_config():
    """README's first config snippet has the backbone and neck of configs/retinanet_ghostnet-1.0x_fpn.py."""
    from mmengine.config import Config
    line, code = next((line, code) for line, code in python_blocks(osp.join(ROOT, 'README.md'))
                      if 'model' in assigned_names(code))
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'readme.py')
        with open(path, 'w') as f:
            f.write(code)
        snippet = Config.fromfile(path)
    shipped = Config.fromfile(README_CONFIG)
    assert snippet.model.backbone.to_dict() == shipped.model.backbone.to_dict()
    for key in ('in_channels', 'start_level', 'add_extra_convs', 'num_outs'):
        assert snippet.model.neck[key] == shipped.model.neck[key], key
