"""Speed and memory of an mmghost backbone against its reference implementation and mmdet's backbones.

    python benchmarks/benchmark.py                       # CPU: GhostNet 1.1x backbone at 800x1344, batch 1
    python benchmarks/benchmark.py --backbone GhostNetV2 --widen-factor 1.0   # any family member (registry name)
    python benchmarks/benchmark.py --batches 1 8 --detectors --out results.json
    python benchmarks/benchmark.py --device cuda --batches 1 8 --dtypes fp32 bf16   # on a GPU machine

Cases (each timed with the same input, interleaved, after warm-up; median and spread of ``--repeats`` runs):

* ``reference``: the baseline every ratio is taken against: timm's model of ``--backbone`` at
  ``--widen-factor`` if timm is importable, else (GhostNet only) benchmarks/reference_ghostnet.py (an
  unoptimised eager model with the official module structure); without either, ratios are to ``mmghost-eval``;
* ``mmghost-eval``; ``mmghost-deploy`` (``switch_to_deploy()``: BNs folded, and channels_last on CPU);
  ``mmghost-deploy-nchw`` (BN folding only); ``mmghost-compile`` (deploy + ``torch.compile``, if available);
* ``mobilenetv2`` and ``resnet50``: mmdet's backbones as the detection configs use them;
* ``train-step`` rows: one forward + backward in train mode for the reference and mmghost, with the memory
  held for backward (bytes of the distinct tensors autograd saves; on GPU also the peak allocated memory);
* with ``--detectors``: whole RetinaNet inference (``test_step`` incl. post-processing) with GhostNet-1.1x,
  MobileNetV2 and ResNet-50 backbones, built from mmdet's RetinaNet R-50 config.

All backbones run to their stride-32 features. Weights are random (speed does not depend on them).
"""
import argparse
import json
import os.path as osp
import platform
import statistics
import sys
import time

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='GhostNet speed benchmark')
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--size', type=int, nargs=2, default=[800, 1344], metavar=('H', 'W'))
    parser.add_argument('--batches', type=int, nargs='+', default=[1])
    parser.add_argument('--dtypes', nargs='+', default=['fp32'], choices=['fp32', 'bf16'],
                        help='bf16 runs under torch.autocast')
    parser.add_argument('--backbone', default='GhostNet',
                        help='family member to time, by its type name in mmdet\'s registry (GhostNet, GhostNetV2, '
                        'GhostNetV3)')
    parser.add_argument('--widen-factor', type=float, default=None,
                        help='width (default: 1.1 for GhostNet, the paper\'s detection width; 1.0 for the others)')
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--cases', nargs='+', help='time only these backbone cases (reference is always timed)')
    parser.add_argument('--no-compile', action='store_true', help='skip the torch.compile case')
    parser.add_argument('--no-train', action='store_true', help='skip the train-step rows')
    parser.add_argument('--detectors', action='store_true', help='also time whole RetinaNet inference')
    parser.add_argument('--out', help='write the results as JSON here')
    args = parser.parse_args(argv)
    if args.widen_factor is None:
        args.widen_factor = 1.1 if args.backbone == 'GhostNet' else 1.0
    return args


class TimmTrunk(torch.nn.Module):
    """timm's model run to the ends of blocks 2/4/6/8 (stride 4/8/16/32), like mmghost's default outputs."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        from benchmarks.reference_ghostnet import official_features
        return official_features(self.net, x)


def reference_backbone(backbone, widen_factor):
    """(model, name) of the reference implementation: timm's when importable, else for GhostNet the
    official-structure baseline; (None, why) when there is none."""
    from benchmarks.reference_ghostnet import ReferenceGhostNet
    from tools.convert_weights import timm_model
    net, name = timm_model(backbone, widen_factor)
    if net is not None:
        return TimmTrunk(net), name
    if backbone == 'GhostNet':
        return ReferenceGhostNet(widen_factor), 'benchmarks/reference_ghostnet.py (official structure, eager)'
    return None, name


def build_mmghost(args, **kwargs):
    """The backbone under test, from mmdet's registry (outputs at strides 4-32)."""
    from mmdet.registry import MODELS

    import mmghost.models  # noqa: F401  registers the family
    return MODELS.build(dict(type=args.backbone, widen_factor=args.widen_factor, **kwargs))


def saved_tensor_bytes(fn):
    """Bytes of the distinct tensors autograd keeps for backward while ``fn`` runs (its activation memory)."""
    seen = {}

    def pack(t):
        try:
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, NotImplementedError):
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def time_cases(cases, device, repeats, warmup):
    """cases: name -> zero-argument callable. Interleaves the cases so drift hits them alike."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def summarize(samples):
    samples = sorted(samples)
    q1, q3 = samples[len(samples) // 4], samples[(3 * len(samples)) // 4]
    return dict(median_ms=statistics.median(samples) * 1e3, min_ms=samples[0] * 1e3, max_ms=samples[-1] * 1e3,
                iqr_ms=(q3 - q1) * 1e3)


def build_backbones(args, device):
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    reference, ref_name = reference_backbone(args.backbone, args.widen_factor)
    models = {'reference': reference} if reference is not None else {}
    models['mmghost-eval'] = build_mmghost(args)
    models['mmghost-deploy-nchw'] = build_mmghost(args).eval().switch_to_deploy(channels_last=False)
    models['mmghost-deploy'] = build_mmghost(args).eval()  # switch_to_deploy() once on the device
    models['mobilenetv2'] = MODELS.build(dict(type='MobileNetV2', out_indices=(2, 4, 6)))
    models['resnet50'] = MODELS.build(dict(type='ResNet', depth=50, out_indices=(0, 1, 2, 3)))
    for model in models.values():
        model.to(device).eval()
    # Default deploy mode: BN folding, plus channels_last where that is the faster layout (CPU).
    models['mmghost-deploy'].switch_to_deploy()
    return models, ref_name


def run_backbones(args, device, results):
    models, ref_name = build_backbones(args, device)
    # None when there is no reference implementation (ratios are then to mmghost-eval); the note says why.
    results['reference'] = ref_name if 'reference' in models else None
    if 'reference' not in models:
        results['reference_missing'] = ref_name
    compiled = None
    if not args.no_compile and hasattr(torch, 'compile'):
        if device == 'cpu':
            # Inference-only: lets inductor constant-fold and prepack the (already BN-folded) weights.
            import torch._inductor.config as inductor_config
            inductor_config.freezing = True
        compiled = torch.compile(build_mmghost(args).to(device).eval().switch_to_deploy())
    h, w = args.size
    for dtype in args.dtypes:
        if dtype == 'bf16' and not device.startswith('cuda'):
            print('skipping bf16 on CPU: the speed targets are for GPU bf16')
            continue
        for batch in args.batches:
            x = torch.rand(batch, 3, h, w, device=device)
            autocast = torch.autocast(device.split(':')[0], dtype=torch.bfloat16, enabled=dtype == 'bf16')

            def infer(model, inp):
                def fn():
                    with torch.no_grad(), autocast:
                        return model(inp)
                return fn

            baseline = 'reference' if 'reference' in models else 'mmghost-eval'
            cases = {name: infer(m, x) for name, m in models.items()
                     if name == baseline or not args.cases or name in args.cases}
            if compiled is not None and (not args.cases or 'mmghost-compile' in args.cases):
                start = time.perf_counter()
                infer(compiled, x)()
                results.setdefault('compile_seconds', {})[f'{dtype}-b{batch}'] = time.perf_counter() - start
                cases['mmghost-compile'] = infer(compiled, x)
            if device.startswith('cuda'):
                torch.cuda.reset_peak_memory_stats()
            times = time_cases(cases, device, args.repeats, args.warmup)
            rows = {name: summarize(t) for name, t in times.items()}
            if not args.no_train:
                rows.update(train_steps(args, device, x, autocast))
            train_baseline = 'train-step-reference' if 'train-step-reference' in rows else 'train-step-mmghost'
            for name, row in rows.items():
                ref_key = train_baseline if name.startswith('train-step') else baseline
                row['ratio_to_reference'] = row['median_ms'] / rows[ref_key]['median_ms']
                row['images_per_s'] = batch / (row['median_ms'] / 1e3)
            results['backbone'][f'{dtype}-b{batch}'] = rows


def train_steps(args, device, x, autocast):
    """One forward + backward in train mode: time and memory kept for backward, reference vs mmghost."""
    reference, _ = reference_backbone(args.backbone, args.widen_factor)
    models = {'train-step-reference': reference.to(device).train()} if reference is not None else {}
    models['train-step-mmghost'] = build_mmghost(args).to(device).train()
    rows = {}
    for name, model in models.items():
        def step(model=model):
            with autocast:
                outs = model(x)
            sum(o.float().mean() for o in outs).backward()

        def measured(model=model):
            with autocast:
                return model(x)
        if device.startswith('cuda'):
            torch.cuda.reset_peak_memory_stats()
        outs, saved = saved_tensor_bytes(measured)
        del outs
        times = time_cases({name: step}, device, max(3, args.repeats // 2), 1)
        rows[name] = summarize(times[name])
        rows[name]['saved_for_backward_mib'] = saved / 2**20
        if device.startswith('cuda'):
            rows[name]['peak_allocated_mib'] = torch.cuda.max_memory_allocated() / 2**20
    if 'train-step-reference' in rows:
        ref_mem = rows['train-step-reference']['saved_for_backward_mib']
        rows['train-step-mmghost']['memory_ratio_to_reference'] = \
            rows['train-step-mmghost']['saved_for_backward_mib'] / ref_mem
    return rows


def run_detectors(args, device, results):
    """Whole RetinaNet inference (test_step on a 800x1333 image, incl. NMS) with three backbones."""
    import numpy as np
    from mmdet.apis import inference_detector, init_detector
    from mmengine.config import Config
    variants = {
        'retinanet-ghostnet-1.1x': (osp.join(ROOT, 'configs/retinanet_ghostnet_fpn.py'), None),
        'retinanet-mobilenetv2': ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
                                  dict(backbone=dict(_delete_=True, type='MobileNetV2', out_indices=(2, 4, 6)),
                                       neck=dict(in_channels=[32, 96, 320], start_level=0))),
        'retinanet-resnet50': ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', None),
    }
    image = (np.random.RandomState(0).rand(800, 1333, 3) * 255).astype(np.uint8)
    cases = {}
    for name, (config, model_override) in variants.items():
        # mmdet:: paths resolve only as a _base_.
        cfg = Config.fromstring(f'_base_ = {config!r}\n', file_format='.py')
        if model_override:
            cfg.merge_from_dict(dict(model=model_override))
        cfg.model.backbone.init_cfg = None
        model = init_detector(cfg, None, device=device)
        cases[name] = (lambda model=model: inference_detector(model, image))
    times = time_cases(cases, device, max(3, args.repeats // 2), 1)
    rows = {name: summarize(t) for name, t in times.items()}
    for row in rows.values():
        row['ratio_to_ghostnet'] = row['median_ms'] / rows['retinanet-ghostnet-1.1x']['median_ms']
    results['detectors'] = rows


def print_backbones(results):
    print(f"\n{results['machine']}; torch {results['torch']}; {results['threads']} threads; "
          f"input {results['size']}; {results['backbone_type']} {results['widen_factor']}x; "
          f"reference: {results['reference'] or 'none (' + results['reference_missing'] + '); ratios to mmghost-eval'}")
    for key, rows in results['backbone'].items():
        print(f'\nbackbone {key}')
        print(f'{"case":<24}{"median ms":>11}{"min":>9}{"max":>9}{"img/s":>9}{"x ref":>8}{"saved MiB":>11}')
        for name, r in rows.items():
            saved = f"{r['saved_for_backward_mib']:.0f}" if 'saved_for_backward_mib' in r else ''
            print(f"{name:<24}{r['median_ms']:>11.1f}{r['min_ms']:>9.1f}{r['max_ms']:>9.1f}"
                  f"{r['images_per_s']:>9.2f}{r['ratio_to_reference']:>8.2f}{saved:>11}")


def print_detectors(results):
    if 'detectors' in results:
        print('\nwhole RetinaNet inference, one 800x1333 image')
        for name, r in results['detectors'].items():
            print(f"{name:<26}{r['median_ms']:>11.1f} ms  (min {r['min_ms']:.1f}, max {r['max_ms']:.1f})"
                  f"  x{r['ratio_to_ghostnet']:.2f} of GhostNet")


def main(argv=None):
    args = parse_args(argv)
    device = args.device
    if device.startswith('cuda') and not torch.cuda.is_available():
        sys.exit('--device cuda: no CUDA device here')
    torch.manual_seed(0)
    machine = torch.cuda.get_device_name() if device.startswith('cuda') else \
        f'{platform.processor() or platform.machine()} CPU'
    results = dict(machine=machine, torch=torch.__version__, threads=torch.get_num_threads(),
                   size=list(args.size), backbone_type=args.backbone, widen_factor=args.widen_factor,
                   repeats=args.repeats, backbone={})
    run_backbones(args, device, results)
    print_backbones(results)
    if args.detectors:
        run_detectors(args, device, results)
        print_detectors(results)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)
        print(f'\nwrote {args.out}')


if __name__ == '__main__':
    main()
