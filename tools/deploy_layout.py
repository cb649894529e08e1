"""Which memory layout is faster for a deployed backbone on this machine: NCHW or channels_last (NHWC).

    python tools/deploy_layout.py [--backbone GhostNet] [--widen-factor 1.1] [--device cuda] [--dtype bfloat16]
        [--shape 2 3 800 1344] [--warmup 3] [--repeats 10] [--json OUT.json]

``switch_to_deploy()`` does not measure: with ``channels_last=None`` it follows a fixed rule (channels_last on
the CPU, NCHW elsewhere; ``mmghost.models.backbones.base.default_channels_last``), so that every rank and every
run gets the same layout. This tool times the deployed backbone (random weights, ``torch.no_grad``, under
autocast to ``--dtype`` when that is not float32) in both layouts, interleaved, and prints the median time of
each, which one is faster, and what the rule picks. Where the other layout wins clearly on your device, pass it
explicitly: ``backbone.switch_to_deploy(channels_last=True)``.
"""
import argparse
import contextlib
import copy
import json
import os.path as osp
import sys
import time

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:  # run as `python tools/deploy_layout.py` from a checkout without an install
    sys.path.insert(0, ROOT)

import mmghost  # noqa: E402,F401  registers the GhostNet family
from mmghost.models.backbones.base import default_channels_last  # noqa: E402
from mmghost.registry import MODELS  # noqa: E402

DTYPES = {'float32': torch.float32, 'float16': torch.float16, 'bfloat16': torch.bfloat16}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--backbone', default='GhostNet', help='registered backbone type (default: GhostNet)')
    parser.add_argument('--widen-factor', type=float, default=1.1)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dtype', choices=sorted(DTYPES), default='float32',
                        help='autocast dtype of the timed forward (float32: no autocast)')
    parser.add_argument('--shape', type=int, nargs=4, default=[2, 3, 800, 1344], metavar=('N', 'C', 'H', 'W'))
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--json', help='also write the result to this JSON file')
    args = parser.parse_args(argv)
    if args.warmup < 0 or args.repeats < 1:
        parser.error('--warmup must be >= 0 and --repeats >= 1')
    return args


def time_layouts(backbone, device, shape, dtype=torch.float32, warmup=3, repeats=10):
    """Median seconds per forward of ``backbone`` deployed in each layout: ``{'nchw': s, 'channels_last': s}``.

    Two deep copies are deployed (``switch_to_deploy(channels_last=False/True)``) and run alternately, so drift
    (clocks, other load) hits both alike; ``backbone`` itself is left as it was.
    """
    device = torch.device(device)
    models = {layout: copy.deepcopy(backbone).to(device).eval().switch_to_deploy(channels_last=layout != 'nchw')
              for layout in ('nchw', 'channels_last')}
    x = torch.rand(shape, device=device)
    inputs = {'nchw': x, 'channels_last': x.contiguous(memory_format=torch.channels_last)}
    # No autocast object at all for float32: torch 2.1 refuses a CPU autocast of float32 even when disabled.
    autocast = contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    times = {layout: [] for layout in models}
    with torch.no_grad(), autocast:
        for i in range(warmup + repeats):
            for layout, model in models.items():
                sync()
                start = time.perf_counter()
                model(inputs[layout])
                sync()
                if i >= warmup:
                    times[layout].append(time.perf_counter() - start)
    return {layout: sorted(t)[len(t) // 2] for layout, t in times.items()}


def main(argv=None):
    args = parse_args(argv)
    backbone = MODELS.build(dict(type=args.backbone, widen_factor=args.widen_factor))
    medians = time_layouts(backbone, args.device, tuple(args.shape), DTYPES[args.dtype], args.warmup, args.repeats)
    faster = min(medians, key=medians.get)
    rule = 'channels_last' if default_channels_last(args.device) else 'nchw'
    where = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith('cuda') else 'CPU'
    result = dict(backbone=args.backbone, widen_factor=args.widen_factor, device=where, dtype=args.dtype,
                  shape=list(args.shape), ms={k: v * 1e3 for k, v in medians.items()}, faster=faster,
                  default=rule, torch=torch.__version__)
    print(f'{args.backbone}-{args.widen_factor}x deployed on {where}, {args.dtype}, input {tuple(args.shape)}: '
          f'NCHW {medians["nchw"] * 1e3:.2f} ms, channels_last {medians["channels_last"] * 1e3:.2f} ms '
          f'(median of {args.repeats})')
    print(f'faster: {faster}; switch_to_deploy() default here: {rule}'
          + ('' if faster == rule else f' -> consider switch_to_deploy(channels_last={faster == "channels_last"})'))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main()
