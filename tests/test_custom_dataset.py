"""Your own COCO data: the config generator (``python -m mmghost.configs NAME --new OUT --train ... --val ...``),
the class checks (ClassChecksHook, SafeCocoDataset), and generate -> train -> evaluate -> draw (docs/custom_dataset.md).
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from fixtures.detection_batch import total_loss, training_batch
from fixtures.tiny_config import make_dataset
from mmengine.config import Config

from mmghost.configs import config_path
from mmghost.configs import main as configs_main
from mmghost.engine import build_detector
from mmghost.new_config import dataset_config_text, ssd_strides
from mmghost.utils.errors import DataError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DETECTORS = ['retinanet_ghostnet-1.0x_fpn.py', 'faster_rcnn_ghostnet-1.0x_fpn.py', 'ssdlite_ghostnet-1.0x_320.py',
             'yolov3_ghostnetv2-1.0x_416.py', 'demo/retinanet_ghostnet_shapes.py']


def coco_file(path, names, boxes_per_category=1):
    """A COCO file of one 64x64 image with ``boxes_per_category`` boxes of each of ``names``."""
    categories = [dict(id=i + 1, name=n) for i, n in enumerate(names)]
    annotations = [dict(id=len(names) * j + i + 1, image_id=1, category_id=i + 1, bbox=[4, 4, 20, 20], area=400,
                        iscrowd=0) for i in range(len(names)) for j in range(boxes_per_category)]
    path.write_text(json.dumps(dict(images=[dict(id=1, file_name='a.png', width=64, height=64)],
                                    annotations=annotations, categories=categories)))
    return str(path)


def generate(tmp_path, name, names=('cat', 'dog'), **kwargs):
    train = coco_file(tmp_path / 'train.json', names)
    val = coco_file(tmp_path / 'val.json', names)
    out = tmp_path / 'mine.py'
    out.write_text(dataset_config_text(name, (train, str(tmp_path / 'images')), (val, str(tmp_path / 'images')),
                                       **kwargs))
    return Config.fromfile(str(out)), train, val


def _train_dataset(cfg):
    dataset = cfg.train_dataloader.dataset
    return dataset.dataset if 'dataset' in dataset else dataset


@pytest.mark.parametrize('name', DETECTORS)
def test_generated_config_sets_classes_heads_data_and_learning_rate(name, tmp_path):
    from mmghost.datasets.class_checks import head_num_classes
    base = Config.fromfile(config_path(name))
    cfg, train, val = generate(tmp_path, name, gpus=2, batch=3)
    images = osp.join(str(tmp_path / 'images'), '')
    for dataset, ann_file in ((_train_dataset(cfg), train), (cfg.val_dataloader.dataset, val),
                              (cfg.test_dataloader.dataset, val)):
        assert dataset.metainfo.classes == ('cat', 'dog')
        assert dataset.ann_file == ann_file and dataset.data_prefix.img == images
        assert dataset.type == _train_dataset(base).type  # SafeCocoDataset, kept from the base
    assert cfg.val_evaluator.ann_file == val and cfg.test_evaluator.ann_file == val
    assert cfg.train_dataloader.batch_size == 3
    base_lr, base_batch = base.optim_wrapper.optimizer.lr, base.auto_scale_lr.base_batch_size
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(base_lr * 6 / base_batch, rel=1e-5)
    assert cfg.auto_scale_lr.enable is True and cfg.auto_scale_lr.base_batch_size == 6
    assert cfg.default_hooks.class_checks.type == 'ClassChecksHook'
    model = build_detector(cfg.copy())
    heads = head_num_classes(model)
    assert heads and all(n == 2 for _, n in heads), heads
    if 'faster_rcnn' in name:
        assert [h for h, _ in heads] == ['roi_head.bbox_head'] and model.rpn_head.num_classes == 1


def test_every_head_of_a_list_of_heads_is_set():
    """Cascade R-CNN's three bbox heads are a list, which mmengine replaces whole: all three get the classes."""
    from mmghost.new_config import model_num_classes
    model = dict(rpn_head=dict(type='RPNHead'), roi_head=dict(
        bbox_head=[dict(type='A', num_classes=80), dict(type='B', num_classes=80)], mask_head=dict(num_classes=80)))
    assert model_num_classes(model, 2) == dict(roi_head=dict(
        bbox_head=[dict(type='A', num_classes=2), dict(type='B', num_classes=2)], mask_head=dict(num_classes=2)))


def test_image_size_scales_resize_of_a_coco_config(tmp_path):
    cfg, _, _ = generate(tmp_path, 'retinanet_ghostnet-1.0x_fpn.py', image_size=640)
    for pipeline in (_train_dataset(cfg).pipeline, cfg.val_dataloader.dataset.pipeline):
        assert [t.scale for t in pipeline if t.type == 'Resize'] == [(640, 384)]  # (1333, 800) x 640 / 1333
    assert cfg.model.bbox_head.anchor_generator.octave_base_scale == 4  # anchors relative to strides: unchanged


def test_ssd_strides_at_320_are_mmdets():
    # mmdet's ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py: strides=[16, 32, 64, 107, 160, 320] at 320
    assert ssd_strides(320, 6) == [16, 32, 64, 107, 160, 320]


def test_image_size_scales_ssd_anchors_and_it_trains_at_that_size(tmp_path):
    # 4 classes: the training batch's box is of class 3
    cfg, _, _ = generate(tmp_path, 'ssdlite_ghostnet-1.0x_320.py', names=('a', 'b', 'c', 'd'), image_size=192)
    assert [t.scale for t in _train_dataset(cfg).pipeline if t.type == 'Resize'] == [(192, 192)]
    anchors = cfg.model.bbox_head.anchor_generator
    assert anchors.strides == [16, 32, 64, 96, 192, 192]  # maps 12, 6, 3, 2, 1, 1 at 192
    assert anchors.min_sizes[0] == round(48 * 192 / 320) and anchors.max_sizes[-1] == 192
    torch.manual_seed(0)
    model = build_detector(cfg.copy())
    model.train()
    loss = total_loss(model(**training_batch(model, 192, 192, images=2), mode='loss'))  # BN needs 2 on 1x1 maps
    assert torch.isfinite(loss)


def test_image_size_scales_yolo_multiscale_training_and_anchors(tmp_path):
    cfg, _, _ = generate(tmp_path, 'yolov3_ghostnetv2-1.0x_416.py', image_size=320)
    resize = [t for t in _train_dataset(cfg).pipeline if t.type == 'RandomResize'][0]
    assert resize.scale == [(246, 246), (320, 320)]  # [(320, 320), (416, 416)] x 320 / 416
    assert cfg.model.bbox_head.anchor_generator.base_sizes[0][0] == (89, 69)  # (116, 90) x 320 / 416


def test_weights_option_sets_the_backbone_file(tmp_path):
    cfg, _, _ = generate(tmp_path, 'retinanet_ghostnet-1.0x_fpn.py', weights='w/mine.pth')
    assert cfg.model.backbone.init_cfg == dict(type='SafePretrained', checkpoint='w/mine.pth')
    cfg, _, _ = generate(tmp_path, 'ssdlite_ghostnet-1.0x_320.py', weights='w/mine.pth')  # from scratch in the base
    assert cfg.model.backbone.init_cfg == dict(type='SafePretrained', checkpoint='w/mine.pth')


def test_command_line_writes_the_config_and_refuses_bad_input(tmp_path, capsys):
    train = coco_file(tmp_path / 'train.json', ['cat'])
    out = tmp_path / 'mine.py'
    args = ['demo/retinanet_ghostnet_shapes.py', '--new', str(out), '--train', train, str(tmp_path), '--val', train,
            str(tmp_path)]
    assert configs_main(args) == 0 and "classes = ('cat',)" in out.read_text()
    with pytest.raises(SystemExit):
        configs_main(args)  # exists, no --force
    with pytest.raises(SystemExit):
        configs_main(args[:6] + ['--force'])  # --train without --val
    with pytest.raises(SystemExit):
        configs_main(['demo/retinanet_ghostnet_shapes.py', '--new', str(out), '--force', '--batch', '2'])
    (tmp_path / 'bad.json').write_text('{"images": []}')
    assert configs_main(args[:4] + [str(tmp_path / 'bad.json')] + args[5:] + ['--force']) == 1
    err = capsys.readouterr().err
    assert 'error: annotation file' in err and 'is not COCO' in err


# ---- the class checks ---------------------------------------------------------------------------------------------
def test_a_head_with_another_number_of_classes_is_refused():
    from mmghost.datasets.class_checks import check_num_classes
    cfg = Config.fromfile(config_path('demo/retinanet_ghostnet_shapes.py'))
    model = build_detector(cfg.copy())
    check_num_classes(model, ('circle', 'square', 'triangle'), 'training')
    with pytest.raises(DataError, match=r'bbox_head\.num_classes=3 but the training data has 1 class \(\'raccoon\'\)'
                       r': set model\.bbox_head\.num_classes=1'):
        check_num_classes(model, ('raccoon', ), 'training')


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_dataset(str(tmp_path_factory.mktemp('shapes') / 'data'), images=4, size=64)


def _dataset(root, ann_file, classes, test_mode=False):
    from mmghost.datasets import SafeCocoDataset
    return SafeCocoDataset(data_root=root, ann_file=ann_file, data_prefix=dict(img=''), test_mode=test_mode,
                           metainfo=dict(classes=classes), pipeline=[])


def _with_categories(root, names, out):
    """The shapes training file with ``names`` as its categories (extra ones have no annotation)."""
    data = json.load(open(osp.join(root, 'annotations', 'instances_train.json')))
    known = {c['name']: c['id'] for c in data['categories']}
    data['categories'] = [dict(id=known.get(n, 100 + i), name=n) for i, n in enumerate(names)]
    data['annotations'] = [a for a in data['annotations'] if a['category_id'] in {c['id'] for c in data['categories']}]
    path = osp.join(root, 'annotations', out)
    json.dump(data, open(path, 'w'))
    return path


def test_dataset_warns_about_classes_without_boxes_and_categories_not_in_classes(shapes, logged_warnings):
    data = json.load(open(osp.join(shapes, 'annotations', 'instances_train.json')))
    triangles = sum(a['category_id'] == next(c['id'] for c in data['categories'] if c['name'] == 'triangle')
                    for a in data['annotations'])
    ann_file = _with_categories(shapes, ['circle', 'square', 'triangle', 'hexagon'], 'extra.json')
    _dataset(shapes, ann_file, ('circle', 'square', 'hexagon'))
    assert any("categories of" in w and f"'triangle' ({triangles} annotations)" in w for w in logged_warnings), \
        logged_warnings
    assert any("classes with no annotation in" in w and "'hexagon'" in w for w in logged_warnings), logged_warnings


def test_class_checks_hook_warns_when_training_and_validation_categories_differ(shapes, logged_warnings):
    from mmghost.datasets import ClassChecksHook
    classes = ('circle', 'square', 'triangle')
    train = _dataset(shapes, 'annotations/instances_train.json', classes)
    val = _dataset(shapes, _with_categories(shapes, ['circle', 'square', 'triangle', 'star'], 'val4.json'), classes,
                   test_mode=True)
    model = build_detector(Config.fromfile(config_path('demo/retinanet_ghostnet_shapes.py')).copy())
    runner = SimpleNamespace(model=model, train_dataloader=SimpleNamespace(dataset=train),
                             _val_loop=SimpleNamespace(dataloader=SimpleNamespace(dataset=val)))
    ClassChecksHook().before_train(runner)
    assert any("only in validation: ['star']" in w for w in logged_warnings), logged_warnings
    with pytest.raises(DataError):
        ClassChecksHook().before_train(SimpleNamespace(
            model=model, train_dataloader=SimpleNamespace(dataset=_dataset(shapes, 'annotations/instances_train.json',
                                                                             ('circle', ))), _val_loop=None))


# ---- end to end ---------------------------------------------------------------------------------------------------
def run(*args, check=True, timeout=900):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env)
    if check:
        assert proc.returncode == 0, f'{args}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
    return proc


@pytest.mark.slow
def test_generate_train_evaluate_and_draw(tmp_path):
    """Two commands from a COCO file to an evaluated detector (no edit of the written config), then the drawing."""
    data = make_dataset(str(tmp_path / 'shapes'), images=16, size=96)
    ann = osp.join(data, 'annotations')
    config = str(tmp_path / 'mine.py')
    run('-m', 'mmghost.configs', 'demo/retinanet_ghostnet_shapes.py', '--new', config, '--train',
        osp.join(ann, 'instances_train.json'), data, '--val', osp.join(ann, 'instances_val.json'), data,
        '--image-size', '96', '--batch', '4')
    work = str(tmp_path / 'work')
    # score_thr 0: after one epoch no score passes the demo's 0.05, and COCO metrics of no detection are empty
    out = run('tools/train.py', config, '--work-dir', work, '--cfg-options', 'train_cfg.max_epochs=1',
              'train_cfg.val_interval=1', 'model.test_cfg.score_thr=0.0')
    log = out.stdout + out.stderr
    assert 'Average Precision' in log and 'coco/bbox_mAP' in log  # evaluated on the val file after training
    assert 'Scaling the original LR by 1.0' in log  # the written lr is for 1 x 4 images: nothing to rescale
    image = sorted(glob.glob(osp.join(data, 'val', '*.png')))[0]
    run('tools/infer.py', config, osp.join(work, 'epoch_1.pth'), image, '--out-dir', str(tmp_path / 'pred'),
        '--score-thr', '0.0')
    assert osp.isfile(tmp_path / 'pred' / (osp.splitext(osp.basename(image))[0] + '.png'))
    # A head left at another number of classes stops the run before the first iteration, in one line.
    bad = run('tools/train.py', config, '--work-dir', str(tmp_path / 'bad'), '--cfg-options',
              'model.bbox_head.num_classes=5', check=False)
    assert bad.returncode == 1 and 'error: the model has bbox_head.num_classes=5' in bad.stderr
    assert 'Epoch(train)' not in bad.stdout + bad.stderr


DEEPFOREST = 'deepforest==2.1.0'


@pytest.mark.slow
def test_real_photo_dataset_trains_through_a_generated_config(tmp_path):
    """Aerial photos with tree crowns boxed by DeepForest's authors (VOC XML, in its wheel on PyPI): converted,
    a config generated, one epoch trained and evaluated (docs/custom_dataset.md, section 9)."""
    wheel_dir = tmp_path / 'wheel'
    got = subprocess.run([sys.executable, '-m', 'pip', 'download', DEEPFOREST, '--no-deps', '-d', str(wheel_dir),
                          '-q'], capture_output=True, text=True, timeout=600)
    if got.returncode != 0:
        pytest.skip(f'pip could not download {DEEPFOREST} (no access to PyPI?): {got.stderr.strip()[-300:]}')
    import zipfile
    with zipfile.ZipFile(next(iter(glob.glob(str(wheel_dir / '*.whl'))))) as wheel:
        wheel.extractall(tmp_path, [n for n in wheel.namelist() if n.startswith('deepforest/data/')])
    d = str(tmp_path / 'deepforest' / 'data')
    train, val = str(tmp_path / 'train.json'), str(tmp_path / 'val.json')
    run('tools/voc_to_coco.py', osp.join(d, '2019_YELL_2_528000_4978000_image_crop2.xml'),
        osp.join(d, '2019_YELL_2_541000_4977000_image_crop.xml'), '--out', train)
    run('tools/voc_to_coco.py', osp.join(d, 'OSBS_029.xml'), '--out', val)
    assert [c['name'] for c in json.load(open(train))['categories']] == ['Tree']
    config = str(tmp_path / 'trees.py')
    run('-m', 'mmghost.configs', 'demo/retinanet_ghostnet_shapes.py', '--new', config, '--train', train, d,
        '--val', val, d, '--image-size', '1024', '--batch', '2')
    out = run('tools/train.py', config, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
              'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'model.test_cfg.score_thr=0.0')
    log = out.stdout + out.stderr
    assert 'coco/bbox_mAP' in log and 'Average Precision' in log
