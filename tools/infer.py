"""Detect objects in images: a PNG with the boxes drawn and a JSON of the detections per image.

    python tools/infer.py CONFIG CHECKPOINT IMAGE [IMAGE ...] [--out-dir DIR] [--score-thr 0.3]
        [--device cpu] [--deploy] [--grid predictions.png] [--cfg-options KEY=VALUE ...]

For each IMAGE it writes ``DIR/<name>.png`` (boxes, class names and scores above ``--score-thr``) and
``DIR/<name>.json`` (every detection: box as x1, y1, x2, y2 in image pixels, score, label, class);
``--grid`` also writes all pictures side by side in one PNG.
"""
import argparse
import json
import os
import os.path as osp

import mmcv
import numpy as np
from mmengine.config import DictAction

import mmghost  # noqa: F401  registers GhostNet
from mmghost.deploy import Detections
from mmghost.engine import init_detector
from mmghost.engine.config import read_config
from mmghost.models import deploy_model
from mmghost.utils import exit_on_user_error


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Detect objects in images and draw them')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--out-dir', default='outputs', help='folder for the PNG and JSON files')
    parser.add_argument('--score-thr', type=float, default=0.3, help='draw boxes with at least this score')
    parser.add_argument('--device', default='cpu', help='device, e.g. cpu or cuda:0')
    parser.add_argument('--deploy', action='store_true',
                        help='put the model in deploy mode first (mmghost.models.deploy_model, as every tool)')
    parser.add_argument('--grid', help='also write all pictures side by side in this PNG')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, as key=value pairs')
    args = parser.parse_args(argv)
    missing = [p for p in args.images if not osp.isfile(p)]
    if missing:
        parser.error(f'image file(s) not found: {", ".join(missing)}')
    return args


def detections_to_json(pred_instances, classes):
    """Detections of one image as plain JSON-able dicts, best first (the format tools/infer_onnx.py writes too)."""
    return Detections(pred_instances.bboxes.cpu().numpy(), pred_instances.scores.cpu().numpy(),
                      pred_instances.labels.cpu().numpy()).to_json(classes)


def main(argv=None):
    args = parse_args(argv)
    from mmdet.apis import inference_detector
    from mmdet.registry import VISUALIZERS

    cfg = read_config(args.config)  # resolves mmghost::NAME bases too
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    # The checkpoint holds every weight; the backbone's ImageNet init file is not needed (or present).
    cfg.model.backbone.init_cfg = None
    model = init_detector(cfg, args.checkpoint, device=args.device)
    if args.deploy:  # the deploy mode of tools/test.py --deploy, tools/deploy.py and tools/export_onnx.py
        deploy_model(model, strict=True)
    classes = model.dataset_meta['classes']

    visualizer = VISUALIZERS.build(dict(cfg.visualizer, name='mmghost_infer', vis_backends=[]))
    visualizer.dataset_meta = model.dataset_meta
    os.makedirs(args.out_dir, exist_ok=True)
    pictures = []
    for path in args.images:
        result = inference_detector(model, path)
        image = mmcv.imread(path, channel_order='rgb')
        name = osp.splitext(osp.basename(path))[0]
        visualizer.add_datasample(name, image, data_sample=result, draw_gt=False, show=False,
                                  pred_score_thr=args.score_thr)
        picture = visualizer.get_image()
        mmcv.imwrite(mmcv.rgb2bgr(picture), osp.join(args.out_dir, f'{name}.png'))
        pictures.append(picture)
        detections = detections_to_json(result.pred_instances, classes)
        with open(osp.join(args.out_dir, f'{name}.json'), 'w') as f:
            json.dump(dict(image=path, detections=detections), f, indent=1)
        shown = sum(d['score'] >= args.score_thr for d in detections)
        print(f'{path}: {shown} detections with score >= {args.score_thr} -> {args.out_dir}/{name}.png')
    if args.grid:
        height = max(p.shape[0] for p in pictures)
        padded = [np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0)), constant_values=255) for p in pictures]
        mmcv.imwrite(mmcv.rgb2bgr(np.concatenate(padded, axis=1)), args.grid)
        print(f'grid of {len(pictures)} pictures -> {args.grid}')


if __name__ == '__main__':
    with exit_on_user_error():
        main()
