"""Speed and memory of mmghost's GhostNet against a reference GhostNet and mmdet's backbones, in one process.

    python benchmarks/benchmark.py                       # CPU: 1.1x backbone at 800x1344, batch 1
    python benchmarks/benchmark.py --batches 1 8 --detectors --out results.json
    python benchmarks/benchmark.py --device cuda --batches 1 8 --dtypes fp32 bf16   # on a GPU machine

Cases (each timed with the same input, interleaved, after warm-up; median and spread of ``--repeats`` runs):

* ``reference``: the baseline every ratio is taken against: timm's GhostNet if timm is importable, else
  benchmarks/reference_ghostnet.py (an unoptimised eager model with the official module structure);
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
    parser.add_argument('--widen-factor', type=float, default=1.1)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--cases', nargs='+', help='time only these backbone cases (reference is always timed)')
    parser.add_argument('--no-compile', action='store_true', help='skip the torch.compile case')
    parser.add_argument('--no-train', action='store_true', help='skip the train-step rows')
    parser.add_argument('--detectors', action='store_true', help='also time whole RetinaNet inference')
    parser.add_argument('--out', help='write the results as JSON here')
    return parser.parse_args(argv)


def reference_backbone(widen_factor):
    """timm's GhostNet when importable (the reference implementation), else the official-structure baseline."""
    from benchmarks.reference_ghostnet import ReferenceGhostNet, official_features
    try:
        import timm
        model = timm.create_model('ghostnet_100', width=widen_factor)

        class TimmTrunk(torch.nn.Module):
            """timm's model run to the ends of blocks 2/4/6/8 (stride 4/8/16/32), like mmghost's default."""

            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, x):
                return official_features(self.net, x)

        return TimmTrunk(model), f'timm {timm.__version__} GhostNet'
    except ImportError:
        return ReferenceGhostNet(widen_factor), 'benchmarks/reference_ghostnet.py (official structure, eager)'


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

    from mmghost.models import GhostNet
    init_default_scope('mmdet')
    reference, ref_name = reference_backbone(args.widen_factor)
    models = {'reference': reference}
    models['mmghost-eval'] = GhostNet(args.widen_factor)
    models['mmghost-deploy-nchw'] = GhostNet(args.widen_factor).eval().switch_to_deploy(channels_last=False)
    models['mmghost-deploy'] = GhostNet(args.widen_factor).eval()  # switch_to_deploy() once on the device
    models['mobilenetv2'] = MODELS.build(dict(type='MobileNetV2', out_indices=(2, 4, 6)))
    models['resnet50'] = MODELS.build(dict(type='ResNet', depth=50, out_indices=(0, 1, 2, 3)))
    for model in models.values():
        model.to(device).eval()
    # Default deploy mode: BN folding, plus channels_last where that is the faster layout (CPU).
    models['mmghost-deploy'].switch_to_deploy()
    return models, ref_name


def run_backbones(args, device, results):
    models, ref_name = build_backbones(args, device)
    results['reference'] = ref_name
    compiled = None
    if not args.no_compile and hasattr(torch, 'compile'):
        from mmghost.models import GhostNet
        if device == 'cpu':
            # Inference-only: lets inductor constant-fold and prepack the (already BN-folded) weights.
            import torch._inductor.config as inductor_config
            inductor_config.freezing = True
        compiled = torch.compile(GhostNet(args.widen_factor).to(device).eval().switch_to_deploy())
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

            cases = {name: infer(m, x) for name, m in models.items()
                     if name == 'reference' or not args.cases or name in args.cases}
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
            for name, row in rows.items():
                ref_key = 'train-step-reference' if name.startswith('train-step') else 'reference'
                row['ratio_to_reference'] = row['median_ms'] / rows[ref_key]['median_ms']
                row['images_per_s'] = batch / (row['median_ms'] / 1e3)
            results['backbone'][f'{dtype}-b{batch}'] = rows


def train_steps(args, device, x, autocast):
    """One forward + backward in train mode: time and memory kept for backward, reference vs mmghost."""
    from mmghost.models import GhostNet
    reference, _ = reference_backbone(args.widen_factor)
    models = {'train-step-reference': reference.to(device).train(),
              'train-step-mmghost': GhostNet(args.widen_factor).to(device).train()}
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
          f"input {results['size']}; GhostNet {results['widen_factor']}x; reference: {results['reference']}")
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
                   size=list(args.size), widen_factor=args.widen_factor, repeats=args.repeats, backbone={})
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
