"""Export a whole detector (pre-processing aside: network, box decoding, NMS) to ONNX with mmdeploy, for ONNX Runtime
and OpenVINO.

    python tools/deploy.py CONFIG CHECKPOINT OUT_DIR [--shape H W | --dynamic] [--backend openvino]
        [--int8 [--calib-images N] [--int8-depthwise]] [--image IMAGE] [--cfg-options KEY=VALUE ...]

Runs in the mmdeploy stack (``tools/setup_env.sh deploy`` builds ``.venv-deploy``: torch 2.1.2, mmdeploy 1.3.1,
onnx 1.17.0, protobuf 3.20.2; mmdeploy's protobuf pin keeps it apart from the test stacks). OUT_DIR gets:

* ``end2end.onnx``: input ``input`` (N, 3, H, W), the image after the test pipeline (resized, normalised,
  padded); outputs ``dets`` (N, K, 5: x1, y1, x2, y2 in the input's pixels, score) and ``labels`` (N, K).
  Standard ONNX ops only (NonMaxSuppression, RoiAlign for two-stage detectors): plain ONNX Runtime runs it.
  The NMS settings are the model config's ``test_cfg`` (score_thr, nms iou_threshold, nms_pre, max_per_img).
* mmdeploy's SDK description (``deploy.json``, ``pipeline.json``, ``detail.json``) and ``mmghost.json`` (class
  names; whether the model's box coder clips boxes to the image):
  everything ``mmghost.deploy.Detector`` (numpy + ONNX Runtime, no torch) and ``tools/infer_onnx.py`` need.
* with ``--backend openvino``: ``end2end.xml`` and ``end2end.bin``, OpenVINO's IR of ``end2end.onnx`` (fp32 weights,
  the same input shapes: dynamic, or fixed by ``--shape``), converted by ``openvino.convert_model``.
  ``mmghost.deploy.Detector(..., engine='openvino')`` runs it. mmdeploy 1.3.1's own OpenVINO backend cannot be
  used with a current openvino (docs/deploy.md#openvino).
* with ``--int8``: ``end2end_int8.onnx``, ONNX Runtime static quantisation of the convs (QLinearConv, int8
  weights per channel, uint8 activations) calibrated on ``--calib-images`` images of the config's training set.
  The depthwise convs and the heads' output convs stay float unless ``--int8-depthwise`` /
  ``--int8-output-convs`` (quantising them cost accuracy for no speed on the demo; docs/deploy.md).

Shapes: by default (``--dynamic``) any batch and image size, each image resized keeping its aspect ratio as in
the test pipeline, as accurate as the PyTorch model. ``--shape H W`` fixes the input size; mmdeploy then
stretches every image to it (its static-shape convention), which changes objects' aspect ratios.

The checkpoint is read by mmghost's restricted unpickler (mmdeploy's own ``torch2onnx`` would unpickle it
without restriction); the backbone is put in deploy mode (batch norms folded) before export.
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
import tempfile
import time
import warnings
from typing import List, Optional, Sequence

import numpy as np
from mmengine.config import DictAction

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:  # run as `python tools/deploy.py` from a checkout without an install
    sys.path.insert(0, ROOT)

from mmghost.deploy import Detector, Preprocess  # noqa: E402  (torch-free)
from mmghost.deploy.detector import META_FILE, MODEL_FILES, OPENVINO_FILES, read_image  # noqa: E402
from mmghost.utils import UserFacingError, exit_on_user_error  # noqa: E402

DEPLOY_CONFIGS = {
    'dynamic': osp.join(ROOT, 'configs', 'deploy', 'detection_onnxruntime_dynamic.py'),
    'static': osp.join(ROOT, 'configs', 'deploy', 'detection_onnxruntime_static.py'),
}
# Dataset wrappers whose `dataset` holds the images (for the calibration set).
DATASET_WRAPPERS = ('RepeatDataset', 'ClassBalancedDataset', 'MultiImageMixDataset')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export a detector end to end (NMS included) with mmdeploy')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='detector checkpoint')
    parser.add_argument('out_dir', help='folder for the ONNX model and its description')
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                       help='fixed input size (images are stretched to it; mmdeploy static config)')
    shape.add_argument('--dynamic', action='store_true',
                       help='any batch and image size, aspect ratio kept (the default)')
    parser.add_argument('--backend', default='onnxruntime', choices=['onnxruntime', 'openvino'],
                        help='onnxruntime: end2end.onnx (the default); openvino: also its OpenVINO IR end2end.xml')
    parser.add_argument('--int8', action='store_true', help='also write end2end_int8.onnx (static quantisation)')
    parser.add_argument('--calib-images', type=int, default=64, metavar='N',
                        help='training images used to calibrate --int8 (default 64)')
    parser.add_argument('--int8-depthwise', action='store_true',
                        help='quantise the depthwise convs too (default: they stay float)')
    parser.add_argument('--int8-output-convs', action='store_true',
                        help="quantise the heads' output convs too (default: they stay float)")
    parser.add_argument('--image', help='image used to trace the model (default: a random one of the test scale)')
    parser.add_argument('--device', default='cpu', help='device for tracing (default cpu)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override settings of the config')
    args = parser.parse_args(argv)
    if args.shape is not None and min(args.shape) < 32:
        parser.error('--shape must be at least 32 pixels')
    if args.calib_images < 1:
        parser.error('--calib-images must be at least 1')
    if args.image is not None and not osp.isfile(args.image):
        parser.error(f'image not found: {args.image}')
    return args


def load_deploy_config(shape: Optional[Sequence[int]] = None):
    """Our mmdeploy config: dynamic, or static with ``shape`` = (H, W)."""
    from mmengine.config import Config
    deploy_cfg = Config.fromfile(DEPLOY_CONFIGS['dynamic' if shape is None else 'static'])
    if shape is not None:
        deploy_cfg.onnx_config.input_shape = [int(shape[1]), int(shape[0])]  # mmdeploy's order: W, H
    return deploy_cfg


def pipeline_scale(model_cfg) -> List[int]:
    """(W, H) of the test pipeline's Resize."""
    pipeline = model_cfg.test_dataloader.dataset.get('pipeline') or model_cfg.get('test_pipeline', [])
    for transform in pipeline:
        if transform.get('type') == 'Resize':
            return list(transform['scale'])
    raise UserFacingError('the config\'s test pipeline has no Resize step; give --shape or --image')


def export(config: str, checkpoint: str, out_dir: str, shape: Optional[Sequence[int]] = None,
           image: Optional[str] = None, device: str = 'cpu', cfg_options: Optional[dict] = None) -> dict:
    """Write ``end2end.onnx``, mmdeploy's SDK files and ``mmghost.json`` to ``out_dir``; returns a summary."""
    import torch
    from mmdeploy.apis import build_task_processor
    from mmdeploy.apis.core.pipeline_manager import no_mp
    from mmdeploy.apis.onnx import export as onnx_export
    from mmdeploy.backend.sdk.export_info import export2SDK
    from mmdeploy.utils import get_dynamic_axes, get_input_shape, get_onnx_config

    import mmghost  # noqa: F401  registers the GhostNet family
    from mmengine.model import revert_sync_batchnorm

    from mmghost.engine import build_detector, load_config, load_detector_checkpoint
    from mmghost.models import deploy_model

    start = time.perf_counter()
    model_cfg = load_config(config, cfg_options)
    model_cfg.model.backbone.init_cfg = None  # every weight comes from the checkpoint
    deploy_cfg = load_deploy_config(shape)
    os.makedirs(out_dir, exist_ok=True)

    # create_input() rewrites the pipeline it is given (an array image gets LoadImageFromNDArray); the SDK
    # description must keep the file-reading pipeline, so it gets its own copy.
    task_processor = build_task_processor(copy.deepcopy(model_cfg), deploy_cfg, device)
    # What mmdeploy's build_pytorch_model does, with the checkpoint read by our safe loader.
    model = revert_sync_batchnorm(build_detector(model_cfg))
    checkpoint_data = load_detector_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    # Family backbones: norms folded (V3 re-parameterised); GhostConv layers anywhere: their norms folded.
    deploy_model(model, channels_last=False)  # memory layout means nothing in an ONNX graph
    model = model.to(device).eval()

    if image is None:
        width, height = shape[::-1] if shape is not None else pipeline_scale(model_cfg)
        image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    input_shape = get_input_shape(deploy_cfg)
    data, model_inputs = task_processor.create_input(image, input_shape,
                                                      data_preprocessor=getattr(model, 'data_preprocessor', None))
    if isinstance(model_inputs, list) and len(model_inputs) == 1:
        model_inputs = model_inputs[0]

    onnx_cfg = get_onnx_config(deploy_cfg)
    names = onnx_cfg['input_names'] + onnx_cfg['output_names']
    with warnings.catch_warnings(), no_mp(), torch.no_grad():
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        onnx_export(model, model_inputs,
                    input_metas={'data_samples': data['data_samples'], 'mode': 'predict'},
                    output_path_prefix=osp.join(out_dir, osp.splitext(onnx_cfg['save_file'])[0]),
                    backend='onnxruntime', input_names=onnx_cfg['input_names'],
                    output_names=onnx_cfg['output_names'], context_info=dict(deploy_cfg=deploy_cfg),
                    opset_version=onnx_cfg.get('opset_version', 11),
                    dynamic_axes=get_dynamic_axes(deploy_cfg, names),
                    keep_initializers_as_inputs=onnx_cfg.get('keep_initializers_as_inputs', False),
                    optimize=False)  # mmdeploy's optimiser needs its compiled torchscript extension
    export2SDK(deploy_cfg, model_cfg, out_dir, pth=osp.abspath(checkpoint), device=device)

    classes = _classes(model_cfg, checkpoint_data)
    with open(osp.join(out_dir, META_FILE), 'w') as f:
        json.dump(dict(classes=classes, clip_border=_clip_border(model)), f)
    onnx_file = osp.join(out_dir, MODEL_FILES['fp32'])
    return dict(onnx=onnx_file, seconds=round(time.perf_counter() - start, 1),
                megabytes=round(osp.getsize(onnx_file) / 2**20, 1), num_classes=len(classes),
                input_shape=None if shape is None else list(shape), ops=_op_types(onnx_file))


def _classes(model_cfg, checkpoint_data: dict) -> List[str]:
    """Class names: the checkpoint's dataset_meta, else the config's test dataset (metainfo or its class)."""
    meta = (checkpoint_data.get('meta') or {}).get('dataset_meta') or {}
    classes = meta.get('classes') or meta.get('CLASSES')
    if classes:
        return list(classes)
    dataset = model_cfg.test_dataloader.dataset
    classes = (dataset.get('metainfo') or {}).get('classes')
    if classes:
        return list(classes)
    from mmdet.registry import DATASETS
    import mmdet.datasets  # noqa: F401  registers the dataset classes
    return list(DATASETS.get(dataset.type).METAINFO['classes'])


def _clip_border(model) -> bool:
    """Whether the box coder of the detector's last stage clips boxes to the image (mmdet's DeltaXYWH coders do
    by default; YOLOv3's YOLOBBoxCoder does not)."""
    import torch
    head = getattr(getattr(model, 'roi_head', None), 'bbox_head', None) or getattr(model, 'bbox_head', None)
    if isinstance(head, torch.nn.ModuleList):  # Cascade R-CNN: the last stage
        head = head[-1]
    coder = getattr(head, 'bbox_coder', None)
    return bool(getattr(coder, 'clip_border', False)) if coder is not None else True


def _op_types(onnx_file: str) -> List[str]:
    import onnx
    return sorted({node.op_type for node in onnx.load(onnx_file, load_external_data=False).graph.node})


def to_openvino(model_dir: str) -> dict:
    """Write ``end2end.xml``/``end2end.bin``: OpenVINO's IR of ``end2end.onnx``, input shapes as exported.

    ``openvino.save_model`` would store the weights in fp16 by default; they stay fp32 so that the IR computes
    what the ONNX graph does (``compress_to_fp16=False``).
    """
    import openvino as ov
    start = time.perf_counter()
    xml = osp.join(model_dir, OPENVINO_FILES['fp32'])
    model = ov.convert_model(osp.join(model_dir, MODEL_FILES['fp32']))
    ov.save_model(model, xml, compress_to_fp16=False)
    return dict(xml=xml, seconds=round(time.perf_counter() - start, 1), openvino=ov.__version__,
                megabytes=round(osp.getsize(osp.splitext(xml)[0] + '.bin') / 2**20, 1),
                dynamic=model.is_dynamic())


def calibration_images(config: str, count: int, cfg_options: Optional[dict] = None) -> List[str]:
    """``count`` image files spread evenly over the config's training set (COCO-style annotation file)."""
    from mmghost.engine import load_config
    cfg = load_config(config, cfg_options)
    dataset = cfg.train_dataloader.dataset
    while dataset.get('type') in DATASET_WRAPPERS:
        dataset = dataset.dataset
    if dataset.get('type') == 'ConcatDataset':
        dataset = dataset.datasets[0]
    data_root = dataset.get('data_root', '') or ''
    ann_file = osp.join(data_root, dataset.ann_file)
    if not osp.isfile(ann_file):
        raise UserFacingError(f'the training annotations {ann_file} are not here; --int8 calibrates on training images')
    with open(ann_file) as f:
        images = json.load(f)['images']
    prefix = osp.join(data_root, (dataset.get('data_prefix') or {}).get('img', ''))
    picks = np.linspace(0, len(images) - 1, num=min(count, len(images))).round().astype(int)
    return [osp.join(prefix, images[i]['file_name']) for i in picks]


def _convs(model):
    return [node for node in model.graph.node if node.op_type == 'Conv']


def depthwise_conv_nodes(model) -> List[str]:
    """Names of the Conv nodes of ``model`` (an ``onnx.ModelProto``) whose group equals their input channels."""
    weights = {init.name: init for init in model.graph.initializer}
    names = []
    for node in _convs(model):
        if len(node.input) < 2 or node.input[1] not in weights:
            continue
        group = next((a.i for a in node.attribute if a.name == 'group'), 1)
        if group > 1 and weights[node.input[1]].dims[1] == 1:  # weight (C_out, C_in / group, kH, kW)
            names.append(node.name)
    return names


def output_conv_nodes(model) -> List[str]:
    """Names of the Conv nodes of ``model`` after which no Conv or Gemm follows: the heads' last layers, which
    produce the class logits and box deltas themselves (RetinaNet's retina_cls/retina_reg, YOLOv3's convs_pred)."""
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    # ONNX lists nodes in topological order, so one backward pass settles for every node whether a layer
    # (Conv, Gemm, MatMul) consumes what it computes, directly or further down.
    feeds_layer = {}
    for node in reversed(model.graph.node):
        feeds_layer[id(node)] = any(nxt.op_type in ('Conv', 'Gemm', 'MatMul') or feeds_layer.get(id(nxt), False)
                                    for output in node.output for nxt in consumers.get(output, []))
    return [node.name for node in _convs(model) if not feeds_layer[id(node)]]


def _inline_identity_initializers(model) -> int:
    """Replace, in ``model``, every ``Identity`` of an initializer by a copy of the initializer.

    torch's exporter stores equal tensors once and feeds the other users through Identity nodes (folded batch
    norms with equal statistics give equal conv biases). onnxruntime's quantiser needs a conv's weight and bias to
    be initializers of its own: a bias shared by a quantised conv and a float one cannot be both int32 and float.
    Returns how many Identity nodes were replaced.
    """
    import onnx
    initializers = {init.name: init for init in model.graph.initializer}
    graph_outputs = {output.name for output in model.graph.output}
    copies = []
    for node in model.graph.node:
        if node.op_type == 'Identity' and node.input[0] in initializers and node.output[0] not in graph_outputs:
            copy_ = onnx.TensorProto()
            copy_.CopyFrom(initializers[node.input[0]])
            copy_.name = node.output[0]
            copies.append(copy_)
    replaced = {tensor.name for tensor in copies}
    kept = [node for node in model.graph.node if not (node.op_type == 'Identity' and node.output[0] in replaced)]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    model.graph.initializer.extend(copies)
    return len(copies)


def quantize(model_dir: str, images: Sequence[str], depthwise: bool = False, output_convs: bool = False) -> dict:
    """Write ``end2end_int8.onnx``: ONNX Runtime static quantisation of the convs (QLinearConv: int8 weights per
    output channel, uint8 activations, min/max calibration on ``images`` preprocessed exactly as at inference by
    ``mmghost.deploy.Preprocess``).

    By default the depthwise convs and the heads' output convs stay float: on the demo detector quantising the
    depthwise convs cost 0.009 mAP, the output convs 0.008 (docs/deploy.md). ``depthwise``/``output_convs``
    quantise them too. QLinearConv (not QDQ) because mmdeploy exports opset 11, where DequantizeLinear has no
    per-channel axis.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    start = time.perf_counter()
    with open(osp.join(model_dir, 'pipeline.json')) as f:
        preprocess = Preprocess.from_pipeline(json.load(f))
    fp32 = osp.join(model_dir, MODEL_FILES['fp32'])
    int8 = osp.join(model_dir, MODEL_FILES['int8'])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.files = iter(images)

        def get_next(self):
            path = next(self.files, None)
            return None if path is None else {'input': preprocess(read_image(path))[0]}

    model = onnx.load(fp32)
    float_depthwise = [] if depthwise else depthwise_conv_nodes(model)
    float_outputs = [] if output_convs else output_conv_nodes(model)
    _inline_identity_initializers(model)
    with tempfile.TemporaryDirectory() as tmp:
        source = osp.join(tmp, 'end2end.onnx')
        onnx.save(model, source)
        quantize_static(source, int8, Reader(), quant_format=QuantFormat.QOperator, op_types_to_quantize=['Conv'],
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=float_depthwise + float_outputs)
    return dict(onnx=int8, seconds=round(time.perf_counter() - start, 1), calibration_images=len(images),
                float_depthwise_convs=len(float_depthwise), float_output_convs=len(float_outputs),
                megabytes=round(osp.getsize(int8) / 2**20, 1))


def main(argv=None):
    args = parse_args(argv)
    summary = export(args.config, args.checkpoint, args.out_dir, shape=args.shape, image=args.image,
                     device=args.device, cfg_options=args.cfg_options)
    kind = f'static {args.shape[0]}x{args.shape[1]}' if args.shape else 'dynamic shapes'
    print(f'{summary["onnx"]}: {summary["megabytes"]} MB, {kind}, {summary["num_classes"]} classes, exported in '
          f'{summary["seconds"]} s; ops: {", ".join(summary["ops"])}')
    if args.backend == 'openvino':
        result = to_openvino(args.out_dir)
        print(f'{result["xml"]}: OpenVINO {result["openvino"]} IR, {result["megabytes"]} MB of fp32 weights, '
              f'{"dynamic" if result["dynamic"] else "static"} input, converted in {result["seconds"]} s')
    if args.int8:
        images = calibration_images(args.config, args.calib_images, args.cfg_options)
        result = quantize(args.out_dir, images, depthwise=args.int8_depthwise,
                          output_convs=args.int8_output_convs)
        print(f'{result["onnx"]}: {result["megabytes"]} MB, calibrated on {result["calibration_images"]} training '
              f'images in {result["seconds"]} s; kept float: {result["float_depthwise_convs"]} depthwise convs, '
              f'{result["float_output_convs"]} head output convs')
    # A first run in the torch-free runtime: the folder is complete and the graph runs.
    image = args.image if args.image is not None else np.full((256, 320, 3), 114, dtype=np.uint8)
    for engine, name in (('onnxruntime', 'ONNX Runtime'), ('openvino', 'OpenVINO')):
        if engine == 'onnxruntime' or args.backend == engine:
            detections = Detector(args.out_dir, engine=engine)(image)
            print(f'{name} ran {args.out_dir} ({len(detections.boxes)} detections on the '
                  f'{"given" if args.image else "blank test"} image)')


if __name__ == '__main__':
    with exit_on_user_error():
        main()
