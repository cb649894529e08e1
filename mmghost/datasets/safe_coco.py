"""``SafeCocoDataset``: mmdet's ``CocoDataset`` that reports bad data in one line each and keeps training.

mmdet 3.3 today: a missing or corrupt image crashes training mid-epoch with a deep traceback from the
dataloader; a non-COCO annotation file fails inside pycocotools (``KeyError``/``AssertionError``); invalid
boxes and unknown category ids are dropped silently. This dataset decides per case:

======================================  ====================================================================
problem                                 behaviour
======================================  ====================================================================
annotation file missing / not JSON /    stop before training: :class:`~mmghost.utils.DataError` naming the
not COCO (no images/annotations/...)    file and what is missing
``classes`` not in the file's           stop before training (DataError listing the file's categories)
categories
no usable image left                    stop before training (DataError with a summary of the problems)
image file missing (at load)            skip the image, one warning line naming the file (test mode: stop
                                        before training/testing; COCO metrics would count it as missed)
image unreadable (corrupt bytes, at     skip the sample (another one is drawn), one warning line naming the
load with ``verify_images=True``, or    file; in test mode stop with a DataError naming the file (metrics
when first read in training)            over a silently smaller set would mislead)
box with zero/negative width/height,    skip the annotation, one warning line (annotation id, image file)
< 1 px, or not 4 finite numbers
box entirely outside the image          skip the annotation, one warning line
box partly outside the image            clip it to the image, one warning line
unknown ``category_id`` (not among the  skip the annotation, one warning line (categories of the file that
file's categories)                      are not in ``classes`` are dropped silently, as in mmdet)
images with no objects                  mmdet's rule (``filter_cfg.filter_empty_gt`` drops them from
                                        training, kept in test mode); one summary line with the count
======================================  ====================================================================

Warnings are capped at ``max_warnings`` lines, then one summary line; every problem is kept in
``dataset.problems`` as ``(kind, message)``.

Use it in a config (this module imports mmdet's datasets, hence compiled mmcv ops, so ``import mmghost`` leaves
it out)::

    custom_imports = dict(imports=['mmghost', 'mmghost.datasets'], allow_failed_imports=False)
    train_dataloader = dict(dataset=dict(type='SafeCocoDataset', ...))
"""
import json
import logging
import math
import os.path as osp
from collections import Counter
from typing import List, Optional, Tuple

from mmengine.logging import print_log

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmghost.utils.errors import DataError

REQUIRED_IMAGE_KEYS = ('id', 'file_name', 'height', 'width')
REQUIRED_ANN_KEYS = ('id', 'image_id', 'category_id', 'bbox')


def image_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be used as an image, or None if it decodes."""
    if not osp.isfile(path):
        return 'image file not found'
    if osp.getsize(path) == 0:
        return 'image file is empty'
    import mmcv
    try:
        with open(path, 'rb') as f:
            img = mmcv.imfrombytes(f.read())
    except Exception as e:  # noqa: BLE001  any decoder failure means the same to the user
        return f'image cannot be decoded ({type(e).__name__}: {e})'
    if img is None or img.size == 0:
        return 'image cannot be decoded (corrupt or not an image)'
    return None


def check_coco_file(path: str) -> dict:
    """Load ``path`` and check it is a COCO detection annotation file; return the parsed JSON.

    Raises:
        DataError: the file is missing, not JSON, or lacks the COCO structure mmdet needs.
    """
    hint = ('expected COCO detection format: {"images": [{"id", "file_name", "height", "width"}, ...], '
            '"annotations": [{"id", "image_id", "category_id", "bbox": [x, y, w, h]}, ...], '
            '"categories": [{"id", "name"}, ...]}')
    if not osp.isfile(path):
        raise DataError(f'annotation file not found: {path}')
    try:
        with open(path, 'rb') as f:
            data = json.loads(f.read().decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as e:
        raise DataError(f'annotation file {path} is not JSON ({type(e).__name__}: {e}); {hint}') from None
    if not isinstance(data, dict):
        raise DataError(f'annotation file {path} is not COCO: top level is a {type(data).__name__}; {hint}')
    missing = [k for k in ('images', 'annotations', 'categories') if not isinstance(data.get(k), list)]
    if missing:
        raise DataError(f'annotation file {path} is not COCO: no list {missing} at the top level '
                        f'(keys found: {sorted(data)[:8]}); {hint}')
    for key, required in (('images', REQUIRED_IMAGE_KEYS), ('annotations', REQUIRED_ANN_KEYS),
                          ('categories', ('id', 'name'))):
        for i, item in enumerate(data[key]):
            absent = [k for k in required if not isinstance(item, dict) or k not in item]
            if absent:
                raise DataError(f'annotation file {path} is not COCO: {key}[{i}] has no {absent}; {hint}')
    return data


@DATASETS.register_module()
class SafeCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` with clear handling of bad data (see the module docstring).

    Args:
        verify_images (bool): Decode every image when the dataset is built, so unreadable ones are skipped
            before training (costs one read of the dataset). Otherwise a corrupt image is found (and
            skipped) when it is first loaded. Defaults to False.
        max_warnings (int): Most warning lines to print; the rest are counted in a summary line.
        *args, **kwargs: ``CocoDataset``'s.
    """

    def __init__(self, *args, verify_images: bool = False, max_warnings: int = 20, **kwargs):
        self.verify_images = verify_images
        self.max_warnings = max_warnings
        self.problems: List[Tuple[str, str]] = []
        self._warned = 0
        self._bad_images = set()
        super().__init__(*args, **kwargs)

    # ---------------------------------------------------------------------------------------------- reporting
    def _problem(self, kind: str, message: str) -> None:
        self.problems.append((kind, message))
        if self._warned < self.max_warnings:
            print_log(f'{type(self).__name__}: {message}', logger='current', level=logging.WARNING)
        self._warned += 1

    def _summary(self) -> str:
        counts = Counter(kind for kind, _ in self.problems)
        return ', '.join(f'{n} {kind}' for kind, n in counts.most_common()) or 'no problems'

    # ---------------------------------------------------------------------------------------------- loading
    def load_data_list(self) -> List[dict]:
        data = check_coco_file(self.ann_file)
        names = [c['name'] for c in data['categories']]
        unknown_classes = [c for c in self.metainfo['classes'] if c not in names]
        if unknown_classes:
            raise DataError(f'classes {unknown_classes} of the config are not categories of {self.ann_file} '
                            f'(its categories: {names[:20]}); fix metainfo.classes or the annotation file')
        self._known_cat_ids = {c['id'] for c in data['categories']}
        del data
        try:
            data_list = super().load_data_list()
        except DataError:
            raise
        except Exception as e:  # pycocotools/mmdet choke on an inconsistency the checks above did not catch
            raise DataError(f'cannot read {self.ann_file} as COCO: {type(e).__name__}: {e}') from None

        kept, bad = [], []
        for info in data_list:
            problem = image_problem(info['img_path']) if self.verify_images else (
                None if osp.isfile(info['img_path']) else 'image file not found')
            if problem:
                bad.append((info['img_path'], problem))
                continue
            kept.append(info)
        if bad and self.test_mode:  # the metric would count the skipped images as missed: refuse instead
            raise DataError(f'{len(bad)} of {len(data_list)} images of the test/val set {self.ann_file} cannot '
                            f'be used, e.g. {"; ".join(f"{p}: {why}" for p, why in bad[:3])}. Fix the files (or data_root/data_prefix) or '
                            'remove them from the annotation file.')
        for path, problem in bad:
            self._bad_images.add(path)
            self._problem('bad images', f'{path}: {problem}; image skipped')
        return kept

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """mmdet's parsing, with each dropped or clipped annotation reported (and partly-outside boxes clipped)."""
        img_info = raw_data_info['raw_img_info']
        good = []
        for ann in raw_data_info['raw_ann_info']:
            checked = self._check_annotation(ann, img_info)
            if checked is not None:
                good.append(checked)
        return super().parse_data_info(dict(raw_data_info, raw_ann_info=good))

    def _check_annotation(self, ann: dict, img_info: dict) -> Optional[dict]:
        where = f'annotation {ann.get("id")} of {img_info["file_name"]}'
        if ann.get('ignore', False):
            return ann
        bbox = ann.get('bbox')
        if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)):
            self._problem('malformed boxes', f'{where}: bbox {bbox!r} is not 4 finite numbers; skipped')
            return None
        if ann['category_id'] not in self._known_cat_ids:
            self._problem('unknown category ids',
                          f'{where}: category_id {ann["category_id"]} is not among the file\'s categories; skipped')
            return None
        x, y, w, h = bbox
        if w <= 0 or h <= 0:
            self._problem('zero/negative-size boxes', f'{where}: box [x, y, w, h] = {bbox} has zero or '
                          'negative size; skipped')
            return None
        width, height = img_info['width'], img_info['height']
        x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        if x2 <= x1 or y2 <= y1:
            self._problem('boxes outside the image', f'{where}: box [x, y, w, h] = {bbox} lies outside the '
                          f'{width}x{height} image; skipped')
            return None
        if (x1, y1, x2, y2) != (x, y, x + w, y + h):
            self._problem('boxes clipped', f'{where}: box [x, y, w, h] = {bbox} extends outside the '
                          f'{width}x{height} image; clipped to it')
            ann = dict(ann, bbox=[x1, y1, x2 - x1, y2 - y1], area=ann.get('area', w * h))
            w, h = x2 - x1, y2 - y1
        if w < 1 or h < 1:
            self._problem('zero/negative-size boxes', f'{where}: box [x, y, w, h] = {bbox} is under 1 px '
                          '(inside the image); skipped')
            return None
        if 'area' not in ann:
            ann = dict(ann, area=w * h)
        elif not ann['area'] > 0:
            ann = dict(ann, area=w * h)  # mmdet would drop a valid box for a bad 'area' field
        return ann

    def filter_data(self) -> List[dict]:
        data_list = super().filter_data()
        empty = [info for info in self.data_list if not info['instances']]
        if empty:
            drop = not self.test_mode and (self.filter_cfg or {}).get('filter_empty_gt', False)
            print_log(f'{type(self).__name__}: {len(empty)} of {len(self.data_list)} images in {self.ann_file} '
                      f'have no objects (e.g. {empty[0]["img_path"]}); '
                      + ('dropped from training (filter_cfg.filter_empty_gt=True)' if drop
                         else 'kept as background-only images'),
                      logger='current', level=logging.WARNING if drop else logging.INFO)
        if self._warned > self.max_warnings:
            print_log(f'{type(self).__name__}: {self._warned - self.max_warnings} more data problems not '
                      f'shown', logger='current', level=logging.WARNING)
        if self.problems:
            print_log(f'{type(self).__name__}: {self.ann_file}: {self._summary()}', logger='current',
                      level=logging.WARNING)
        if not data_list:
            raise DataError(f'no usable images in {self.ann_file} (data_root={self.data_root!r}, '
                            f'data_prefix={self.data_prefix!r}); problems found: {self._summary()}; '
                            f'{len(empty)} of the {len(self.data_list)} readable images have no objects')
        return data_list

    # ------------------------------------------------------------------------------------- loading a sample
    def prepare_data(self, idx: int):
        try:
            return super().prepare_data(idx)
        except Exception:
            path = self.get_data_info(idx).get('img_path', '')
            problem = image_problem(path) if path else None
            if problem is None:  # the image is fine: a real bug in the pipeline, keep its traceback
                raise
        if self.test_mode:
            raise DataError(f'{path}: {problem}; fix or remove it from the test/val annotation file') from None
        if path not in self._bad_images:
            self._bad_images.add(path)
            self._problem('bad images', f'{path}: {problem}; skipped, training goes on with another image')
        return None  # BaseDataset.__getitem__ then draws another sample
