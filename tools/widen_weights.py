"""Widen GhostNet ImageNet weights to a larger width, keeping the network's function (Net2WiderNet).

    python tools/widen_weights.py state_dict_73.98.pth checkpoints/ghostnet_1.1x_widened.pth --width 1.1
    python tools/widen_weights.py SRC DST --width 1.3 --noise 0.01 --seed 0

No ImageNet weights exist for GhostNet-1.1x (the width of the paper's detectors). This makes a 1.1x-shaped
network that computes the 1.0x function: every new channel copies an existing one and the layers reading it
divide their weights among the copies (see :mod:`mmghost.models.widen`). Its ImageNet top-1 is the source's
(73.98% for the official 1.0x weights), not the paper's 1.1x figure; it is a start for detection fine-tuning.
Without ``--noise`` the widened classifier's logits equal the source's up to float rounding (checked here on a
random input before writing). ``--noise STD`` adds Gaussian noise (STD times each widened weight's standard
deviation) so that copied channels can diverge when fine-tuned.

SRC: any file ``tools/convert_weights.py`` reads (official ``.pth``, timm ``.bin``/``.safetensors``, wrapped or
prefixed state dicts, mmghost/mmpretrain training checkpoints). DST: a plain state dict with the official keys,
loadable by ``GhostNetClassifier(width).load_state_dict`` (with the head) and by a detection backbone's
``init_cfg=dict(type='SafePretrained', checkpoint=DST)``.
"""
import argparse
import os
import os.path as osp
import sys

import torch

from mmghost.models import GhostNetClassifier
from mmghost.models.weights import HEAD_PREFIXES, read_trunk_weights, read_weights_file, unwrap_state_dict
from mmghost.models.widen import ghostnet_weight_shapes, widen_ghostnet_weights
from mmghost.utils.safe_load import CheckpointError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='GhostNet weights (official layout or anything convert_weights.py reads)')
    parser.add_argument('dst', help='output .pth (plain state dict, official keys)')
    parser.add_argument('--width', type=float, required=True, help='target width multiplier, e.g. 1.1')
    parser.add_argument('--noise', type=float, default=0.0,
                        help='relative std of symmetry-breaking noise on widened weights (default 0: exact)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the channel choice and the noise')
    parser.add_argument('--num-classes', type=int, default=None,
                        help='classes of the source head (default: read from the file, else 1000)')
    args = parser.parse_args(argv)
    if not args.width > 0:
        parser.error('--width must be > 0')
    if not args.noise >= 0:
        parser.error('--noise must be >= 0')
    return args


def read_source(path: str):
    """Official-layout tensors of SRC, with the ImageNet head when the file has one (also mmpretrain's
    ``head.conv_head.*``/``head.classifier.*``, which sit outside the trunk's ``backbone.`` prefix)."""
    loaded = read_weights_file(path)
    found = read_trunk_weights(loaded, source=path)
    tensors = dict(found.tensors)
    if not any(k.startswith(HEAD_PREFIXES) for k in tensors) and found.prefix:
        everything = unwrap_state_dict(loaded)
        for key, value in everything.items():
            for outer in ('head.', found.prefix):
                if key.startswith(outer) and key[len(outer):].startswith(HEAD_PREFIXES):
                    tensors[key[len(outer):]] = value
    return tensors


def logit_difference(src, dst, widths, num_classes):
    """Largest |logit difference| / largest |logit| between the source and widened classifiers, on a random
    input (eval mode)."""
    models = []
    for weights, width in zip((src, dst), widths):
        model = GhostNetClassifier(width, num_classes=num_classes).eval()
        model.load_state_dict(weights, strict=True)
        models.append(model)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = (m(x).double() for m in models)
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


def guess_width(tensors, num_classes):
    """The source's width: the common width whose classifier has the same stem and final-conv shapes."""
    from mmghost.models.weights import COMMON_WIDEN_FACTORS
    for width in COMMON_WIDEN_FACTORS:
        shapes = ghostnet_weight_shapes(width, num_classes)
        if all(tuple(shapes.get(k, ())) == tuple(v.shape) for k, v in tensors.items()):
            return width
    return None


def main(argv=None):
    args = parse_args(argv)
    try:
        src = read_source(args.src)
    except CheckpointError as e:
        sys.exit(f'error: {e}')
    num_classes = args.num_classes or (src['classifier.weight'].shape[0] if 'classifier.weight' in src else 1000)
    shapes = ghostnet_weight_shapes(args.width, num_classes)
    try:
        dst = widen_ghostnet_weights(src, shapes, noise=args.noise, seed=args.seed)
    except (KeyError, ValueError) as e:
        sys.exit(f'error: cannot widen {args.src}: {e}')
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(dst, args.dst)
    changed = sum(tuple(v.shape) != tuple(src[k].shape) for k, v in dst.items())
    print(f'{args.src}: {len(src)} tensors, {sum(v.numel() for v in src.values()):,} numbers -> {args.dst}: '
          f'width {args.width}, {sum(v.numel() for v in dst.values()):,} numbers ({changed} tensors widened)')
    width = guess_width(src, num_classes)
    if 'conv_head.weight' in src and width is not None:
        diff = logit_difference(src, dst, (width, args.width), num_classes)
        print(f'check: {width}x -> {args.width}x, max |logit difference| / max |logit| = {diff:.2e} on a random '
              f'input' + ('' if args.noise else ' (function kept)' if diff < 1e-4 else ' (LARGER THAN 1e-4!)'))
        if not args.noise and diff >= 1e-4:
            sys.exit('error: the widened weights do not reproduce the source logits')


if __name__ == '__main__':
    main()
