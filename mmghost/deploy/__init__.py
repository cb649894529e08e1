"""Run an exported detector without PyTorch or OpenMMLab: numpy, OpenCV and ONNX Runtime or OpenVINO only.

``tools/deploy.py`` writes a model folder with mmdeploy (``end2end.onnx`` holding the whole detector, NMS
included, plus mmdeploy's ``pipeline.json``/``deploy.json``/``detail.json`` and our ``mmghost.json``: class names,
whether boxes are clipped)::

    from mmghost.deploy import Detector
    detector = Detector('work_dirs/deploy/retinanet')
    boxes, scores, labels = detector('street.jpg')   # boxes: (N, 4) x1, y1, x2, y2 in the image's pixels
    detector = Detector('work_dirs/deploy/retinanet', engine='openvino')   # the same, run by OpenVINO

Nothing here imports torch, mmengine, mmcv or mmdet, so this package runs on a machine that has none of them
(``pip install --no-deps mmghost`` plus ``requirements/runtime.txt``).
"""
from .detector import Detections, Detector
from .preprocess import Preprocess

__all__ = ['Detector', 'Detections', 'Preprocess']
