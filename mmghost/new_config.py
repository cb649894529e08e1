"""A config for your own COCO-format data, written on top of one of mmghost's detection configs.

    python -m mmghost.configs NAME --new OUT.py --train ANN.json IMG_DIR --val ANN.json IMG_DIR
        [--image-size N] [--gpus G --batch B] [--weights FILE]

:func:`dataset_config_text` reads the base config ``NAME`` (with mmengine) and the classes from the training
file's categories, and returns the text of a commented config whose ``_base_`` is the base's absolute path (so
mmdet's own ``tools/train.py`` reads it, as ours does) and which sets, and only sets:

* ``metainfo.classes`` of every dataset and every ``num_classes`` of the detector's heads (not the class-agnostic
  RPN of a two-stage detector);
* the annotation files and image folders of the datasets and the evaluators' ``ann_file``;
* the pipelines at the image size: every size of the training and test pipelines (``Resize``, ``RandomResize``
  scales) and the anchor sizes of SSD and YOLO heads scaled by ``N`` / the base's size, SSD's anchor strides
  recomputed for its feature maps at ``N``;
* the learning rate for ``G`` GPUs x ``B`` images per step, by linear scaling from the base's
  ``auto_scale_lr.base_batch_size``, and ``auto_scale_lr`` on, from that batch;
* the backbone's ImageNet weights file, given ``--weights``;
* :class:`~mmghost.datasets.ClassChecksHook`, which checks the classes again before the first iteration.

Pascal VOC XML files: convert them to COCO first (docs/custom_dataset.md): mmdet's
``tools/dataset_converters/pascal_voc.py`` for VOC itself (its 20 classes), ``tools/voc_to_coco.py`` of this
repository for XML files with classes of your own.
"""
import math
import os.path as osp
from typing import Any, List, Optional, Sequence, Tuple

from .configs import config_path, configs_dir

# Pipeline keys that hold an image size (w, h), or a list of them: mmdet's Resize, RandomResize, RandomChoiceResize.
SIZE_KEYS = ('scale', 'scales')


# ---- reading --------------------------------------------------------------------------------------------------
def read_classes(ann_file: str) -> Tuple[str, ...]:
    """The category names of a COCO file, in the file's order (that of ``categories``).

    Raises:
        DataError: the file is missing, not JSON, not COCO, has no categories or repeats a name.
    """
    from mmghost.datasets.safe_coco import check_coco_file
    from mmghost.utils.errors import DataError
    data = check_coco_file(ann_file)
    names = [c['name'] for c in data['categories']]
    if not names:
        raise DataError(f'{ann_file} lists no categories: the classes are read from its "categories"')
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f'{ann_file} lists the categories {repeated} more than once (mmdet maps classes by name)')
    return tuple(names)


def _find(tree: Any, key: str, path: Tuple = ()) -> List[Tuple[Tuple, Any]]:
    """``(path, value)`` of every ``key`` in nested dicts and lists; a path is a tuple of keys and list indices."""
    found = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == key:
                found.append((path + (k, ), v))
            found += _find(v, key, path + (k, ))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            found += _find(v, key, path + (i, ))
    return found


def num_classes_paths(model: dict) -> List[Tuple]:
    """Paths of every ``num_classes`` in a detector's config except the class-agnostic RPN's."""
    return [path for path, _ in _find(model, 'num_classes') if path[0] != 'rpn_head']


def model_num_classes(model: dict, num_classes: int) -> dict:
    """The change to a detector's config that sets every ``num_classes`` (:func:`num_classes_paths`) to
    ``num_classes``; a list of heads on the way (Cascade R-CNN's) is written whole, as mmengine replaces lists."""
    changed = _to_plain(model)  # every value set first, so that a list written whole has all of them
    for path in num_classes_paths(changed):
        _set(changed, path, num_classes)
    override: dict = {}
    for path in num_classes_paths(changed):
        override = _merge(override, _nested(path, num_classes, changed))
    return override


def _train_dataset(cfg) -> dict:
    """The training dataset's config, inside a dataset wrapper (RepeatDataset) if there is one."""
    dataset = cfg.train_dataloader.dataset
    return dataset.dataset if 'dataset' in dataset else dataset


def base_image_size(cfg) -> int:
    """The longer side of the base config's test-time ``Resize`` scale: the size ``--image-size`` replaces."""
    for step in cfg.val_dataloader.dataset.pipeline:
        if step.get('type') == 'Resize' and step.get('scale') is not None:
            scale = step['scale']
            return int(max(scale) if isinstance(scale, (list, tuple)) else scale)
    raise ValueError(f'{cfg.filename} has no Resize in its test pipeline: give no --image-size')


# ---- changing ---------------------------------------------------------------------------------------------------
def _scaled(value, factor: float):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(round(value * factor))
    if isinstance(value, (list, tuple)):
        return type(value)(_scaled(v, factor) for v in value)
    return value


def scale_pipeline(pipeline: Sequence[dict], factor: float) -> List[dict]:
    """A copy of ``pipeline`` with every image size (``scale``, ``scales``) multiplied by ``factor``."""
    return [{k: (_scaled(v, factor) if k in SIZE_KEYS else v) for k, v in step.items()} for step in pipeline]


def ssd_strides(size: int, levels: int) -> List[int]:
    """Strides of SSD's ``levels`` feature maps at a ``size`` x ``size`` input: the backbone's maps at strides 16
    and 32, then each SSD neck level halves the previous one (3x3 conv, stride 2, padding 1: ceil(n / 2)); a
    stride is the input size over the map's size, as in mmdet's SSDLite config (320 -> 16, 32, 64, 107, 160, 320)."""
    maps = [math.ceil(size / 16), math.ceil(size / 32)]
    while len(maps) < levels:
        maps.append(math.ceil(maps[-1] / 2))
    return [int(round(size / m)) for m in maps[:levels]]


def anchor_changes(model: dict, size: int, base_size: int) -> Optional[dict]:
    """The ``anchor_generator`` of an SSD or YOLO head at ``size`` (anchor sizes in pixels scale with the input),
    or None for anchors set relative to the feature strides (RetinaNet, Faster R-CNN: nothing to change)."""
    generator = model.get('bbox_head', {}).get('anchor_generator', {})
    factor = size / base_size
    if generator.get('type') == 'SSDAnchorGenerator' and 'min_sizes' in generator:
        return dict(strides=ssd_strides(size, len(generator['strides'])),
                    min_sizes=_scaled(list(generator['min_sizes']), factor),
                    max_sizes=_scaled(list(generator['max_sizes']), factor))
    if generator.get('type') == 'YOLOAnchorGenerator':
        return dict(base_sizes=[[tuple(_scaled(s, factor)) for s in level] for level in generator['base_sizes']])
    return None


def _nested(path: Tuple, value, tree: dict) -> dict:
    """A dict that mmengine merges into ``tree`` to set ``value`` at ``path``; a list on the path is written whole
    (mmengine replaces lists)."""
    key = path[0]
    if len(path) == 1:
        return {key: value}
    child = tree[key]
    if isinstance(child, (list, tuple)):
        items = [_to_plain(item) for item in child]
        items[path[1]] = _merge(items[path[1]], _nested(path[2:], value, child[path[1]])) if len(path) > 2 \
            else value
        return {key: items}
    return {key: _nested(path[1:], value, child)}


def _set(tree, path: Tuple, value) -> None:
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def _to_plain(value):
    """mmengine ConfigDicts and tuples as plain dicts and lists/tuples, for writing."""
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_plain(v) for v in value)
    return value


def _weights_init(backbone: dict, weights: str) -> dict:
    """The backbone change that makes it start from the ImageNet weights file ``weights``."""
    if backbone.get('type') == 'PlainStem':  # Ghost-ResNet: the weights are the inner ResNet's
        return dict(backbone=_weights_init(backbone['backbone'], weights))
    init = backbone.get('init_cfg') or {}
    if init.get('type') == 'SafePretrained':
        return dict(init_cfg=dict(checkpoint=weights))
    return dict(init_cfg=dict(_delete_=True, type='SafePretrained', checkpoint=weights))


# ---- writing ----------------------------------------------------------------------------------------------------
class _Raw(str):
    """A name written as is (``classes``, ``train_pipeline``), not as a string literal."""


def _py(value, indent: int = 0) -> str:
    """``value`` as config text: dicts as ``dict(key=...)``, long lists one item a line."""
    pad = ' ' * (indent + 4)
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, dict):
        if all(isinstance(k, str) and k.isidentifier() for k in value):
            items = [f'{k}={_py(v, indent + 4)}' for k, v in value.items()]
            one_line = f'dict({", ".join(items)})'
            if len(one_line) + indent <= 100 and '\n' not in one_line:
                return one_line
            return 'dict(\n' + ',\n'.join(pad + item for item in items) + ')'
        return repr(value)
    if isinstance(value, list) and value and any(isinstance(v, dict) for v in value):
        return '[\n' + ',\n'.join(pad + _py(v, indent + 4) for v in value) + '\n' + ' ' * indent + ']'
    if isinstance(value, (list, tuple)):
        inner = ', '.join(_py(v, indent) for v in value)
        if isinstance(value, tuple):
            return f'({inner}{"," if len(value) == 1 else ""})'
        if len(inner) + indent > 96 and all(isinstance(v, (list, tuple)) for v in value):
            return '[\n' + ',\n'.join(pad + _py(v, indent + 4) for v in value) + '\n' + ' ' * indent + ']'
        return f'[{inner}]'
    return repr(value)


def _comment(text: str, width: int = 116) -> List[str]:
    """``text`` as ``# ...`` lines of at most ``width`` characters."""
    import textwrap
    return ['# ' + line for line in textwrap.wrap(text, width - 2)]


def _folder(path: str) -> str:
    return osp.join(osp.abspath(path), '')


def dataset_config_text(name: str, train: Tuple[str, str], val: Tuple[str, str], *, image_size: Optional[int] = None,
                        gpus: int = 1, batch: Optional[int] = None, weights: Optional[str] = None,
                        command: str = '') -> str:
    """Text of a config that trains mmghost's config ``name`` on your COCO files (see the module docstring).

    Args:
        name (str): one of mmghost's detection configs (as :func:`mmghost.configs.config_path` takes it).
        train, val (tuple[str, str]): ``(annotation file, image folder)`` of the training and validation data;
            images are found at ``image folder / file_name`` of the file's ``images``.
        image_size (int, optional): the longer side of the input (see :func:`base_image_size`); None keeps the
            base's.
        gpus (int): GPUs (processes) to train with.
        batch (int, optional): images per GPU per step; None keeps the base's.
        weights (str, optional): the backbone's ImageNet weights file; None keeps the base's.
        command (str): the command line, written at the top of the file.

    Raises:
        DataError: an annotation file that is not COCO or has no categories.
        ValueError: bad numbers, or a base config that is not a detector.
    """
    from mmengine.config import Config
    if gpus < 1 or (batch is not None and batch < 1) or (image_size is not None and image_size < 32):
        raise ValueError(f'--gpus and --batch must be >= 1 and --image-size >= 32 (got {gpus}, {batch}, '
                         f'{image_size})')
    base_path = config_path(name)
    base_name = osp.relpath(base_path, configs_dir()).replace(osp.sep, '/')
    cfg = Config.fromfile(base_path)
    if 'model' not in cfg or not num_classes_paths(cfg.model) or 'train_dataloader' not in cfg:
        raise ValueError(f'{base_name} is not a detection config with num_classes and a train_dataloader')
    classes = read_classes(train[0])
    read_classes(val[0])  # a broken validation file stops here, not after the first epoch

    model = model_num_classes(_to_plain(cfg.model), len(classes))
    model_notes = ['every head classifies into them']
    train_pipeline = _to_plain(_train_dataset(cfg).pipeline)
    test_pipeline = _to_plain(cfg.val_dataloader.dataset.pipeline)
    size_note = "the base config's sizes"
    if image_size is not None:
        old = base_image_size(cfg)
        factor = image_size / old
        train_pipeline, test_pipeline = scale_pipeline(train_pipeline, factor), scale_pipeline(test_pipeline, factor)
        size_note = f"the base config's sizes x {image_size}/{old} (--image-size {image_size})"
        anchors = anchor_changes(_to_plain(cfg.model), image_size, old)
        if anchors:
            model = _merge(model, dict(bbox_head=dict(anchor_generator=anchors)))
            model_notes.append(f'the anchors, in pixels, x {image_size}/{old} (SSD: strides for its maps at '
                               f'{image_size})' if 'strides' in anchors else
                               f'the anchors, in pixels, x {image_size}/{old}')
    checkpoints = [v for _, v in _find(_to_plain(cfg.model.get('backbone', {})), 'checkpoint')]
    if weights:
        model = _merge(model, dict(backbone=_weights_init(_to_plain(cfg.model.backbone), weights)))
        model_notes.append(f'the backbone starts from {weights}')
    elif checkpoints:
        model_notes.append(f'the backbone starts from {checkpoints[0]}, as in the base config (README "Weights": '
                           'where to get it; --weights FILE for another)')
    else:
        model_notes.append('the backbone starts from scratch, as in the base config (--weights FILE: from ImageNet '
                           'weights)')

    base_batch = cfg.train_dataloader.batch_size
    batch = base_batch if batch is None else batch
    base_lr = cfg.optim_wrapper.optimizer.lr
    scale_from = cfg.get('auto_scale_lr', {}).get('base_batch_size', base_batch)
    total = gpus * batch
    lr = base_lr * total / scale_from

    def dataset(ann_file, img_dir, pipeline):
        return dict(data_root='', ann_file=osp.abspath(ann_file), data_prefix=dict(img=_folder(img_dir)),
                    metainfo=dict(classes=_Raw('classes')), pipeline=_Raw(pipeline))

    train_set = dataset(*train, 'train_pipeline')
    wrapped = 'dataset' in cfg.train_dataloader.dataset
    train_loader = dict(batch_size=batch, dataset=dict(dataset=train_set) if wrapped else train_set)
    val_loader = dict(dataset=dataset(*val, 'test_pipeline'))

    lines = [
        f"# Your detector, written by: {command or 'python -m mmghost.configs ' + base_name + ' --new ...'}",
        f"# It is mmghost's config {base_name} (the _base_ below, by absolute path, so that mmdet's own",
        "# tools/train.py reads this file as mmghost's tools/train.py does) with these changes only.",
        f'_base_ = {base_path!r}',
        '',
        f'# Your classes: the categories of {osp.abspath(train[0])}, in its order.',
        f'classes = {_py(classes)}',
        '',
        *_comment('; '.join(model_notes)[0].upper() + '; '.join(model_notes)[1:] + '.'),
        f'model = {_py(model)}',
        '',
        f'# Pipelines: {size_note}.',
        f'train_pipeline = {_py(train_pipeline)}',
        f'test_pipeline = {_py(test_pipeline)}',
        '',
        '# Your data. Absolute paths: the config runs from any folder. Bad images and boxes: one warning line each',
        '# (SafeCocoDataset, docs/robust_training.md).',
        *(_comment(f"The base config's {cfg.train_dataloader.dataset.type} repeats the training images "
                   f"{cfg.train_dataloader.dataset.get('times', '')} times per epoch: an epoch is that many passes "
                   'over your images.') if wrapped else []),
        f'train_dataloader = {_py(train_loader)}',
        f'val_dataloader = {_py(val_loader)}',
        'test_dataloader = val_dataloader',
        f'val_evaluator = dict(ann_file={osp.abspath(val[0])!r})',
        'test_evaluator = val_evaluator',
        '',
        *_comment(f"Learning rate: the base config's {base_lr:g} is for {scale_from} images per step; for {gpus} "
                  f"GPU{'s' if gpus > 1 else ''} x {batch} images = {total} it is {base_lr:g} x {total} / {scale_from} "
                  f'= {lr:.6g} (linear scaling). auto_scale_lr scales it again from {total} images if you train with '
                  'another number of GPUs or images per GPU (any tool, no flag needed; '
                  '--cfg-options auto_scale_lr.enable=False turns that off).'),
        f'optim_wrapper = dict(optimizer=dict(lr={lr:.6g}))',
        f'auto_scale_lr = dict(enable=True, base_batch_size={total})',
        '',
        '# Checked before the first iteration, one line each: a head whose num_classes is not len(classes) stops the',
        '# run; classes without annotations, categories of a file that are not in classes, and training and',
        '# validation files with different categories are warned about.',
        "default_hooks = dict(class_checks=dict(type='ClassChecksHook'))",
    ]
    return '\n'.join(lines) + '\n'
