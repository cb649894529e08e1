"""tools/deploy.py (mmdeploy end-to-end ONNX, OpenVINO IR), the torch-free runtime and its accuracy, in the mmdeploy
stack.

These tests run in ``.venv-deploy`` (``tools/run_tests.sh --stack deploy``; part of ``make test``): mmdeploy pins
protobuf 3.20.2, so it has a venv of its own. The torch-free check runs ``tools/infer_onnx.py`` in
``.venv-runtime``, a venv with numpy, OpenCV, ONNX Runtime and OpenVINO only. Both engines of
``mmghost.deploy.Detector`` (ONNX Runtime, OpenVINO) are held to PyTorch's boxes.
"""
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest

pytest.importorskip('mmdeploy',
                    reason='the mmdeploy stack (.venv-deploy) runs these: tools/run_tests.sh --stack deploy')
import onnx  # noqa: E402

from fixtures.tiny_config import tiny_config_text  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RUNTIME_PYTHON = osp.join(ROOT, '.venv-runtime', 'bin', 'python')
# A tiny RetinaNet-GhostNet trained on a tiny shapes dataset: 12 epochs in about a minute, enough to give
# detections with real scores (its mAP is low; the demo's is measured in docs/deploy.md). nms_pre above the
# number of anchors: mmdet's nms_pre keeps the top (anchor, class) pairs of each level, mmdeploy's graph the top
# anchors, so with fewer candidates than that both keep all of them and every detection can be compared.
TINY_MODEL = """model = dict(backbone=dict(widen_factor=0.5), neck=dict(in_channels=[20, 56, 80], out_channels=32),
             bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1), test_cfg=dict(nms_pre=10000))
randomness = dict(seed=0)
"""
IMAGE_SIZE = 128
ENGINES = ['onnxruntime', 'openvino']


def run_tool(*args, python=sys.executable, timeout=600):
    proc = subprocess.run([python, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f'{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp('deploy')
    data = base / 'shapes'
    run_tool('tools/make_shapes_dataset.py', str(data), '--train', '48', '--val', '16', '--size', str(IMAGE_SIZE),
             '--seed', '5')
    config = base / 'tiny.py'
    config.write_text(tiny_config_text(data, epochs=12, size=IMAGE_SIZE, batch_size=8, val_batch_size=8,
                                       max_keep_ckpts=1, warmup_iters=6, extra=TINY_MODEL)
                      + 'train_cfg = dict(val_interval=12)\n')
    work_dir = base / 'work'
    run_tool('tools/train.py', str(config), '--work-dir', str(work_dir))
    checkpoint = work_dir / 'epoch_12.pth'
    assert checkpoint.is_file()
    # An image that is not square, so that boxes are scaled back by a factor other than 1. Its resized size
    # (128 x 64) needs no padding: with padding, mmdeploy's graph clips boxes to the padded input before NMS
    # where mmdet clips to the image, and boxes touching the bottom/right border may differ (docs/deploy.md).
    wide = base / 'wide.png'
    image = cv2.imread(str(data / 'val' / '000001.png'))
    cv2.imwrite(str(wide), cv2.resize(image, (IMAGE_SIZE + 64, IMAGE_SIZE - 32)))
    return dict(base=base, data=data, config=str(config), checkpoint=str(checkpoint), wide=str(wide))


@pytest.fixture(scope='module')
def exported(trained):
    out = trained['base'] / 'model'
    output = run_tool('tools/deploy.py', trained['config'], trained['checkpoint'], str(out), '--int8',
                      '--calib-images', '8', '--backend', 'openvino')
    return dict(trained, model_dir=str(out), output=output)


def val_images(trained, count=4):
    return [str(trained['data'] / 'val' / f'{i:06d}.png') for i in range(1, count + 1)] + [trained['wide']]


def test_deploy_writes_a_whole_detector_in_standard_onnx_ops(exported):
    model_dir = exported['model_dir']
    for name in ('end2end.onnx', 'end2end_int8.onnx', 'end2end.xml', 'end2end.bin', 'pipeline.json', 'deploy.json',
                 'detail.json', 'mmghost.json'):
        assert osp.isfile(osp.join(model_dir, name)), name
    model = onnx.load(osp.join(model_dir, 'end2end.onnx'))
    assert [o.name for o in model.graph.output] == ['dets', 'labels']
    ops = {node.op_type for node in model.graph.node}
    assert 'NonMaxSuppression' in ops  # NMS is inside the graph
    assert {node.domain for node in model.graph.node} <= {'', 'ai.onnx'}  # no custom op library needed
    with open(osp.join(model_dir, 'mmghost.json')) as f:
        assert json.load(f) == dict(classes=['circle', 'square', 'triangle'], clip_border=True)
    assert 'ONNX Runtime ran' in exported['output'] and 'OpenVINO ran' in exported['output']


def test_openvino_ir_keeps_fp32_weights_and_dynamic_input(exported):
    import openvino as ov
    model = ov.Core().read_model(osp.join(exported['model_dir'], 'end2end.xml'))
    assert model.is_dynamic()  # any image size, as end2end.onnx
    assert [output.get_any_name() for output in model.outputs][:2] == ['dets', 'labels']
    constants = [op for op in model.get_ordered_ops() if op.get_type_name() == 'Constant' and op.get_output_size()
                 and op.get_output_element_type(0).is_real()]
    assert constants and all(op.get_output_element_type(0) == ov.Type.f32 for op in constants)  # no fp16 weights


def test_onnx_map_equals_pytorch_map_within_0_005(exported, tmp_path):
    out = tmp_path / 'metrics.json'
    run_tool('tools/test_onnx.py', exported['config'], exported['model_dir'], '--checkpoint',
             exported['checkpoint'], '--out', str(out))
    summary = json.loads(out.read_text())
    onnx_metrics, torch_metrics = summary['metrics']['onnx_fp32'], summary['metrics']['pytorch']
    assert summary['images'] == 16
    assert torch_metrics['coco/bbox_mAP_50'] > 0  # the check compares real detections
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'):
        assert abs(onnx_metrics[key] - torch_metrics[key]) <= 0.005, key


@pytest.mark.parametrize('engine', ENGINES)
def test_exported_boxes_equal_pytorch_boxes_to_1e_3_px(exported, engine):
    from test_onnx import pytorch_predictor

    from mmghost.deploy import Detector
    from mmghost.engine import load_config
    predict = pytorch_predictor(load_config(exported['config']), exported['checkpoint'])
    detector = Detector(exported['model_dir'], engine=engine)
    compared = 0
    for path in val_images(exported):
        ours, theirs = detector(path), predict(path)
        height, width = cv2.imread(path).shape[:2]
        assert (ours.boxes[:, 0::2] <= width).all() and (ours.boxes[:, 1::2] <= height).all()
        assert len(ours.boxes) == len(theirs.boxes)
        for box, score, label in zip(theirs.boxes, theirs.scores, theirs.labels):
            same = (ours.labels == label) & (np.abs(ours.boxes - box).max(axis=1) <= 1e-3)
            assert same.any(), f'{path}: PyTorch box {box} ({score:.3f}) has no {engine} twin'
            assert np.abs(ours.scores[same] - score).min() <= 1e-4
            compared += 1
    assert compared >= 20, f'only {compared} detections compared'


@pytest.mark.parametrize('engine', ENGINES)
def test_infer_onnx_runs_where_torch_is_not_installed(exported, tmp_path, engine):
    assert osp.isfile(RUNTIME_PYTHON), 'tools/setup_env.sh deploy builds .venv-runtime; run it'
    probe = subprocess.run([RUNTIME_PYTHON, '-c', 'import torch'], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    images = val_images(exported, count=2)
    out_dir = tmp_path / 'out'
    output = run_tool('tools/infer_onnx.py', exported['model_dir'], *images, '--out-dir', str(out_dir),
                      '--score-thr', '0.1', '--engine', engine, python=RUNTIME_PYTHON)
    assert output.count('detections with score >=') == len(images)
    loaded = run_tool('-c', 'import sys, mmghost.deploy, tools.infer_onnx; from mmghost.deploy import Detector; '
                      f'Detector(sys.argv[1], engine="{engine}"); print(sorted({{m.split(".")[0] for m in '
                      'sys.modules} & {"torch", "mmengine", "mmcv", "mmdet"}))', exported['model_dir'],
                      python=RUNTIME_PYTHON)
    assert loaded.strip().splitlines()[-1] == '[]'

    from mmghost.deploy import Detector
    detector = Detector(exported['model_dir'], engine=engine)
    for path in images:
        name = osp.splitext(osp.basename(path))[0]
        picture = cv2.imread(str(out_dir / f'{name}.png'))
        assert picture.shape == cv2.imread(path).shape
        written = json.loads((out_dir / f'{name}.json').read_text())['detections']
        here = detector(path).to_json(detector.classes)
        assert len(written) == len(here) > 0
        for a, b in zip(written, here):  # another onnxruntime/openvino version: same boxes up to rounding
            assert a['label'] == b['label'] and a['class'] == b['class']
            assert np.allclose(a['bbox'], b['bbox'], atol=0.02) and abs(a['score'] - b['score']) <= 2e-4


# Run in .venv-runtime: mmghost.deploy and mmdeploy's C++ SDK (mmdeploy-runtime) on the same folder and images.
SDK_COMPARISON = """
import json, sys
import cv2
import numpy as np
from mmdeploy_runtime import Detector as SDKDetector
from mmghost.deploy import Detector
model_dir, paths = sys.argv[1], sys.argv[2:]
sdk, ours = SDKDetector(model_path=model_dir, device_name='cpu', device_id=0), Detector(model_dir)
report = []
for path in paths:
    image = cv2.imread(path)
    dets, labels, _ = sdk(image)
    mine = ours(image)
    height, width = image.shape[:2]
    boxes = mine.boxes.copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width - 1)  # the SDK clips to the last pixel, mmdet to the edge
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height - 1)
    same_count = len(dets) == len(boxes)
    report.append(dict(sdk=len(dets), ours=len(boxes), labels_equal=bool(np.array_equal(labels, mine.labels)),
                       box_diff=float(np.abs(dets[:, :4] - boxes).max()) if same_count and len(boxes) else None,
                       score_diff=float(np.abs(dets[:, 4] - mine.scores).max()) if same_count and len(boxes) else None))
print(json.dumps(report))
"""


def test_runtime_gives_the_boxes_of_mmdeploys_own_sdk(exported):
    """mmdeploy's C++ SDK reads the same folder (pipeline.json): same detections, up to its clipping convention."""
    assert osp.isfile(RUNTIME_PYTHON), 'tools/setup_env.sh deploy builds .venv-runtime; run it'
    output = run_tool('-c', SDK_COMPARISON, exported['model_dir'], *val_images(exported), python=RUNTIME_PYTHON)
    report = json.loads(next(line for line in output.splitlines() if line.startswith('[{')))
    assert sum(r['ours'] for r in report) > 0
    for row in report:
        assert row['sdk'] == row['ours'] and row['labels_equal'], row
        if row['ours']:
            assert row['box_diff'] <= 1e-3 and row['score_diff'] <= 1e-4, row


def test_int8_model_quantises_the_dense_convs_and_keeps_detecting(exported):
    from deploy import depthwise_conv_nodes, output_conv_nodes

    from mmghost.deploy import Detector
    model_dir = exported['model_dir']
    fp32 = onnx.load(osp.join(model_dir, 'end2end.onnx'))
    int8 = onnx.load(osp.join(model_dir, 'end2end_int8.onnx'))
    ops = [node.op_type for node in int8.graph.node]
    float_convs = ops.count('Conv')
    assert ops.count('QLinearConv') > 0
    assert float_convs == len(depthwise_conv_nodes(fp32)) + len(output_conv_nodes(fp32))
    assert len(output_conv_nodes(fp32)) == 6  # retina_cls and retina_reg on 3 levels
    quantised, reference = Detector(model_dir, precision='int8'), Detector(model_dir)
    path = val_images(exported)[0]
    ours, theirs = quantised(path), reference(path)
    assert len(ours.boxes) > 0
    best = theirs.boxes[0]
    overlap = np.minimum(ours.boxes[:, 2:], best[2:]) - np.maximum(ours.boxes[:, :2], best[:2])
    assert (overlap.clip(0).prod(axis=1) > 0).any()  # the float model's best box is still found


def test_static_shape_export_stretches_to_the_fixed_input(trained, tmp_path):
    from mmghost.deploy import Detector
    out = tmp_path / 'static'
    import openvino as ov
    run_tool('tools/deploy.py', trained['config'], trained['checkpoint'], str(out), '--shape', '96', '128',
             '--backend', 'openvino')
    model = onnx.load(str(out / 'end2end.onnx'))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 96, 128]
    assert list(ov.Core().read_model(str(out / 'end2end.xml')).inputs[0].get_shape()) == [1, 3, 96, 128]
    height, width = cv2.imread(trained['wide']).shape[:2]
    found = {}
    for engine in ENGINES:
        detector = Detector(str(out), engine=engine)
        assert detector.preprocess.scale == (128, 96) and not detector.preprocess.keep_ratio
        found[engine] = detections = detector(trained['wide'])
        assert (detections.boxes[:, 2] <= width).all() and (detections.boxes[:, 3] <= height).all()
    assert len(found['openvino'].boxes) == len(found['onnxruntime'].boxes) > 0
    np.testing.assert_allclose(found['openvino'].boxes, found['onnxruntime'].boxes, atol=1e-3)


# Untrained detectors give near-equal scores to many boxes; keep every candidate (no score threshold, nms_pre
# above the candidate count: mmdet's nms_pre ranks (anchor, class) pairs, mmdeploy's graph anchors) so that the
# comparison is of the same candidates.
# The one-stage heads' initial weights make every score all but equal; they get spread (spread=True: random
# biases, conv weights x10; a number: that factor instead of 10). Faster
# R-CNN's initial scores are spread already, and spreading its RPN's would change which proposals survive the
# per-level nms_pre (top anchors in mmdeploy's graph, top (anchor, class) pairs in mmdet).
FAMILY_OPTIONS = {
    'faster_rcnn_ghostnet_fpn.py': (['model.test_cfg.rcnn.score_thr=0.0'], False),
    'ssdlite_ghostnet-1.0x_320.py': (['model.test_cfg.score_thr=0.0'], True),
    'yolov3_ghostnetv2-1.0x_320.py': (['model.test_cfg.score_thr=0.0', 'model.test_cfg.conf_thr=0.0',
                                       'model.test_cfg.nms_pre=1000000'], True),
    # The demo detector with GhostConvs in its FPN and head (issue 19): their ONNX graph is standard Conv ops.
    # Its head's conv weights are scaled by 2, not 10: by 10 (each GhostConv scales twice) every score saturates
    # at 1.0 (all tied), unscaled they lie within 1e-5 of each other.
    'demo/retinanet_ghostnet-ghost-head_shapes.py': (['model.test_cfg.score_thr=0.0',
                                                      'model.test_cfg.nms_pre=1000000'], 2),
    # Ghost-ResNet-50 (mmdet's ResNet with GhostConv, PlainStem): deploy_model folds the norms after its GhostConvs
    # (it has no switch_to_deploy); its ImageNet init_cfg is dropped by PlainStem(init_cfg=None). Head weights
    # scaled by 2: by 10 every top score saturates at 1.0.
    'ghost_resnet/retinanet_ghost-r50-s2_fpn_1x_coco.py': (['model.test_cfg.score_thr=0.0',
                                                            'model.test_cfg.nms_pre=1000000'], 2),
}
# The test image (H, W): one the config's test pipeline neither resizes nor pads (the demo's scale is 256x256).
IMAGE_SHAPES = {'demo/retinanet_ghostnet-ghost-head_shapes.py': (256, 256)}
SLOW = {'demo/retinanet_ghostnet-ghost-head_shapes.py', 'ghost_resnet/retinanet_ghost-r50-s2_fpn_1x_coco.py'}


@pytest.mark.parametrize('config', [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c
                                    for c in FAMILY_OPTIONS])
def test_family_detector_exports_and_matches_pytorch(config, tmp_path):
    """The other detectors of our configs go through mmdeploy too (random weights), and keep PyTorch's boxes in
    both engines."""
    import torch
    from mmengine.config import DictAction
    from test_onnx import pytorch_predictor

    from mmghost.deploy import Detector
    from mmghost.engine import build_detector, load_config
    options, spread = FAMILY_OPTIONS[config]
    height, width = IMAGE_SHAPES.get(config, (256, 320))
    config = osp.join(ROOT, 'configs', config)
    cfg = load_config(config, {k: DictAction._parse_iterable(v) for k, v in (o.split('=') for o in options)})
    torch.manual_seed(0)
    model = build_detector(cfg)
    model.init_weights()
    with torch.no_grad():
        for name, parameter in model.bbox_head.named_parameters() if spread else ():
            if name.endswith('bias'):
                parameter.uniform_(-3, 3)
            elif parameter.dim() == 4:
                parameter.mul_(10 if spread is True else spread)
    checkpoint = tmp_path / 'random.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    out = tmp_path / 'model'
    run_tool('tools/deploy.py', config, str(checkpoint), str(out), '--backend', 'openvino', '--cfg-options', *options)
    image = tmp_path / 'image.png'
    rng = np.random.default_rng(0)
    cv2.imwrite(str(image), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))  # no padding needed
    theirs = pytorch_predictor(cfg, str(checkpoint))(str(image))
    assert len(theirs.boxes) >= 10
    for engine in ENGINES:
        ours = Detector(str(out), engine=engine)(str(image))
        np.testing.assert_allclose(ours.scores[:10], theirs.scores[:10], rtol=1e-4, err_msg=engine)
        compared = 0
        for box, score, label in zip(theirs.boxes[:10], theirs.scores[:10], theirs.labels[:10]):
            if (np.abs(theirs.scores - score) <= 1e-6).sum() > 1:
                continue  # tied scores: which of the tied boxes NMS keeps is arbitrary
            same = (ours.labels == label) & (np.abs(ours.boxes - box).max(axis=1) <= 1e-3)
            assert same.any(), f'PyTorch box {box} ({score:.5f}) has no {engine} twin'
            compared += 1
        assert compared >= 1
