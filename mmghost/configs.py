"""Where mmghost's configs are, so that configs of your own can build on them.

A wheel or sdist of mmghost carries the repository's ``configs/`` and ``model-index.yml`` as ``mmghost/.mim/``,
OpenMMLab's layout (mmdet 3.3 ships ``mmdet/.mim/configs``). From a checkout (an editable install, or the repository
on ``sys.path``) the repository's own ``configs/`` are used, so edits show at once and a copy left in
``mmghost/.mim`` by an earlier build never shadows them.

    python -m mmghost.configs NAME                 # print the path of a config, e.g. retinanet_ghostnet_fpn.py
    python -m mmghost.configs --list               # every config, by name
    python -m mmghost.configs NAME --new my.py     # write a config of your own on top of NAME
    python -m mmghost.configs NAME --new my.py --train ANN.json IMG_DIR --val ANN.json IMG_DIR \
        [--image-size N] [--gpus G --batch B] [--weights FILE]   # ... that trains on your COCO files

NAME is a path under ``configs/`` (``demo/retinanet_ghostnet_shapes.py``); the ``.py`` may be left out, and so may
the folder where the file name is unique (``retinanet_ghostnet_shapes``).

How a config of yours names one of ours as ``_base_``:

* any tool, mmdet's own ``tools/train.py`` included: the absolute path that ``python -m mmghost.configs NAME``
  prints. mmengine 0.10 resolves ``pkg::name`` only for the packages in its own table (``MODULE2PACKAGE``), so
  stock tools cannot read ``mmghost::``.
* mmghost's tools (everything that loads a config through :func:`mmghost.engine.load_config`): also
  ``_base_ = 'mmghost::NAME'``, which :func:`resolve_base` turns into that path before mmengine reads the file.

This module uses the standard library only (it does not import torch or mmengine itself); a config for your data
(``--train``) is written by :mod:`mmghost.new_config`, which reads the base config with mmengine. See
docs/configs.md and docs/custom_dataset.md.
"""
import argparse
import ast
import difflib
import os
import os.path as osp
import re
import sys
from typing import Dict, List, Optional

SCHEME = 'mmghost::'

_PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


def data_root() -> str:
    """The folder that holds ``configs/`` and ``model-index.yml``.

    The repository root when this package is imported from a checkout (it has ``setup.py`` and
    ``model-index.yml`` beside the package), else the installed package's ``.mim`` folder.
    """
    checkout = osp.dirname(_PACKAGE_DIR)
    if all(osp.exists(osp.join(checkout, name)) for name in ('setup.py', 'model-index.yml', 'configs')):
        return checkout
    mim = osp.join(_PACKAGE_DIR, '.mim')
    if osp.isdir(osp.join(mim, 'configs')):
        return mim
    raise FileNotFoundError(
        f'mmghost has no configs here: neither a checkout ({checkout}) nor {mim}/configs. Reinstall it from a wheel '
        'or sdist built by its setup.py (`pip wheel . --no-deps`), or install a clone with `pip install -e .`')


def configs_dir() -> str:
    """The folder of mmghost's configs (see :func:`data_root`)."""
    return osp.join(data_root(), 'configs')


def model_index_path() -> str:
    """mmghost's ``model-index.yml`` (OpenMMLab's model index; it imports ``configs/metafile.yml``)."""
    return osp.join(data_root(), 'model-index.yml')


def list_configs() -> List[str]:
    """Every config, as the ``/``-separated path under ``configs/`` that :func:`config_path` takes."""
    root = configs_dir()
    names = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d != '__pycache__')
        rel = osp.relpath(folder, root)
        names += [f if rel == '.' else f'{rel.replace(os.sep, "/")}/{f}' for f in files if f.endswith('.py')]
    return sorted(names)


def config_path(name: str) -> str:
    """The absolute path of the config ``name``.

    Args:
        name (str): a path under ``configs/`` such as ``retinanet_ghostnet_fpn.py`` or
            ``demo/retinanet_ghostnet_shapes.py``, optionally with the ``mmghost::`` prefix. ``.py`` may be left
            out; so may the folder, where the file name is unique among all configs.

    Raises:
        FileNotFoundError: no config of that name (the message suggests close names).
        ValueError: a name that leaves ``configs/``, or a bare file name that is in several folders.
    """
    key = name[len(SCHEME):] if name.startswith(SCHEME) else name
    key = key.replace('\\', '/').strip('/')
    if not key.endswith('.py'):
        key += '.py'
    root = configs_dir()
    path = osp.normpath(osp.join(root, *key.split('/')))
    if not path.startswith(osp.join(root, '')):
        raise ValueError(f'{name!r} is not a config of mmghost: it points outside {root}')
    if osp.isfile(path):
        return path
    names = list_configs()
    if '/' not in key:
        matches = [n for n in names if n.rsplit('/', 1)[-1] == key]
        if len(matches) == 1:
            return osp.join(root, *matches[0].split('/'))
        if matches:
            raise ValueError(f'{name!r} is in several folders of mmghost\'s configs; name one of: '
                             + ', '.join(matches))
    close = difflib.get_close_matches(key, names, n=5, cutoff=0.5)
    hint = f'; did you mean: {", ".join(close)}?' if close else ''
    raise FileNotFoundError(f'mmghost has no config {name!r} in {root}{hint} '
                            '(`python -m mmghost.configs --list` lists them)')


def starter_config_text(name: str) -> str:
    """Text of a config of your own whose ``_base_`` is mmghost's config ``name``, by its absolute path, so that
    any OpenMMLab tool reads it. It sets no ``custom_imports``: the base's (``mmghost`` and whatever else it needs,
    e.g. ``mmghost.datasets``) is inherited; a ``custom_imports`` of your own replaces that list, so keep its
    modules in it."""
    path = config_path(name)
    rel = osp.relpath(path, configs_dir()).replace(os.sep, '/')
    return (f"# Built on mmghost's config {rel}. Every OpenMMLab tool (mmdet's tools/train.py too)\n"
            f"# reads the absolute path below; mmghost's tools also read _base_ = '{SCHEME}{rel}'.\n"
            f'_base_ = {path!r}\n\n'
            '# Your changes, e.g.\n'
            '# train_dataloader = dict(batch_size=4)\n')


# ---- `_base_ = 'mmghost::NAME'` for mmghost's own tools -------------------------------------------------------

# mmengine's Config substitutes these in a config's text before it reads `_base_`
# (Config._substitute_predefined_vars); a rewritten copy gets the original file's values.
_PREDEFINED_VARS = ('fileDirname', 'fileBasename', 'fileBasenameNoExtension', 'fileExtname')


def _substitute_predefined_vars(text: str, filename: str) -> str:
    base = osp.basename(filename)
    values = dict(fileDirname=osp.dirname(filename), fileBasename=base,
                  fileBasenameNoExtension=osp.splitext(base)[0], fileExtname=osp.splitext(filename)[1])
    for key in _PREDEFINED_VARS:
        text = re.sub(r'\{\{\s*' + key + r'\s*\}\}', values[key].replace('\\', '/'), text)
    return text


def _base_assignment(tree: ast.Module) -> Optional[ast.Assign]:
    """The first top-level ``_base_ = ...``: the one mmengine's Config._get_base_files reads."""
    return next((node for node in tree.body if isinstance(node, ast.Assign)
                 and isinstance(node.targets[0], ast.Name) and node.targets[0].id == '_base_'), None)


def resolve_base(filename: str, out_dir: str) -> str:
    """The config file to hand to mmengine's ``Config.fromfile`` in place of ``filename``, with every
    ``_base_`` entry ``mmghost::NAME`` along its inheritance chain turned into the path of that config.

    Files whose chain names no ``mmghost::`` are returned unchanged (the usual case: nothing is copied). Otherwise
    each file of the chain that names one, directly or through a base of its own, is copied into ``out_dir`` (under
    its own name: mmengine's Runner names the work directory's config dump after it) with its ``_base_`` entries
    made absolute and mmengine's predefined variables (``{{fileDirname}}`` ...) set to the original file's values.
    Other ``pkg::`` entries (``mmdet::``) are left to mmengine.

    Args:
        filename (str): a config file (``.py``; other formats are returned unchanged).
        out_dir (str): an existing folder for the rewritten copies; it must outlive the ``Config.fromfile`` call.

    Raises:
        FileNotFoundError, ValueError: from :func:`config_path`, for a ``mmghost::`` name that is not a config.
    """
    path = osp.abspath(filename)
    resolved = _resolve(path, out_dir, {})
    return filename if resolved == path else resolved


def _resolve(path: str, out_dir: str, done: Dict[str, str]) -> str:
    if path in done or not path.endswith('.py') or not osp.isfile(path):
        return done.get(path, path)  # a missing file: mmengine says so, with its own message
    done[path] = path  # a cycle stops here; mmengine reports it
    with open(path, encoding='utf-8') as f:
        original = f.read()
    text = _substitute_predefined_vars(original, path)
    try:
        node = _base_assignment(ast.parse(text))
        entries = ast.literal_eval(node.value) if node is not None else []
    except (SyntaxError, ValueError):  # not a plain literal: leave the file to mmengine
        return path
    if isinstance(entries, str):
        resolved = _resolve_entries([entries], path, out_dir, done)
        new_value = resolved[0] if resolved is not None else None
    elif isinstance(entries, (list, tuple)) and all(isinstance(e, str) for e in entries):
        new_value = _resolve_entries(list(entries), path, out_dir, done)
    else:
        return path
    if new_value is None:
        return path
    # Splice the new value over the old one's source span (ast offsets are UTF-8 byte columns).
    lines = text.encode('utf-8').splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    data = text.encode('utf-8')
    begin = starts[node.value.lineno - 1] + node.value.col_offset
    end = starts[node.value.end_lineno - 1] + node.value.end_col_offset
    data = data[:begin] + repr(new_value).encode('utf-8') + data[end:]
    folder = osp.join(out_dir, str(len(os.listdir(out_dir))))
    os.makedirs(folder)
    copy = osp.join(folder, osp.basename(path))
    with open(copy, 'wb') as f:
        f.write(data)
    done[path] = copy
    return copy


def _resolve_entries(entries: List[str], path: str, out_dir: str, done: Dict[str, str]) -> Optional[List[str]]:
    """The entries with ``mmghost::`` names and local files resolved to absolute paths, or None if the chain
    below names no ``mmghost::`` (the file then needs no copy)."""
    resolved, changed = [], False
    for entry in entries:
        if entry.startswith(SCHEME):
            resolved.append(config_path(entry))
            changed = True
        elif '::' in entry:
            resolved.append(entry)
        else:
            local = osp.join(osp.dirname(path), entry)  # as mmengine's Config._get_cfg_path
            new = _resolve(osp.abspath(local), out_dir, done)
            changed |= new != osp.abspath(local)
            resolved.append(new)
    return resolved if changed else None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m mmghost.configs',
        description="Print the path of one of mmghost's configs, for `_base_` in a config of your own; or write "
        'such a config (--new), for your own COCO data (--train, --val).',
        epilog='Pascal VOC XML: convert it to COCO first. VOC itself (20 classes): mmdet\'s '
        'tools/dataset_converters/pascal_voc.py; XML files with classes of your own: tools/voc_to_coco.py of '
        'mmghost. Walkthrough: docs/custom_dataset.md.')
    parser.add_argument('name', nargs='?', help='config name, e.g. retinanet_ghostnet_fpn.py or '
                        'demo/retinanet_ghostnet_shapes.py')
    parser.add_argument('--list', action='store_true', help='list the configs')
    parser.add_argument('--new', metavar='OUT.py', help="write a config of your own whose _base_ is NAME's path")
    parser.add_argument('--force', action='store_true', help='with --new: overwrite OUT.py if it exists')
    data = parser.add_argument_group('your data (with --new)')
    data.add_argument('--train', nargs=2, metavar=('ANN.json', 'IMG_DIR'),
                      help='COCO annotation file and image folder to train on; the classes are its categories')
    data.add_argument('--val', nargs=2, metavar=('ANN.json', 'IMG_DIR'),
                      help='COCO annotation file and image folder to validate and test on')
    data.add_argument('--image-size', type=int, metavar='N', help="longer side of the input; every size of the "
                      "pipelines (and SSD/YOLO anchors) is scaled by N / the base's (1333 for the COCO configs)")
    data.add_argument('--gpus', type=int, default=1, metavar='G', help='GPUs to train with (default 1)')
    data.add_argument('--batch', type=int, metavar='B', help="images per GPU per step (default: the base's); the "
                      'learning rate is set for G x B images')
    data.add_argument('--weights', metavar='FILE', help="the backbone's ImageNet weights file (default: the "
                      "base's, see docs/custom_dataset.md)")
    args = parser.parse_args(argv)
    if args.list:
        print('\n'.join(list_configs()))
        return 0
    if args.name is None:
        parser.error('give a config NAME, or --list')
    if (args.train is None) != (args.val is None):
        parser.error('give both --train and --val')
    if args.train and not args.new:
        parser.error('--train and --val need --new OUT.py')
    data_options = [flag for flag, value in (('--image-size', args.image_size), ('--batch', args.batch),
                                             ('--weights', args.weights)) if value is not None]
    if data_options and not args.train:
        parser.error(f'{", ".join(data_options)} need --train and --val')
    try:
        if args.new:
            if osp.exists(args.new) and not args.force:
                parser.error(f'{args.new} exists (--force overwrites it)')
            if args.train:
                from mmghost.new_config import dataset_config_text
                command = 'python -m mmghost.configs ' + ' '.join(sys.argv[1:] if argv is None else argv)
                text = dataset_config_text(args.name, tuple(args.train), tuple(args.val),
                                           image_size=args.image_size, gpus=args.gpus, batch=args.batch,
                                           weights=args.weights, command=command)
            else:
                text = starter_config_text(args.name)
            with open(args.new, 'w', encoding='utf-8') as f:
                f.write(text)
            print(osp.abspath(args.new))
        else:
            print(config_path(args.name))
    except (FileNotFoundError, ValueError) as e:  # DataError is a ValueError
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
