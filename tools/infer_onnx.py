"""Detect objects with an exported detector, without PyTorch or OpenMMLab: a PNG with the boxes and a JSON per image.

    python tools/infer_onnx.py MODEL_DIR IMAGE [IMAGE ...] [--out-dir DIR] [--score-thr 0.3] [--precision int8]
        [--threads T] [--engine openvino]

MODEL_DIR is a folder written by ``tools/deploy.py``. Needs only numpy, OpenCV and ONNX Runtime or OpenVINO
(``--engine``; ``requirements/runtime.txt``; mmghost installed with ``--no-deps``): this script and ``mmghost.deploy`` import
nothing from torch, mmengine, mmcv or mmdet. Output as ``tools/infer.py``: ``DIR/<name>.png`` with the boxes,
class names and scores at or above ``--score-thr``, and ``DIR/<name>.json`` with every detection (box x1, y1, x2,
y2 in image pixels, score, label, class), best first.
"""
import argparse
import colorsys
import json
import os
import os.path as osp
import sys
import time

import cv2
import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:  # run as `python tools/infer_onnx.py` from a checkout without an install
    sys.path.insert(0, ROOT)

from mmghost.deploy import Detections, Detector  # noqa: E402
from mmghost.deploy.detector import ENGINES, read_image  # noqa: E402
from mmghost.utils import exit_on_user_error  # noqa: E402  (errors.py only: no torch)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Detect objects with an exported ONNX detector (no PyTorch)')
    parser.add_argument('model_dir', help='folder written by tools/deploy.py')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--out-dir', default='outputs', help='folder for the PNG and JSON files')
    parser.add_argument('--score-thr', type=float, default=0.3, help='draw boxes with at least this score')
    parser.add_argument('--precision', default='fp32', choices=['fp32', 'int8'],
                        help='end2end.onnx or end2end_int8.onnx (tools/deploy.py --int8)')
    parser.add_argument('--threads', type=int, help="the engine's threads (default: one per core)")
    parser.add_argument('--engine', default='onnxruntime', choices=sorted(ENGINES),
                        help='runtime of the network (default onnxruntime; openvino: fp32 only)')
    args = parser.parse_args(argv)
    missing = [p for p in args.images if not osp.isfile(p)]
    if missing:
        parser.error(f'image file(s) not found: {", ".join(missing)}')
    if not osp.isdir(args.model_dir):
        parser.error(f'model folder not found: {args.model_dir}')
    if args.engine == 'openvino' and args.precision != 'fp32':
        parser.error('--engine openvino runs --precision fp32 only')
    return args


def class_colour(label: int) -> tuple:
    """A distinct, stable BGR colour per class (golden-ratio hues)."""
    red, green, blue = colorsys.hsv_to_rgb((label * 0.618033988749895) % 1.0, 0.85, 0.95)
    return int(blue * 255), int(green * 255), int(red * 255)


def draw(image: np.ndarray, detections: Detections, classes, score_thr: float) -> np.ndarray:
    """A copy of the BGR ``image`` with the detections at or above ``score_thr`` drawn, best on top."""
    canvas = image.copy()
    thickness = max(1, round(min(image.shape[:2]) / 300))
    order = np.argsort(detections.scores, kind='stable')  # lowest first, so the best are drawn last (on top)
    for i in order:
        score = float(detections.scores[i])
        if score < score_thr:
            continue
        label = int(detections.labels[i])
        x1, y1, x2, y2 = (int(round(v)) for v in detections.boxes[i])
        colour = class_colour(label)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        name = classes[label] if classes and label < len(classes) else str(label)
        text = f'{name} {score:.2f}'
        (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        top = max(y1 - height - baseline, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + width, top + height + baseline), colour, -1)
        cv2.putText(canvas, text, (x1, top + height), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def main(argv=None):
    args = parse_args(argv)
    detector = Detector(args.model_dir, precision=args.precision, num_threads=args.threads, engine=args.engine)
    os.makedirs(args.out_dir, exist_ok=True)
    for path in args.images:
        image = read_image(path)
        start = time.perf_counter()
        detections = detector(image)
        milliseconds = (time.perf_counter() - start) * 1000
        name = osp.splitext(osp.basename(path))[0]
        cv2.imwrite(osp.join(args.out_dir, f'{name}.png'), draw(image, detections, detector.classes, args.score_thr))
        with open(osp.join(args.out_dir, f'{name}.json'), 'w') as f:
            json.dump(dict(image=path, detections=detections.to_json(detector.classes)), f, indent=1)
        shown = int((detections.scores >= args.score_thr).sum())
        print(f'{path}: {shown} detections with score >= {args.score_thr} in {milliseconds:.1f} ms '
              f'-> {args.out_dir}/{name}.png')


if __name__ == '__main__':
    with exit_on_user_error():
        main()
