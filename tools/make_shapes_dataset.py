"""Make a small COCO-format detection dataset of coloured shapes, for demos and tests without COCO on disk.

    python tools/make_shapes_dataset.py data/shapes --train 600 --val 100 --seed 0

Writes ``OUT/train/*.png``, ``OUT/val/*.png`` and ``OUT/annotations/instances_{train,val}.json``. Each image has
1..``--max-objects`` shapes (circle, square, triangle) of varied sizes and colours on one of five kinds of
background (flat colour, mild or strong gradients, blurred noise, stripes); later shapes may partly cover earlier
ones (occlusion), but never by more than ``--max-overlap`` of a box's area, so every annotated object stays
visible. The same arguments always give the same files.
"""
import argparse
import json
import os
import os.path as osp

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out', help='output folder')
    parser.add_argument('--train', type=int, default=600, help='number of training images')
    parser.add_argument('--val', type=int, default=100, help='number of validation images')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', type=int, default=256, help='image side in pixels')
    parser.add_argument('--min-objects', type=int, default=1)
    parser.add_argument('--max-objects', type=int, default=4)
    parser.add_argument('--min-scale', type=float, default=0.12, help='smallest shape side / image side')
    parser.add_argument('--max-scale', type=float, default=0.45, help='largest shape side / image side')
    parser.add_argument('--max-overlap', type=float, default=0.3,
                        help='largest fraction of an earlier box that a later shape may cover')
    args = parser.parse_args(argv)
    if args.train < 1 or args.val < 1 or args.size < 32:
        parser.error('--train and --val must be >= 1 and --size >= 32')
    if not 1 <= args.min_objects <= args.max_objects:
        parser.error('need 1 <= --min-objects <= --max-objects')
    if not 0 < args.min_scale <= args.max_scale < 1:
        parser.error('need 0 < --min-scale <= --max-scale < 1')
    return args


def _overlap(a, b):
    """Intersection area of boxes a, b (x1, y1, x2, y2) as a fraction of a's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]))


def _background(rng, size):
    """One of five kinds, so the detector does not learn a single kind of background: a colour with a mild
    gradient and noise, a flat colour, a strong gradient in a random direction, blurred colour noise, or
    two-colour stripes at any angle and period."""
    kind = int(rng.integers(5))
    base = rng.integers(0, 256, 3).astype(np.float64)
    if kind == 0:
        img = (base + np.linspace(0, 1, size)[None, :, None] * rng.integers(-60, 61, 3)
               + rng.normal(0, 12, (size, size, 3)))
    elif kind == 1:
        img = np.broadcast_to(base, (size, size, 3)) + rng.normal(0, 2, (size, size, 3))
    elif kind == 2:
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / size
        img = base + (np.cos(angle) * xx + np.sin(angle) * yy)[..., None] * rng.integers(-160, 161, 3)
    elif kind == 3:
        img = cv2.GaussianBlur(base + rng.normal(0, 50, (size, size, 3)), (0, 0), rng.uniform(0.5, 2.0))
    else:
        other = rng.integers(0, 256, 3).astype(np.float64)
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:size, 0:size]
        phase = (np.cos(angle) * xx + np.sin(angle) * yy) / rng.uniform(4, size / 3)
        img = np.where(((phase % 1.0) < 0.5)[..., None], base, other) + rng.normal(0, 4, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _colour(rng, background):
    """A colour that stands out from the background's mean."""
    mean = background.reshape(-1, 3).mean(0)
    while True:
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - mean).sum() > 150:
            return tuple(int(c) for c in colour)


def _draw(img, cls, box, colour):
    x1, y1, x2, y2 = box
    if cls == 'circle':
        cv2.ellipse(img, (((x1 + x2) / 2, (y1 + y2) / 2), (x2 - x1, y2 - y1), 0), colour, -1, cv2.LINE_AA)
    elif cls == 'square':
        cv2.rectangle(img, (int(round(x1)), int(round(y1))), (int(round(x2)) - 1, int(round(y2)) - 1), colour, -1)
    else:
        pts = np.array([[(x1 + x2) / 2, y1], [x2, y2], [x1, y2]], dtype=np.float32)
        cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], colour, cv2.LINE_AA, shift=4)


def make_image(rng, args):
    size = args.size
    img = _background(rng, size)
    boxes, labels = [], []
    for _ in range(int(rng.integers(args.min_objects, args.max_objects + 1))):
        for _attempt in range(50):
            side = rng.uniform(args.min_scale, args.max_scale) * size
            aspect = rng.uniform(0.7, 1.4)
            w, h = side * np.sqrt(aspect), side / np.sqrt(aspect)
            w, h = min(w, size - 2), min(h, size - 2)
            x1, y1 = rng.uniform(0, size - w), rng.uniform(0, size - h)
            box = (float(x1), float(y1), float(x1 + w), float(y1 + h))
            if all(_overlap(prev, box) <= args.max_overlap and _overlap(box, prev) <= 0.8 for prev in boxes):
                break
        else:
            continue
        cls = CLASSES[int(rng.integers(len(CLASSES)))]
        _draw(img, cls, box, _colour(rng, img))
        boxes.append(box)
        labels.append(cls)
    return img, boxes, labels


def make_split(out, split, count, rng, args):
    os.makedirs(osp.join(out, split), exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        img, boxes, labels = make_image(rng, args)
        file_name = f'{split}/{image_id:06d}.png'
        cv2.imwrite(osp.join(out, file_name), img)
        images.append(dict(id=image_id, file_name=file_name, width=args.size, height=args.size))
        for (x1, y1, x2, y2), cls in zip(boxes, labels):
            w, h = x2 - x1, y2 - y1
            annotations.append(
                dict(id=len(annotations) + 1, image_id=image_id, category_id=CLASSES.index(cls) + 1,
                     bbox=[round(x1, 2), round(y1, 2), round(w, 2), round(h, 2)], area=round(w * h, 2),
                     iscrowd=0))
    coco = dict(images=images, annotations=annotations,
                categories=[dict(id=i + 1, name=name) for i, name in enumerate(CLASSES)])
    with open(osp.join(out, 'annotations', f'instances_{split}.json'), 'w') as f:
        json.dump(coco, f)
    return len(images), len(annotations)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(osp.join(args.out, 'annotations'), exist_ok=True)
    # Separate streams so the validation split does not change when --train does.
    train_rng, val_rng = (np.random.default_rng([args.seed, i]) for i in (0, 1))
    for split, count, rng in (('train', args.train, train_rng), ('val', args.val, val_rng)):
        n_img, n_ann = make_split(args.out, split, count, rng, args)
        print(f'{split}: {n_img} images, {n_ann} objects -> {args.out}/annotations/instances_{split}.json')


if __name__ == '__main__':
    main()
