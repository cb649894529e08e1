"""COCO mAP of an exported detector (``tools/deploy.py``) on a config's test set, with mmdet's own metric.

    python tools/test_onnx.py CONFIG MODEL_DIR [--precision fp32|int8] [--checkpoint CKPT] [--limit N]
        [--threads T] [--out results.json]

Each test image is run through ``mmghost.deploy.Detector`` (ONNX Runtime; the same code ``tools/infer_onnx.py``
and a torch-free deployment use) and the detections go to the config's ``test_evaluator`` (mmdet's CocoMetric),
exactly as ``tools/test.py`` scores the PyTorch model. With ``--checkpoint`` the PyTorch model is scored too, image
by image through ``mmdet.apis.inference_detector``, and the difference is printed: the check that export kept
the accuracy. Runs where mmdet is installed (``.venv-deploy`` or the test stacks); the runtime itself needs none.
"""
import argparse
import json
import os.path as osp
import sys
import time

import numpy as np
from mmengine.config import DictAction

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:  # run as `python tools/test_onnx.py` from a checkout without an install
    sys.path.insert(0, ROOT)

from mmghost.deploy import Detections, Detector  # noqa: E402
from mmghost.utils import exit_on_user_error  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='COCO mAP of an exported ONNX detector (and of its checkpoint)')
    parser.add_argument('config', help='the model config the folder was exported from')
    parser.add_argument('model_dir', help='folder written by tools/deploy.py')
    parser.add_argument('--precision', default='fp32', choices=['fp32', 'int8'], help='which ONNX file to score')
    parser.add_argument('--checkpoint', help='also score this PyTorch checkpoint and print the difference')
    parser.add_argument('--limit', type=int, help='score only the first N test images')
    parser.add_argument('--threads', type=int, help='ONNX Runtime threads (default: one per core)')
    parser.add_argument('--out', help='write the metrics as JSON here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override settings of the config')
    return parser.parse_args(argv)


def dataset_images(cfg, limit=None):
    """The test set's (img_path, img_id, ori_shape) without running its pipeline, and its metainfo."""
    from mmengine.registry import init_default_scope

    from mmdet.registry import DATASETS
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset_cfg = cfg.test_dataloader.dataset.copy()
    dataset_cfg['pipeline'] = []
    dataset = DATASETS.build(dataset_cfg)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    infos = [dataset.get_data_info(i) for i in range(count)]
    return [(info['img_path'], info['img_id'], (info['height'], info['width'])) for info in infos], dataset.metainfo


def score(cfg, images, metainfo, predict) -> dict:
    """Run ``predict(img_path) -> Detections`` on every image and return the config's test_evaluator metrics."""
    import torch

    from mmdet.registry import METRICS
    evaluator_cfg = cfg.test_evaluator
    if isinstance(evaluator_cfg, (list, tuple)):
        evaluator_cfg = evaluator_cfg[0]
    metric = METRICS.build(evaluator_cfg)
    metric.dataset_meta = metainfo
    for path, img_id, ori_shape in images:
        detections = predict(path)
        metric.process({}, [dict(img_id=img_id, ori_shape=ori_shape, pred_instances=dict(
            bboxes=torch.from_numpy(np.ascontiguousarray(detections.boxes)),
            scores=torch.from_numpy(np.ascontiguousarray(detections.scores)),
            labels=torch.from_numpy(np.ascontiguousarray(detections.labels))))])
    return metric.evaluate(len(images))


def pytorch_predictor(cfg, checkpoint):
    """``path -> Detections`` with the PyTorch model (mmdet's inference_detector, eval mode)."""
    from mmdet.apis import inference_detector

    import mmghost  # noqa: F401  registers the GhostNet family
    from mmghost.engine import init_detector
    cfg = cfg.copy()
    cfg.model.backbone.init_cfg = None  # every weight comes from the checkpoint
    model = init_detector(cfg, checkpoint, strict=True)

    def predict(path):
        result = inference_detector(model, path).pred_instances
        return Detections(result.bboxes.numpy(), result.scores.numpy(), result.labels.numpy())
    return predict


def main(argv=None):
    args = parse_args(argv)
    from mmghost.engine import load_config
    cfg = load_config(args.config, args.cfg_options)
    images, metainfo = dataset_images(cfg, args.limit)
    detector = Detector(args.model_dir, precision=args.precision, num_threads=args.threads)

    start = time.perf_counter()
    results = {f'onnx_{args.precision}': score(cfg, images, metainfo, detector)}
    seconds = {f'onnx_{args.precision}': round(time.perf_counter() - start, 1)}
    if args.checkpoint:
        start = time.perf_counter()
        results['pytorch'] = score(cfg, images, metainfo, pytorch_predictor(cfg, args.checkpoint))
        seconds['pytorch'] = round(time.perf_counter() - start, 1)

    key = next((k for k in results[f'onnx_{args.precision}'] if k.endswith('bbox_mAP')), None)
    summary = dict(config=args.config, model_dir=args.model_dir, images=len(images), metrics=results,
                   seconds=seconds)
    for name, metrics in results.items():
        print(f'{name}: {key} {metrics.get(key)} on {len(images)} images ({seconds[name]} s)')
    if args.checkpoint and key:
        summary['map_difference'] = round(results[f'onnx_{args.precision}'][key] - results['pytorch'][key], 4)
        print(f'mAP difference ONNX - PyTorch: {summary["map_difference"]:+.4f}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(summary, f, indent=1)
    return summary


if __name__ == '__main__':
    with exit_on_user_error():
        main()
