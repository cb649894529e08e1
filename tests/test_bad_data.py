"""Bad data gets a clear message, not a deep traceback, and does not lose the run (SafeCocoDataset)."""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest

from fixtures.tiny_config import tiny_config_text

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLASSES = ('circle', 'square', 'triangle')
PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs'),
]


def write_image(path, size=64, seed=0):
    import cv2
    os.makedirs(osp.dirname(path), exist_ok=True)
    img = np.random.RandomState(seed).randint(0, 255, (size, size, 3), dtype=np.uint8)
    cv2.imwrite(path, img)


def make_coco(root, n_images=4, size=64, anns=None, categories=None, write=True):
    """n_images images of size x size, one valid box each (unless ``anns`` replaces them). Returns ann path."""
    images = [dict(id=i + 1, file_name=f'img/{i}.png', height=size, width=size) for i in range(n_images)]
    if write:
        for i in range(n_images):
            write_image(osp.join(root, 'img', f'{i}.png'), size, seed=i)
    if anns is None:
        anns = [dict(id=i + 1, image_id=i + 1, category_id=1 + i % 3, bbox=[8, 8, 20, 24], area=480, iscrowd=0)
                for i in range(n_images)]
    cats = categories or [dict(id=i + 1, name=c) for i, c in enumerate(CLASSES)]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    path = osp.join(root, 'annotations', 'train.json')
    with open(path, 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=cats), f)
    return path


def build(root, test_mode=False, filter_empty_gt=True, **kwargs):
    import mmghost.datasets  # noqa: F401  registers SafeCocoDataset
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)  # pipeline names resolve in mmdet's scope
    return DATASETS.build(dict(
        type='SafeCocoDataset', data_root=str(root), ann_file='annotations/train.json',
        data_prefix=dict(img=''), metainfo=dict(classes=CLASSES), test_mode=test_mode,
        filter_cfg=dict(filter_empty_gt=filter_empty_gt), pipeline=PIPELINE, **kwargs))


def kinds(ds):
    return [kind for kind, _ in ds.problems]


def test_clean_dataset_has_no_problems(tmp_path, logged_warnings):
    make_coco(tmp_path)
    ds = build(tmp_path)
    assert len(ds) == 4 and ds.problems == [] and logged_warnings == []
    assert ds[0]['data_samples'].gt_instances.bboxes.shape == (1, 4)


def test_missing_image_file_is_skipped_with_one_warning(tmp_path, logged_warnings):
    make_coco(tmp_path)
    os.remove(tmp_path / 'img' / '2.png')
    ds = build(tmp_path)
    assert len(ds) == 3
    assert kinds(ds) == ['bad images']
    assert [line for line in logged_warnings if '2.png' in line and 'not found' in line]


def test_missing_image_in_test_mode_stops_before_evaluation(tmp_path):
    from mmghost.utils import DataError
    make_coco(tmp_path)
    os.remove(tmp_path / 'img' / '2.png')
    with pytest.raises(DataError, match=r'1 of 4 images of the test/val set .*2\.png: image file not found'):
        build(tmp_path, test_mode=True)


def test_corrupt_image_skipped_at_load_with_verify_images(tmp_path, logged_warnings):
    make_coco(tmp_path)
    (tmp_path / 'img' / '1.png').write_bytes(b'\x89PNG\r\n\x1a\n this is not an image')
    ds = build(tmp_path, verify_images=True)
    assert len(ds) == 3 and kinds(ds) == ['bad images']
    assert any('1.png' in line and 'decoded' in line for line in logged_warnings)


def test_corrupt_image_skipped_during_training(tmp_path, logged_warnings):
    make_coco(tmp_path)
    (tmp_path / 'img' / '0.png').write_bytes(b'garbage bytes')
    ds = build(tmp_path)  # verify_images=False: found when first read
    assert len(ds) == 4 and ds.problems == []
    for _ in range(3):  # another image comes back; one warning line however often it is drawn
        sample = ds[0]
        assert not sample['data_samples'].img_path.endswith('0.png')
    assert kinds(ds) == ['bad images']
    assert sum('0.png' in line for line in logged_warnings) == 1


def test_corrupt_image_in_test_mode_is_a_clear_error(tmp_path):
    from mmghost.utils import DataError
    make_coco(tmp_path)
    (tmp_path / 'img' / '0.png').write_bytes(b'garbage bytes')
    ds = build(tmp_path, test_mode=True)
    with pytest.raises(DataError, match=r'0\.png: image cannot be decoded'):
        ds[0]


def test_pipeline_bug_on_a_good_image_keeps_its_traceback(tmp_path):
    make_coco(tmp_path)
    ds = build(tmp_path)
    ds.pipeline.transforms.insert(1, lambda results: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        ds[0]


def test_zero_and_negative_size_boxes_are_skipped(tmp_path, logged_warnings):
    anns = [dict(id=1, image_id=1, category_id=1, bbox=[8, 8, 0, 10], area=0, iscrowd=0),
            dict(id=2, image_id=1, category_id=1, bbox=[8, 8, -5, 10], area=-50, iscrowd=0),
            dict(id=3, image_id=1, category_id=2, bbox=[8, 8, 0.5, 10], area=5, iscrowd=0),
            dict(id=4, image_id=1, category_id=2, bbox=[8, 8, 10, 10], area=100, iscrowd=0)]
    make_coco(tmp_path, n_images=1, anns=anns)
    ds = build(tmp_path)
    assert kinds(ds) == ['zero/negative-size boxes'] * 3
    assert [i['bbox'] for i in ds.get_data_info(0)['instances']] == [[8, 8, 18, 18]]
    assert sum(line.startswith('SafeCocoDataset: annotation') and line.endswith('skipped') for line in logged_warnings) == 3


def test_boxes_outside_the_image_skipped_or_clipped(tmp_path, logged_warnings):
    anns = [dict(id=1, image_id=1, category_id=1, bbox=[100, 100, 10, 10], area=100, iscrowd=0),  # outside
            dict(id=2, image_id=1, category_id=1, bbox=[-10, 50, 30, 30], area=900, iscrowd=0)]  # partly
    make_coco(tmp_path, n_images=1, anns=anns)
    ds = build(tmp_path)
    assert kinds(ds) == ['boxes outside the image', 'boxes clipped']
    assert [i['bbox'] for i in ds.get_data_info(0)['instances']] == [[0, 50, 20, 64]]
    assert any('annotation 1 of img/0.png' in line and 'outside' in line for line in logged_warnings)


def test_malformed_bbox_is_skipped(tmp_path):
    anns = [dict(id=1, image_id=1, category_id=1, bbox=[1, 2, 3], area=1, iscrowd=0),
            dict(id=2, image_id=1, category_id=1, bbox=[8, 8, float('nan'), 10], area=1, iscrowd=0),
            dict(id=3, image_id=1, category_id=1, bbox=[8, 8, 10, 10], area=100, iscrowd=0)]
    make_coco(tmp_path, n_images=1, anns=anns)
    ds = build(tmp_path)
    assert kinds(ds) == ['malformed boxes'] * 2 and len(ds.get_data_info(0)['instances']) == 1


def test_unknown_category_id_is_skipped(tmp_path, logged_warnings):
    anns = [dict(id=1, image_id=1, category_id=99, bbox=[8, 8, 10, 10], area=100, iscrowd=0),
            dict(id=2, image_id=1, category_id=3, bbox=[8, 8, 10, 10], area=100, iscrowd=0)]
    make_coco(tmp_path, n_images=1, anns=anns)
    ds = build(tmp_path)
    assert kinds(ds) == ['unknown category ids']
    assert [i['bbox_label'] for i in ds.get_data_info(0)['instances']] == [2]
    assert any('category_id 99' in line for line in logged_warnings)


def test_category_outside_selected_classes_is_dropped_silently(tmp_path):
    cats = [dict(id=1, name='circle'), dict(id=2, name='square'), dict(id=3, name='triangle'),
            dict(id=4, name='star')]
    anns = [dict(id=1, image_id=1, category_id=4, bbox=[8, 8, 10, 10], area=100, iscrowd=0),
            dict(id=2, image_id=1, category_id=1, bbox=[8, 8, 10, 10], area=100, iscrowd=0)]
    make_coco(tmp_path, n_images=1, anns=anns, categories=cats)
    ds = build(tmp_path)
    assert ds.problems == [] and len(ds.get_data_info(0)['instances']) == 1


def test_images_without_objects_follow_filter_empty_gt(tmp_path, logged_warnings):
    anns = [dict(id=1, image_id=1, category_id=1, bbox=[8, 8, 10, 10], area=100, iscrowd=0)]
    make_coco(tmp_path, n_images=3, anns=anns)
    assert len(build(tmp_path, filter_empty_gt=True)) == 1
    assert any('2 of 3 images' in line and 'dropped from training' in line for line in logged_warnings)
    assert any('1 of 3 images' in line and 'used after filtering (2 dropped)' in line for line in logged_warnings)
    assert len(build(tmp_path, filter_empty_gt=False)) == 3
    assert len(build(tmp_path, test_mode=True)) == 3


@pytest.mark.parametrize('filter_empty_gt', [True, False])
def test_image_whose_every_box_is_invalid_is_dropped_from_training(tmp_path, logged_warnings, filter_empty_gt):
    """Issue 20: mmdet's filter_data keeps such an image (its raw COCO index has annotations) and trains it as
    background, a silent label error. It is dropped from training whatever filter_empty_gt says, kept in test
    mode, and the log gives the real number of images left."""
    anns = [dict(id=1, image_id=1, category_id=1, bbox=[8, 8, 20, 20], area=400, iscrowd=0),  # valid
            dict(id=2, image_id=2, category_id=2, bbox=[8, 8, 0, 10], area=0, iscrowd=0),  # image 2: all invalid
            dict(id=3, image_id=2, category_id=3, bbox=[100, 100, 5, 5], area=25, iscrowd=0)]  # (outside)
    make_coco(tmp_path, n_images=3, anns=anns)  # image 3 has no annotations at all
    ds = build(tmp_path, filter_empty_gt=filter_empty_gt)
    paths = [ds.get_data_info(i)['img_path'] for i in range(len(ds))]
    assert not any(p.endswith('img/1.png') for p in paths), paths
    # image 3 (no annotations in the file) follows filter_empty_gt, as in mmdet
    assert len(ds) == (1 if filter_empty_gt else 2), paths
    assert any('1 of 3 images' in line and 'every one was invalid' in line and 'img/1.png' in line
               and 'dropped from training' in line for line in logged_warnings), logged_warnings
    used = 'used after filtering (2 dropped)' if filter_empty_gt else 'used after filtering (1 dropped)'
    assert any(f'{len(ds)} of 3 images' in line and used in line for line in logged_warnings), logged_warnings
    assert len(build(tmp_path, test_mode=True)) == 3  # evaluation goes by the annotation file: nothing dropped


@pytest.mark.parametrize('content, match', [
    ('[{"id": 1}]', 'top level is a list'),
    ('this is not json', 'is not JSON'),
    ('{"images": [], "categories": []}', r"no list \['annotations'\]"),
    ('{"images": [{"id": 1}], "annotations": [], "categories": []}', r"images\[0\] has no \['file_name'"),
    ('{"images": [], "annotations": [{"id": 1, "image_id": 1}], "categories": []}', r"annotations\[0\] has no"),
])
def test_annotation_file_that_is_not_coco_stops_before_training(tmp_path, content, match):
    from mmghost.utils import DataError
    make_coco(tmp_path)
    (tmp_path / 'annotations' / 'train.json').write_text(content)
    with pytest.raises(DataError, match=match):
        build(tmp_path)


def test_missing_annotation_file_is_a_clear_error(tmp_path):
    from mmghost.utils import DataError
    with pytest.raises(DataError, match='annotation file not found'):
        build(tmp_path)


def test_config_classes_missing_from_categories(tmp_path):
    from mmghost.utils import DataError
    make_coco(tmp_path, categories=[dict(id=1, name='circle'), dict(id=2, name='box'), dict(id=3, name='tri')])
    with pytest.raises(DataError, match=r"classes \['square', 'triangle'\] of the config are not categories"):
        build(tmp_path)


def test_no_usable_image_left_stops_before_training(tmp_path):
    from mmghost.utils import DataError
    make_coco(tmp_path, write=False)  # wrong data_root, typically
    with pytest.raises(DataError, match=r'no usable images .* 4 bad images'):
        build(tmp_path)


def test_warnings_are_capped(tmp_path, logged_warnings):
    anns = [dict(id=i, image_id=1, category_id=99, bbox=[8, 8, 10, 10], area=100, iscrowd=0) for i in range(1, 30)]
    anns.append(dict(id=30, image_id=1, category_id=1, bbox=[8, 8, 10, 10], area=100, iscrowd=0))
    make_coco(tmp_path, n_images=1, anns=anns)
    ds = build(tmp_path, max_warnings=5)
    assert len(ds.problems) == 29
    assert sum('category_id 99' in line for line in logged_warnings) == 5
    assert any('24 more data problems not shown' in line for line in logged_warnings)


# ------------------------------------------------------------------------------ storage, parsing, workers
try:
    from mmengine.fileio.backends import BaseStorageBackend
except ImportError:  # pragma: no cover
    BaseStorageBackend = object


class MemoryBackend(BaseStorageBackend):
    """A remote-like storage: files live in a dict under ``memtest://``; ``osp.isfile`` knows none of them."""
    files = {}

    def __init__(self, **kwargs):
        pass

    def get(self, filepath):
        try:
            return self.files[str(filepath)]
        except KeyError:
            raise FileNotFoundError(filepath) from None

    def get_text(self, filepath, encoding='utf-8'):
        return self.get(filepath).decode(encoding)

    def exists(self, filepath):
        return self.isfile(filepath)

    def isfile(self, filepath):
        return str(filepath) in self.files

    def join_path(self, filepath, *filepaths):
        return '/'.join([str(filepath).rstrip('/')] + [p.strip('/') for p in filepaths])


@pytest.fixture
def memory_storage(tmp_path):
    """The shapes of make_coco(), uploaded to memtest://bucket/ (2.png corrupt); the backend_args to read it."""
    from mmengine.fileio import register_backend
    register_backend('mmghost_test_memory', MemoryBackend, prefixes='memtest', force=True)
    make_coco(tmp_path)
    (tmp_path / 'img' / '2.png').write_bytes(b'not a png')
    MemoryBackend.files = {
        f'memtest://bucket/{osp.relpath(osp.join(d, f), tmp_path)}': open(osp.join(d, f), 'rb').read()
        for d, _, names in os.walk(tmp_path) for f in names}
    yield dict(backend='mmghost_test_memory')
    MemoryBackend.files = {}


def test_files_are_checked_through_the_storage_backend(memory_storage):
    """backend_args reach every file check: remote images are not 'not found' (they were, with osp.isfile)."""
    import mmghost.datasets  # noqa: F401
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    pipeline = [dict(type='LoadImageFromFile', backend_args=memory_storage)] + PIPELINE[1:]
    ds = DATASETS.build(dict(type='SafeCocoDataset', data_root='memtest://bucket/', ann_file='annotations/train.json',
                             data_prefix=dict(img=''), metainfo=dict(classes=CLASSES), pipeline=pipeline,
                             backend_args=memory_storage, verify_images=True))
    assert len(ds) == 3 and kinds(ds) == ['bad images']  # 2.png cannot be decoded; the others are found
    assert 'memtest://bucket/img/2.png: image cannot be decoded' in ds.problems[0][1]
    assert ds[0]['inputs'].shape[-2:] == (64, 64)


def test_annotation_file_is_parsed_once(tmp_path, monkeypatch):
    import json as json_module
    make_coco(tmp_path)
    parsed = []
    real_load, real_loads = json_module.load, json_module.loads
    monkeypatch.setattr(json_module, 'load', lambda *a, **k: parsed.append('load') or real_load(*a, **k))
    monkeypatch.setattr(json_module, 'loads', lambda *a, **k: parsed.append('loads') or real_loads(*a, **k))
    ds = build(tmp_path)
    assert len(ds) == 4 and len(parsed) == 1, parsed


def test_problems_met_in_dataloader_workers_reach_the_main_process(tmp_path, logged_warnings):
    """Two worker processes find the corrupt images; the main process's dataset and DataProblemsHook know."""
    from types import SimpleNamespace

    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader

    from mmghost.datasets import DataProblemsHook
    make_coco(tmp_path, n_images=6)
    for name in ('0.png', '3.png'):
        (tmp_path / 'img' / name).write_bytes(b'garbage bytes')
    ds = build(tmp_path)  # verify_images=False: found when the workers first read them
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=pseudo_collate)
    for _ in range(2):  # two epochs: new worker processes see the same bad images again
        assert sum(len(batch['inputs']) for batch in loader) == 6
    runner = SimpleNamespace(train_dataloader=loader, epoch=2)
    DataProblemsHook().after_train_epoch(runner)
    assert any('dataloader workers met 2 new data problem(s) in epoch 2: 2 bad images' in line
               for line in logged_warnings), logged_warnings
    assert sorted(osp.basename(message.split(':')[0]) for _, message in ds.problems) == ['0.png', '3.png']
    assert kinds(ds) == ['bad images'] * 2  # each once, however many workers and epochs met it


# ------------------------------------------------------------------------------------------------ end to end
def _train_config(tmp_path, data_root, ann_file='annotations/train.json', iters=4, num_workers=0):
    cfg = tmp_path / 'bad_data_cfg.py'
    cfg.write_text(tiny_config_text(data_root, iters=iters, size=64, batch_size=2, checkpoint_interval=iters,
                                    imports=['mmghost', 'mmghost.datasets'], num_workers=num_workers,
                                    train_dataset=dict(type='SafeCocoDataset', ann_file=ann_file)))
    return str(cfg)


def _train(cfg, work_dir):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'train.py'), cfg, '--work-dir', str(work_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_training_survives_a_dataset_with_every_kind_of_bad_data(tmp_path):
    """Missing + corrupt images, bad boxes, unknown ids, empty images: training runs to the end, with warnings."""
    n = 8
    anns = [dict(id=i + 1, image_id=i + 1, category_id=1 + i % 3, bbox=[8, 8, 20, 24], area=480, iscrowd=0)
            for i in range(n)]
    anns += [dict(id=100, image_id=1, category_id=1, bbox=[8, 8, 0, 10], area=0, iscrowd=0),
             dict(id=101, image_id=2, category_id=1, bbox=[200, 200, 10, 10], area=100, iscrowd=0),
             dict(id=102, image_id=3, category_id=42, bbox=[8, 8, 10, 10], area=100, iscrowd=0)]
    anns = [a for a in anns if a['image_id'] != 8]  # image 8 has no objects
    make_coco(tmp_path / 'data', n_images=n, anns=anns)
    os.remove(tmp_path / 'data' / 'img' / '6.png')  # missing
    (tmp_path / 'data' / 'img' / '5.png').write_bytes(b'not a png')  # corrupt
    # 4 iterations x 2 images cover the 6 usable images (and the corrupt one) at least once; 2 dataloader workers
    result = _train(_train_config(tmp_path, tmp_path / 'data', num_workers=2), tmp_path / 'work')
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert (tmp_path / 'work' / 'iter_4.pth').is_file()
    for needle in ('6.png: image file not found', '5.png: image cannot be decoded', 'annotation 100 of img/0.png',
                   'annotation 101 of img/1.png',
                   'category_id 42', 'have no objects'):
        assert needle in out, needle
    # the corrupt image was met in a worker; the main process's DataProblemsHook reports it
    assert 'dataloader workers met 1 new data problem(s)' in out and out.count('5.png: image cannot be decoded') == 1


@pytest.mark.slow
def test_train_tool_prints_one_line_for_a_non_coco_file(tmp_path):
    make_coco(tmp_path / 'data')
    (tmp_path / 'data' / 'annotations' / 'train.json').write_text('[1, 2, 3]')
    result = _train(_train_config(tmp_path, tmp_path / 'data'), tmp_path / 'work')
    assert result.returncode == 1
    assert 'top level is a list' in result.stderr
    assert 'Traceback' not in result.stderr, result.stderr[-2000:]
