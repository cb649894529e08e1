"""``ClassChecksHook``: the detector's classes against the data's, checked before the first iteration.

mmdet trains a head of 80 classes on a dataset of 1 without a word, and evaluates it too (its ``NumClassCheckHook``
is off unless a config names it, and it stops with an assertion that does not say which setting to change). This
hook stops that before training (and before testing) in one line naming the setting, and warns, in one line, when
the training and validation files do not list the same categories. The checks that need one annotation file only (categories of the file that are not
in ``classes``, ``classes`` with no annotation) are :class:`~mmghost.datasets.SafeCocoDataset`'s, made when the
file is read. Opt-in, as every behaviour of mmghost; our configs and ``python -m mmghost.configs NAME --new`` turn it
on::

    default_hooks = dict(class_checks=dict(type='ClassChecksHook'))
"""
import logging
from typing import List, Tuple

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmghost.registry import HOOKS
from mmghost.utils.errors import DataError
from .problems_hook import safe_coco_datasets


def head_num_classes(model) -> List[Tuple[str, int]]:
    """``(name, num_classes)`` of every module of a detector that classifies into the dataset's classes.

    That is every submodule with an integer ``num_classes`` (mmdet's dense heads, RoI bbox and mask heads), except
    those mmdet's own ``NumClassCheckHook`` leaves out too: the class-agnostic RPN of a two-stage detector
    (``rpn_head``, 1 class whatever the dataset), a VGG backbone and HTC's semantic head (their ``num_classes`` is
    not the dataset's).
    """
    from mmcv.cnn import VGG
    from mmdet.models.roi_heads.mask_heads import FusedSemanticHead
    model = model.module if is_model_wrapper(model) else model
    found = []
    for name, module in model.named_modules():
        value = getattr(module, 'num_classes', None)
        if (name and isinstance(value, int) and not isinstance(value, bool) and name.split('.')[0] != 'rpn_head'
                and not isinstance(module, (VGG, FusedSemanticHead))):
            found.append((name, value))
    # A head and its own submodules may both carry num_classes: keep the outermost of each.
    return [(n, v) for n, v in found if not any(n.startswith(other + '.') for other, _ in found)]


def check_num_classes(model, classes, where: str) -> None:
    """Raise DataError if a head of ``model`` has another number of classes than ``classes``."""
    wrong = [(name, n) for name, n in head_num_classes(model) if n != len(classes)]
    if wrong:
        heads = ', '.join(f'{name}.num_classes={n}' for name, n in wrong)
        shown = ', '.join(map(repr, classes[:5])) + (', ...' if len(classes) > 5 else '')
        raise DataError(f'the model has {heads} but the {where} data has {len(classes)} '
                        f'{"class" if len(classes) == 1 else "classes"} ({shown}): set '
                        f'model.{wrong[0][0]}.num_classes={len(classes)} (python -m mmghost.configs NAME --new ... '
                        'writes a config with every num_classes set from your annotation file)')


def _classes(dataloader) -> tuple:
    return tuple(dataloader.dataset.metainfo.get('classes') or ())


@HOOKS.register_module()
class ClassChecksHook(Hook):
    """Before training: every head's ``num_classes`` equals ``len(classes)`` of the training data (else a
    DataError: one ``error:`` line from our tools), and the training and validation annotation files list the same
    categories (else one warning line). Before testing: the heads against the test data's classes."""
    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        train = runner.train_dataloader
        check_num_classes(runner.model, _classes(train), 'training')
        val_loop = getattr(runner, '_val_loop', None)
        if val_loop is None or isinstance(val_loop, dict) or not hasattr(val_loop, 'dataloader'):
            return
        train_files = {d.ann_file: d.file_classes for d in safe_coco_datasets(train.dataset)}
        val_files = {d.ann_file: d.file_classes for d in safe_coco_datasets(val_loop.dataloader.dataset)}
        if len(train_files) == 1 and len(val_files) == 1:
            (train_file, train_cats), = train_files.items()
            (val_file, val_cats), = val_files.items()
            only_train = [c for c in train_cats if c not in val_cats]
            only_val = [c for c in val_cats if c not in train_cats]
            if only_train or only_val:  # mmdet maps categories by name: their order does not matter
                print_log(f'ClassChecksHook: the training file {train_file} and the validation file {val_file} list '
                          f'different categories (only in training: {only_train}; only in validation: {only_val})',
                          logger='current', level=logging.WARNING)

    def before_test(self, runner) -> None:
        check_num_classes(runner.model, _classes(runner.test_dataloader), 'test')
