"""mmghost.deploy's preprocessing and box mapping against mmdet's own (the torch-free runtime's correctness).

The end-to-end checks (export, accuracy, running without torch) are in tests/deploy_stack (the mmdeploy stack).
"""
import json

import cv2
import numpy as np
import pytest
import torch

from mmghost.deploy import Detections, Preprocess
from mmghost.deploy.detector import read_image, to_image_pixels

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def pipeline_json(resize):
    """A pipeline.json as mmdeploy 1.3.1 writes it for an mmdet detector (tools/deploy.py output)."""
    return {'pipeline': {'input': ['img'], 'output': ['post_output'], 'tasks': [
        {'type': 'Task', 'module': 'Transform', 'name': 'Preprocess', 'input': ['img'], 'output': ['prep_output'],
         'transforms': [{'type': 'LoadImageFromFile'}, dict(type='Resize', **resize),
                        {'type': 'Normalize', 'to_rgb': True, 'mean': MEAN, 'std': STD},
                        {'type': 'Pad', 'size_divisor': 32}, {'type': 'DefaultFormatBundle'},
                        {'type': 'Collect', 'keys': ['img'], 'meta_keys': ['img_shape', 'scale_factor']}]},
        {'name': 'retinanet', 'type': 'Task', 'module': 'Net', 'input': ['prep_output'], 'output': ['infer_output']},
        {'type': 'Task', 'module': 'mmdet', 'name': 'postprocess', 'component': 'ResizeBBox',
         'params': {'score_thr': 0.05}, 'input': ['prep_output', 'infer_output'], 'output': ['post_output']}]}}


def mmdet_input(path, scale, keep_ratio):
    """What mmdet feeds the network: its test pipeline, then DetDataPreprocessor (normalise, pad to 32)."""
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope

    from mmdet.models.data_preprocessors import DetDataPreprocessor
    init_default_scope('mmdet')
    pipeline = Compose([dict(type='LoadImageFromFile'), dict(type='Resize', scale=scale, keep_ratio=keep_ratio),
                        dict(type='PackDetInputs', meta_keys=('ori_shape', 'img_shape', 'scale_factor'))])
    data = pipeline(dict(img_path=path, img_id=0))
    preprocessor = DetDataPreprocessor(mean=MEAN, std=STD, bgr_to_rgb=True, pad_size_divisor=32)
    batch = preprocessor(dict(inputs=[data['inputs']], data_samples=[data['data_samples']]), False)
    return batch['inputs'].numpy(), batch['data_samples'][0].metainfo


@pytest.fixture
def odd_image(tmp_path):
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8), (173, 121), interpolation=cv2.INTER_CUBIC)
    path = tmp_path / 'odd.png'
    cv2.imwrite(str(path), image)
    return str(path)


@pytest.mark.parametrize('keep_ratio', [True, False], ids=['keep-ratio', 'stretch'])
def test_preprocess_gives_the_network_input_mmdet_gives(odd_image, keep_ratio):
    scale = (256, 192)
    preprocess = Preprocess.from_pipeline(pipeline_json(dict(keep_ratio=keep_ratio, size=list(scale))))
    ours, meta = preprocess(read_image(odd_image))
    theirs, their_meta = mmdet_input(odd_image, scale, keep_ratio)
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)
    assert meta['img_shape'] == tuple(their_meta['img_shape'])
    assert meta['ori_shape'] == tuple(their_meta['ori_shape'])
    np.testing.assert_allclose(meta['scale_factor'], their_meta['scale_factor'], rtol=1e-12)


def test_preprocess_pads_to_a_multiple_of_the_size_divisor_with_zeros(odd_image):
    preprocess = Preprocess.from_pipeline(pipeline_json(dict(keep_ratio=True, size=[200, 200])))
    batch, meta = preprocess(read_image(odd_image))
    height, width = meta['img_shape']
    assert (height, width) == (140, 200)  # 173 x 121 scaled by 200 / 173, rounded as mmcv.rescale_size
    assert batch.shape == (1, 3, 160, 224)
    assert not batch[..., height:, :].any() and not batch[..., :, width:].any()


def test_preprocess_refuses_a_transform_it_does_not_implement():
    pipeline = pipeline_json(dict(keep_ratio=True, size=[64, 64]))
    pipeline['pipeline']['tasks'][0]['transforms'].insert(2, {'type': 'CenterCrop', 'crop_size': 32})
    with pytest.raises(ValueError, match='CenterCrop'):
        Preprocess.from_pipeline(pipeline)


def test_boxes_go_back_to_image_pixels_as_mmdet_rescales_them():
    """mmdet clips decoded boxes to the resized image, then divides by the scale factors."""
    meta = dict(ori_shape=(121, 173), scale_factor=(200 / 173, 140 / 121))
    dets = np.array([[10, 20, 100, 130, 0.9],      # runs past the bottom of the resized image (140)
                     [-5, 3, 210, 50, 0.5],        # past both sides
                     [30, 30, 60, 60, 0.04],       # below score_thr
                     [30, 30, 60, 60, 0.7]], dtype=np.float32)
    labels = np.array([1, 0, 2, -1])  # -1: an empty slot
    got = to_image_pixels(dets, labels, meta, score_thr=0.05)
    resized = torch.from_numpy(dets[:2, :4].copy())
    resized[:, 0::2] = resized[:, 0::2].clamp(0, 200)
    resized[:, 1::2] = resized[:, 1::2].clamp(0, 140)
    expected = resized / torch.tensor(meta['scale_factor']).repeat(1, 2)
    np.testing.assert_allclose(got.boxes, expected.numpy(), rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(got.labels, [1, 0])
    np.testing.assert_allclose(got.scores, [0.9, 0.5])


def test_detections_to_json_lists_the_best_first_with_class_names():
    detections = Detections(np.array([[0, 0, 1, 1], [2, 2, 3.333, 3]], np.float32), np.array([0.2, 0.9], np.float32),
                            np.array([1, 0]))
    written = json.loads(json.dumps(detections.to_json(['circle', 'square'])))
    assert written == [dict(bbox=[2.0, 2.0, 3.33, 3.0], score=0.9, label=0, **{'class': 'circle'}),
                       dict(bbox=[0.0, 0.0, 1.0, 1.0], score=0.2, label=1, **{'class': 'square'})]


def test_read_image_says_which_file_it_cannot_decode(tmp_path):
    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'not an image')
    with pytest.raises(ValueError, match='bad.png'):
        read_image(str(bad))


def test_detector_refuses_an_unknown_engine_and_openvino_int8(tmp_path):
    from mmghost.deploy import Detector
    with pytest.raises(ValueError, match="engine must be one of \\['onnxruntime', 'openvino'\\]"):
        Detector(tmp_path, engine='tensorrt')
    with pytest.raises(ValueError, match="runs precision='fp32' only"):
        Detector(tmp_path, precision='int8', engine='openvino')
    with pytest.raises(ValueError, match="providers are ONNX Runtime's"):
        Detector(tmp_path, engine='openvino', providers=['CPUExecutionProvider'])


def test_openvino_engine_reads_the_ir_where_there_is_one_else_the_onnx_file(tmp_path):
    from mmghost.deploy.engines import model_file
    assert model_file(str(tmp_path), 'openvino', 'fp32') == str(tmp_path / 'end2end.onnx')
    (tmp_path / 'end2end.xml').write_text('<net/>')
    assert model_file(str(tmp_path), 'openvino', 'fp32') == str(tmp_path / 'end2end.xml')
    assert model_file(str(tmp_path), 'onnxruntime', 'fp32') == str(tmp_path / 'end2end.onnx')
    assert model_file(str(tmp_path), 'onnxruntime', 'int8') == str(tmp_path / 'end2end_int8.onnx')
