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
unknown ``category_id`` (not among the  skip the annotation, one warning line
file's categories)
categories of the file not in           their annotations are not used (as in mmdet); one warning line naming
``classes``                             them with their annotation counts
``classes`` with no annotation in a     one warning line naming them (the detector would never see one)
training file
images with no objects in the file      mmdet's rule (``filter_cfg.filter_empty_gt`` drops them from
                                        training, kept in test mode); one summary line with the count
image whose every box was invalid       dropped from training whatever ``filter_empty_gt`` says (its objects
(boxes skipped above, none left)        are real but cannot be located: training it as background would be a
                                        silent label error), kept in test mode; one summary line
======================================  ====================================================================

mmdet's own ``filter_data`` decides ``filter_empty_gt`` from the raw COCO index, so without the rule above an
image whose boxes were all dropped would be kept and trained as background. After filtering, one line gives the
real number of training images (the data list before and after filtering) when filtering removed any.

Warnings are capped at ``max_warnings`` lines, then one summary line; every problem is kept in
``dataset.problems`` as ``(kind, message)``, each once. Problems met while loading samples in dataloader worker
processes are printed there and passed to the main process through an append-only file (workers are separate
processes: their copy of the dataset is not the main one), so ``dataset.problems`` in the main process holds
them too, and :class:`DataProblemsHook` (in our configs' ``default_hooks``) prints what workers found at the end
of each training epoch. Files are read through mmengine's file backends with the dataset's ``backend_args``
(remote storage works as in mmdet), and the annotation file is read and parsed once.

Use it in a config (this module imports mmdet's datasets, hence compiled mmcv ops, so ``import mmghost`` leaves
it out)::

    custom_imports = dict(imports=['mmghost', 'mmghost.datasets'], allow_failed_imports=False)
    train_dataloader = dict(dataset=dict(type='SafeCocoDataset', ...))
    default_hooks = dict(data_problems=dict(type='DataProblemsHook'))
"""
import copy
import json
import logging
import math
import os
import tempfile
import weakref
from collections import Counter
from typing import Iterable, List, Optional, Tuple

from mmengine import fileio
from mmengine.logging import print_log

from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.registry import DATASETS
from mmghost.utils.errors import DataError

REQUIRED_IMAGE_KEYS = ('id', 'file_name', 'height', 'width')
REQUIRED_ANN_KEYS = ('id', 'image_id', 'category_id', 'bbox')
COCO_HINT = ('expected COCO detection format: {"images": [{"id", "file_name", "height", "width"}, ...], '
             '"annotations": [{"id", "image_id", "category_id", "bbox": [x, y, w, h]}, ...], '
             '"categories": [{"id", "name"}, ...]}')


def summarize(problems: Iterable[Tuple[str, str]]) -> str:
    """``'2 bad images, 1 boxes clipped'`` for ``[(kind, message), ...]``."""
    counts = Counter(kind for kind, _ in problems)
    return ', '.join(f'{n} {kind}' for kind, n in counts.most_common()) or 'no problems'


def _is_file(path: str, backend_args: Optional[dict]) -> bool:
    try:
        return fileio.isfile(path, backend_args=backend_args)
    except NotImplementedError:  # e.g. HTTP: no cheap check; a missing file is found when it is loaded
        return True


def image_problem(path: str, backend_args: Optional[dict] = None) -> Optional[str]:
    """Why ``path`` cannot be used as an image, or None if it decodes.

    Read through mmengine's file backends, as ``LoadImageFromFile`` reads it (``backend_args``: the same).
    """
    try:
        data = fileio.get(path, backend_args=backend_args)
    except FileNotFoundError:
        return 'image file not found'
    except Exception as e:  # noqa: BLE001  whatever the storage says, the image cannot be used
        return f'image file cannot be read ({type(e).__name__}: {e})'
    if not data:
        return 'image file is empty'
    import mmcv
    try:
        img = mmcv.imfrombytes(data)
    except Exception as e:  # noqa: BLE001  any decoder failure means the same to the user
        return f'image cannot be decoded ({type(e).__name__}: {e})'
    if img is None or img.size == 0:
        return 'image cannot be decoded (corrupt or not an image)'
    return None


def check_coco_dict(data, name: str) -> dict:
    """Check that ``data`` (parsed JSON of the file ``name``) has the COCO structure mmdet needs; return it.

    Raises:
        DataError: naming the file and what is missing.
    """
    if not isinstance(data, dict):
        raise DataError(f'annotation file {name} is not COCO: top level is a {type(data).__name__}; {COCO_HINT}')
    missing = [k for k in ('images', 'annotations', 'categories') if not isinstance(data.get(k), list)]
    if missing:
        raise DataError(f'annotation file {name} is not COCO: no list {missing} at the top level '
                        f'(keys found: {sorted(data)[:8]}); {COCO_HINT}')
    for key, required in (('images', REQUIRED_IMAGE_KEYS), ('annotations', REQUIRED_ANN_KEYS),
                          ('categories', ('id', 'name'))):
        for i, item in enumerate(data[key]):
            absent = [k for k in required if not isinstance(item, dict) or k not in item]
            if absent:
                raise DataError(f'annotation file {name} is not COCO: {key}[{i}] has no {absent}; {COCO_HINT}')
    return data


def check_coco_file(path: str, backend_args: Optional[dict] = None) -> dict:
    """Read ``path`` (through mmengine's file backends), parse it once and check it is a COCO detection file.

    Returns:
        dict: the parsed JSON.

    Raises:
        DataError: the file is missing, unreadable, not JSON, or lacks the COCO structure mmdet needs.
    """
    try:
        raw = fileio.get(path, backend_args=backend_args)
    except FileNotFoundError:
        raise DataError(f'annotation file not found: {path}') from None
    except OSError as e:
        raise DataError(f'cannot read annotation file {path}: {type(e).__name__}: {e}') from None
    try:
        data = json.loads(raw.decode('utf-8') if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise DataError(f'annotation file {path} is not JSON ({type(e).__name__}: {e}); {COCO_HINT}') from None
    return check_coco_dict(data, path)


class ParsedCOCO(COCO):
    """mmdet's COCO API over an annotation dict that is already parsed (pycocotools would read the file again)."""

    def __init__(self, dataset: dict):
        super().__init__(annotation_file=None)
        self.dataset = dataset
        self.createIndex()
        self.img_ann_map = self.imgToAnns  # mmdet's aliases, set by its __init__ on the empty index
        self.cat_img_map = self.catToImgs


def _remove_if_owner(path: str, owner: int) -> None:
    if os.getpid() == owner:
        try:
            os.unlink(path)
        except OSError:
            pass


class WorkerReports:
    """Problems met in dataloader worker processes, passed to the main process through an append-only file.

    A worker is another process with its own copy of the dataset, so what it records never reaches the main
    process's dataset. Workers append one JSON line ``[kind, message, key]`` per problem with a single
    ``write`` on a file opened with ``O_APPEND`` (POSIX keeps such small appends whole); the process that made
    the dataset reads the lines it has not seen yet. The file lives in the temp folder and is removed with the
    dataset (or at exit) by that process. Works with fork and spawn workers, blocks nobody, and needs no thread.
    """

    def __init__(self):
        fd, self.path = tempfile.mkstemp(prefix='mmghost_data_problems_', suffix='.jsonl')
        os.close(fd)
        self.owner = os.getpid()
        self._offset = 0
        weakref.finalize(self, _remove_if_owner, self.path, self.owner)

    def in_owner(self) -> bool:
        return os.getpid() == self.owner

    def append(self, kind: str, message: str, key: str) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError:  # the dataset is gone in the main process
            return
        try:
            os.write(fd, (json.dumps([kind, message, key]) + '\n').encode('utf-8'))
        finally:
            os.close(fd)

    def _read(self, offset: int) -> Tuple[int, List[Tuple[str, str, str]]]:
        try:
            with open(self.path, 'rb') as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            return offset, []
        end = data.rfind(b'\n') + 1  # a line being written right now is read next time
        lines = data[:end].decode('utf-8').splitlines()
        return offset + end, [tuple(json.loads(line)) for line in lines if line]

    def keys(self) -> set:
        """Keys of every problem any worker has reported so far."""
        return {key for _, _, key in self._read(0)[1]}

    def read_new(self) -> List[Tuple[str, str, str]]:
        """The records appended since the last call (owner process only)."""
        self._offset, records = self._read(self._offset)
        return records


@DATASETS.register_module()
class SafeCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` with clear handling of bad data (see the module docstring).

    Args:
        verify_images (bool): Decode every image when the dataset is built, so unreadable ones are skipped
            before training (costs one read of the dataset). Otherwise a corrupt image is found (and
            skipped) when it is first loaded. Defaults to False.
        max_warnings (int): Most warning lines to print (per process); the rest are counted in a summary line.
        *args, **kwargs: ``CocoDataset``'s (``backend_args`` is used for every file this class reads).
    """

    def __init__(self, *args, verify_images: bool = False, max_warnings: int = 20, **kwargs):
        self.verify_images = verify_images
        self.max_warnings = max_warnings
        self._problems: List[Tuple[str, str]] = []
        self._problem_keys = set()
        self._warned = 0
        self._worker_reports = WorkerReports()
        self._every_box_invalid = set()  # img_ids whose annotations were all dropped as invalid (none kept)
        super().__init__(*args, **kwargs)

    # ---------------------------------------------------------------------------------------------- reporting
    @property
    def problems(self) -> List[Tuple[str, str]]:
        """Every problem found so far, ``(kind, message)``, each once, including those dataloader workers met."""
        self.collect_worker_problems()
        return list(self._problems)

    def collect_worker_problems(self) -> List[Tuple[str, str]]:
        """Problems dataloader workers reported since the last call; they join :attr:`problems`."""
        if not self._worker_reports.in_owner():
            return []
        new = []
        for kind, message, key in self._worker_reports.read_new():
            if key not in self._problem_keys:
                self._problem_keys.add(key)
                self._problems.append((kind, message))
                new.append((kind, message))
        return new

    def _problem(self, kind: str, message: str, key: Optional[str] = None) -> None:
        """Record and (up to ``max_warnings``) print a problem once; ``key`` identifies it (default: message)."""
        key = message if key is None else key
        if key in self._problem_keys:
            return
        self._problem_keys.add(key)
        if self._worker_reports.in_owner():
            self._problems.append((kind, message))
        elif key in self._worker_reports.keys():  # another worker, or this one in an earlier epoch, said it
            return
        else:
            self._worker_reports.append(kind, message, key)
        if self._warned < self.max_warnings:
            print_log(f'{type(self).__name__}: {message}', logger='current', level=logging.WARNING)
        self._warned += 1

    # ---------------------------------------------------------------------------------------------- loading
    def load_data_list(self) -> List[dict]:
        """mmdet 3.3's ``CocoDataset.load_data_list``, on the annotation file read and parsed once (and checked),
        with unusable images left out."""
        data = check_coco_file(self.ann_file, self.backend_args)
        names = [c['name'] for c in data['categories']]
        unknown_classes = [c for c in self.metainfo['classes'] if c not in names]
        if unknown_classes:
            raise DataError(f'classes {unknown_classes} of the config are not categories of {self.ann_file} '
                            f'(its categories: {names[:20]}); fix metainfo.classes or the annotation file')
        self._known_cat_ids = {c['id'] for c in data['categories']}
        self.file_classes = tuple(names)
        self._report_class_coverage(data)
        try:
            data_list = self._parse_coco(ParsedCOCO(data))
        except DataError:
            raise
        except Exception as e:  # pycocotools/mmdet choke on an inconsistency the checks above did not catch
            raise DataError(f'cannot read {self.ann_file} as COCO: {type(e).__name__}: {e}') from None

        kept, bad = [], []
        for info in data_list:
            path = info['img_path']
            if self.verify_images:
                problem = image_problem(path, self.backend_args)
            else:
                problem = None if _is_file(path, self.backend_args) else 'image file not found'
            if problem:
                bad.append((path, problem))
                continue
            kept.append(info)
        if bad and self.test_mode:  # the metric would count the skipped images as missed: refuse instead
            raise DataError(f'{len(bad)} of {len(data_list)} images of the test/val set {self.ann_file} cannot '
                            f'be used, e.g. {"; ".join(f"{p}: {why}" for p, why in bad[:3])}. Fix the files (or '
                            'data_root/data_prefix) or remove them from the annotation file.')
        for path, problem in bad:
            self._problem('bad images', f'{path}: {problem}; image skipped', key=path)
        return kept

    def _report_class_coverage(self, data: dict) -> None:
        """One warning line for the file's categories outside ``classes`` (with their annotation counts) and, in
        training, one for the ``classes`` that have no annotation in the file."""
        counts = Counter(ann['category_id'] for ann in data['annotations'])
        per_name = Counter()
        for category in data['categories']:
            per_name[category['name']] += counts.get(category['id'], 0)
        classes = self.metainfo['classes']
        unused = [name for name in per_name if name not in classes]
        if unused:
            listed = ', '.join(f'{name!r} ({per_name[name]} annotations)' for name in unused[:10])
            more = f' and {len(unused) - 10} more' if len(unused) > 10 else ''
            print_log(f'{type(self).__name__}: {len(unused)} categories of {self.ann_file} are not in classes, '
                      f'their annotations are not used: {listed}{more}', logger='current', level=logging.WARNING)
        empty = [name for name in classes if per_name[name] == 0]
        if empty and not self.test_mode:
            print_log(f'{type(self).__name__}: classes with no annotation in {self.ann_file}: '
                      f'{", ".join(map(repr, empty))}; the detector cannot learn them from this file',
                      logger='current', level=logging.WARNING)

    def _parse_coco(self, coco: COCO) -> List[dict]:
        """The body of mmdet 3.3's ``CocoDataset.load_data_list`` after it has built ``self.coco``."""
        self.coco = coco
        try:
            self.cat_ids = coco.get_cat_ids(cat_names=self.metainfo['classes'])
            self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
            self.cat_img_map = copy.deepcopy(coco.cat_img_map)
            data_list, total_ann_ids = [], []
            for img_id in coco.get_img_ids():
                raw_img_info = coco.load_imgs([img_id])[0]
                raw_img_info['img_id'] = img_id
                ann_ids = coco.get_ann_ids(img_ids=[img_id])
                total_ann_ids.extend(ann_ids)
                data_list.append(self.parse_data_info(
                    dict(raw_ann_info=coco.load_anns(ann_ids), raw_img_info=raw_img_info)))
            if self.ANN_ID_UNIQUE and len(set(total_ann_ids)) != len(total_ann_ids):
                raise DataError(f'annotation ids in {self.ann_file} are not unique')
            return data_list
        finally:
            del self.coco

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """mmdet's parsing, with each dropped or clipped annotation reported (and partly-outside boxes clipped)."""
        img_info = raw_data_info['raw_img_info']
        good = []
        for ann in raw_data_info['raw_ann_info']:
            checked = self._check_annotation(ann, img_info)
            if checked is not None:
                good.append(checked)
        info = super().parse_data_info(dict(raw_data_info, raw_ann_info=good))
        if len(good) < len(raw_data_info['raw_ann_info']) and not info['instances']:
            self._every_box_invalid.add(img_info['img_id'])
        return info

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
        """mmdet's filtering (``filter_empty_gt`` from the raw COCO index, ``min_size``), then, in training, the
        images whose every box was invalid are dropped too; the log gives the real counts."""
        before = self.data_list
        data_list = super().filter_data()
        invalid = [info for info in before if info['img_id'] in self._every_box_invalid]
        if invalid and not self.test_mode:
            data_list = [info for info in data_list if info['img_id'] not in self._every_box_invalid]
            print_log(f'{type(self).__name__}: {len(invalid)} of {len(before)} images in {self.ann_file} had boxes '
                      f'but every one was invalid (e.g. {invalid[0]["img_path"]}); dropped from training (as '
                      'background-only images they would teach the detector that their objects are background)',
                      logger='current', level=logging.WARNING)
        empty = [info for info in before if not info['instances'] and info['img_id'] not in self._every_box_invalid]
        if empty:
            drop = not self.test_mode and (self.filter_cfg or {}).get('filter_empty_gt', False)
            print_log(f'{type(self).__name__}: {len(empty)} of {len(before)} images in {self.ann_file} '
                      f'have no objects (e.g. {empty[0]["img_path"]}); '
                      + ('dropped from training (filter_cfg.filter_empty_gt=True)' if drop
                         else 'kept as background-only images'),
                      logger='current', level=logging.WARNING if drop else logging.INFO)
        if len(data_list) != len(before):
            print_log(f'{type(self).__name__}: {len(data_list)} of {len(before)} images of {self.ann_file} are '
                      f'used after filtering ({len(before) - len(data_list)} dropped)', logger='current',
                      level=logging.WARNING)
        if self._warned > self.max_warnings:
            print_log(f'{type(self).__name__}: {self._warned - self.max_warnings} more data problems not '
                      f'shown', logger='current', level=logging.WARNING)
        if self._problems:
            print_log(f'{type(self).__name__}: {self.ann_file}: {summarize(self._problems)}', logger='current',
                      level=logging.WARNING)
        if not data_list:
            raise DataError(f'no usable images in {self.ann_file} (data_root={self.data_root!r}, '
                            f'data_prefix={self.data_prefix!r}); problems found: {summarize(self._problems)}; '
                            f'{len(empty) + len(invalid)} of the {len(before)} readable images have no objects')
        return data_list

    # ------------------------------------------------------------------------------------- loading a sample
    def prepare_data(self, idx: int):
        try:
            return super().prepare_data(idx)
        except Exception:
            path = self.get_data_info(idx).get('img_path', '')
            problem = image_problem(path, self.backend_args) if path else None
            if problem is None:  # the image is fine: a real bug in the pipeline, keep its traceback
                raise
        if self.test_mode:
            raise DataError(f'{path}: {problem}; fix or remove it from the test/val annotation file') from None
        self._problem('bad images', f'{path}: {problem}; skipped, training goes on with another image', key=path)
        return None  # BaseDataset.__getitem__ then draws another sample
