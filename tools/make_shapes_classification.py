"""Make a small ImageNet-format classification set from the shapes generator's objects and backgrounds.

    python tools/make_shapes_classification.py data/shapes_cls --train 500 --val 100 --size 64 --seed 0

Writes ``OUT/{train,val}/{background,circle,square,triangle}/NNNNNN.png`` (one folder per class, as ImageNet
and mmpretrain's ``CustomDataset`` expect), ``OUT/meta/{train,val}.txt`` (``class/file.png label`` lines
relative to the split's folder: mmpretrain's ImageNet annotation format) and ``OUT/meta/classes.txt``.
``--train``/``--val`` are images per class.

Each object image is one shape of ``tools/make_shapes_dataset.py`` (its ``_draw``, ``_colour`` and
``_background``: flat colours, gradients, noise, stripes), 35-90% of the image side, anywhere in the frame; the
"background" class is a background alone. It is the miniature ImageNet of the ImageNet -> COCO path
(``benchmarks/pretrain_vs_scratch.py``): the GhostNet trained on it initialises the shapes detector. The same
arguments always give the same files.
"""
import argparse
import os
import os.path as osp

import cv2
import numpy as np

from make_shapes_dataset import CLASSES as SHAPES
from make_shapes_dataset import _background, _colour, _draw

CLASSES = ('background', ) + tuple(SHAPES)  # folder names; mmpretrain sorts them: the same order


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out', help='output folder')
    parser.add_argument('--train', type=int, default=500, help='training images per class')
    parser.add_argument('--val', type=int, default=100, help='validation images per class')
    parser.add_argument('--size', type=int, default=64, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.train < 1 or args.val < 1 or args.size < 16:
        parser.error('--train and --val must be >= 1 and --size >= 16')
    return args


def make_image(rng, cls, size):
    img = _background(rng, size)
    if cls != 'background':
        side = rng.uniform(0.35, 0.9) * size
        aspect = rng.uniform(0.7, 1.4)
        w, h = min(side * np.sqrt(aspect), size - 2), min(side / np.sqrt(aspect), size - 2)
        x1, y1 = rng.uniform(0, size - w), rng.uniform(0, size - h)
        _draw(img, cls, (x1, y1, x1 + w, y1 + h), _colour(rng, img))
    return img


def make_split(out, split, per_class, rng, size):
    lines = []
    for label, cls in enumerate(CLASSES):
        os.makedirs(osp.join(out, split, cls), exist_ok=True)
        for i in range(per_class):
            name = f'{cls}/{i:06d}.png'
            cv2.imwrite(osp.join(out, split, name), make_image(rng, cls, size))
            lines.append(f'{name} {label}')  # relative to the split's folder, as in ImageNet's meta files
    with open(osp.join(out, 'meta', f'{split}.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return len(lines)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(osp.join(args.out, 'meta'), exist_ok=True)
    with open(osp.join(args.out, 'meta', 'classes.txt'), 'w') as f:
        f.write('\n'.join(CLASSES) + '\n')
    # Separate streams so the validation split does not change when --train does.
    for split, per_class, stream in (('train', args.train, 0), ('val', args.val, 1)):
        count = make_split(args.out, split, per_class, np.random.default_rng([args.seed, stream]), args.size)
        print(f'{split}: {count} images in {len(CLASSES)} classes -> {osp.join(args.out, split)}')


if __name__ == '__main__':
    main()
