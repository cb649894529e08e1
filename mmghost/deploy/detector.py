"""``Detector``: an mmdeploy end-to-end detector in ONNX Runtime or OpenVINO, from image file to boxes in its pixels."""
import json
import os
import os.path as osp
from typing import List, NamedTuple, Optional, Sequence, Union

import cv2
import numpy as np

from .engines import ENGINES, MODEL_FILES, OPENVINO_FILES, model_file  # noqa: F401  (tools import them from here)
from .preprocess import Preprocess

# What tools/deploy.py writes besides mmdeploy's files: {"classes": [names, index = label], "clip_border": bool}.
# clip_border: whether the model's box coder clips boxes to the image (RetinaNet, SSD, Faster R-CNN: yes;
# YOLOv3: no), so that the runtime clips exactly where mmdet does.
META_FILE = 'mmghost.json'
# The outputs of mmdeploy's end-to-end detector graph, first in its output list.
OUTPUT_NAMES = ['dets', 'labels']


class Detections(NamedTuple):
    """The detections of one image, best first: ``boxes`` (N, 4) float32 x1, y1, x2, y2 in the original image's
    pixels, ``scores`` (N,) float32, ``labels`` (N,) int64 class indices."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def to_json(self, classes: Optional[Sequence[str]] = None) -> List[dict]:
        """Plain JSON-able dicts, best first (the format of ``tools/infer.py`` and ``tools/infer_onnx.py``)."""
        order = np.argsort(-self.scores, kind='stable')
        return [
            dict(bbox=[round(float(v), 2) for v in self.boxes[i]], score=round(float(self.scores[i]), 4),
                 label=int(self.labels[i]),
                 **({'class': classes[int(self.labels[i])]} if classes is not None else {}))
            for i in order
        ]


def read_image(image: Union[str, os.PathLike, np.ndarray]) -> np.ndarray:
    """A BGR uint8 image from a file (decoded by OpenCV like mmcv's default backend) or an array as is."""
    if isinstance(image, np.ndarray):
        return image
    data = np.fromfile(os.fspath(image), dtype=np.uint8)
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if decoded is None:
        raise ValueError(f'cannot decode image {image}')
    return decoded


class Detector:
    """An object detector exported by ``tools/deploy.py`` (mmdeploy's end-to-end graph), run by ONNX Runtime or
    OpenVINO.

    ``Detector(model_dir)(image)`` reads the image, preprocesses it as the model's test pipeline does, runs the
    network (box decoding and NMS are inside the graph), and maps the boxes back to the original image
    (divided by the resize factors and, where the model's box coder clips, clipped to the image: mmdet's
    ``rescale=True``). Both engines get the same input and return the same outputs; only the network's runtime
    differs (``mmghost.deploy.engines``).

    Args:
        model_dir: A folder written by ``tools/deploy.py`` (``end2end.onnx``, ``pipeline.json``...).
        precision: ``'fp32'`` (``end2end.onnx``; OpenVINO: ``end2end.xml`` where ``--backend openvino`` wrote it)
            or ``'int8'`` (``end2end_int8.onnx``, from ``--int8``; ONNX Runtime only).
        num_threads: The engine's inference threads (None: its default, one per core).
        providers: ONNX Runtime execution providers (None: CPU). ONNX Runtime only.
        engine: ``'onnxruntime'`` (the default) or ``'openvino'`` (CPU, fp32, the graph compiled per input
            shape: :class:`~mmghost.deploy.engines.OpenVINOEngine`).
        engine_options: More keyword arguments of the engine's class (OpenVINO: ``static_shapes``,
            ``cache_size``).
    """

    def __init__(self, model_dir: Union[str, os.PathLike], precision: str = 'fp32',
                 num_threads: Optional[int] = None, providers: Optional[Sequence[str]] = None,
                 engine: str = 'onnxruntime', engine_options: Optional[dict] = None):
        self.model_dir = os.fspath(model_dir)
        network_file = model_file(self.model_dir, engine, precision)  # checks engine and precision
        if engine == 'openvino' and precision != 'fp32':
            raise ValueError("engine='openvino' runs precision='fp32' only: end2end_int8.onnx is ONNX Runtime's "
                             'quantisation (QLinearConv), not tested in OpenVINO')
        if providers is not None and engine != 'onnxruntime':
            raise ValueError(f"providers are ONNX Runtime's; engine={engine!r} takes none")
        pipeline_file = osp.join(self.model_dir, 'pipeline.json')
        for path in (network_file, pipeline_file):
            if not osp.isfile(path):
                raise FileNotFoundError(f'{path} not found: is {self.model_dir} a folder written by tools/deploy.py'
                                        f'{" --int8" if precision == "int8" else ""}?')
        with open(pipeline_file) as f:
            pipeline = json.load(f)
        self.preprocess = Preprocess.from_pipeline(pipeline)
        postprocess = next((t for t in pipeline['pipeline']['tasks'] if t.get('name') == 'postprocess'), {})
        self.score_thr = float(postprocess.get('params', {}).get('score_thr', 0.))
        meta_file = osp.join(self.model_dir, META_FILE)
        meta = {}
        if osp.isfile(meta_file):
            with open(meta_file) as f:
                meta = json.load(f)
        self.classes = meta.get('classes')
        self.clip_border = bool(meta.get('clip_border', True))
        kwargs = dict(engine_options or {}, num_threads=num_threads)
        if engine == 'onnxruntime':
            kwargs['providers'] = providers
        self.engine = ENGINES[engine](network_file, **kwargs)
        if self.engine.output_names[:2] != OUTPUT_NAMES:
            raise ValueError(f'{network_file} has outputs {self.engine.output_names}; expected an mmdeploy '
                             f'end-to-end detector with outputs {OUTPUT_NAMES}')

    def __call__(self, image: Union[str, os.PathLike, np.ndarray]) -> Detections:
        """Detect objects in one image (a file path, or a BGR uint8 array as ``cv2.imread`` gives)."""
        batch, meta = self.preprocess(read_image(image))
        dets, labels = self.engine(batch)[:2]
        return self.postprocess(dets[0], labels[0], meta)

    def postprocess(self, dets: np.ndarray, labels: np.ndarray, meta: dict) -> Detections:
        """Network outputs of one image (``dets`` (N, 5) in input pixels, ``labels`` (N,)) to ``Detections``."""
        return to_image_pixels(dets, labels, meta, self.score_thr, self.clip_border)


def to_image_pixels(dets: np.ndarray, labels: np.ndarray, meta: dict, score_thr: float = 0.,
                    clip_border: bool = True) -> Detections:
    """mmdet's ``rescale=True`` for one image's end-to-end outputs: keep real detections (label >= 0) scoring above
    ``score_thr``, divide the boxes by the resize factors ``meta['scale_factor']`` (w, h) and, if ``clip_border``,
    clip them to the original image ``meta['ori_shape']`` (h, w). mmdet's box coders clip to the resized image
    before scaling back; the resized image maps exactly onto the original one, so clipping after is the same."""
    keep = (labels >= 0) & (dets[:, 4] > score_thr)
    dets, labels = dets[keep], labels[keep]
    w_scale, h_scale = meta['scale_factor']
    boxes = dets[:, :4] / np.array([w_scale, h_scale, w_scale, h_scale], dtype=np.float32)
    if clip_border:
        height, width = meta['ori_shape']
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    return Detections(boxes.astype(np.float32), dets[:, 4].astype(np.float32), labels.astype(np.int64))
