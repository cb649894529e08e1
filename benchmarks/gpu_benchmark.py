"""GPU speed and memory of the GhostNet family against timm and mmdet's RetinaNets, in one process (issue 14).

    python benchmarks/gpu_benchmark.py --out gpu_benchmark.json                  # on a GPU machine
    python benchmarks/gpu_benchmark.py --dry-run --out /tmp/dry.json             # CPU, tiny sizes: checks logic
    bash benchmarks/gpu_check.sh                                                 # build + cuda tests + this

What it measures (random weights: speed does not depend on them):

* ``backbones``: inference throughput at 800x1344, batch 8, under bf16 autocast, of GhostNet-1.1x,
  GhostNetV2-1.0x and GhostNetV3-1.0x in eval mode and deploy mode (``switch_to_deploy()``: its default layout,
  and the other layout, so the channels_last choice is checked against a measurement), against timm's
  ``ghostnet_100``, ``ghostnetv2_100``, ``ghostnetv3_100`` in eager mode (NCHW and channels_last).
* ``compile``: ``torch.compile`` of our deploy model and of timm's model (channels_last, as the issue's anchor
  ran it), timed against each other after compilation; compile times recorded.
* ``activation_memory``: train-mode forward of each family member at 1.0x and of its timm model (both run to
  the stride-32 blocks), batch 16, bf16 autocast: memory held for backward once the forward has returned
  (CUDA allocator: allocated after forward minus before), the peak over forward + backward, and the bytes of
  the tensors autograd saves.
* ``training``: RetinaNet training steps (mmengine ``AmpOptimWrapper``, bf16, batch 16, 800x1344 inputs
  through the data preprocessor) with GhostNet-1.1x (configs/retinanet_ghostnet_fpn.py), ResNet-50
  (mmdet's retinanet_r50_fpn_1x_coco.py) and MobileNetV2 (the same with mmdet's MobileNetV2): images/s and
  peak allocated memory. Steps run inside ``mmghost.engine.mmcv_ops_in_float32()`` as MMGhostRunner trains
  (mmcv 2.1's CUDA focal loss/RoIAlign/NMS have no bf16 kernels); if a bf16 step still fails in such a kernel,
  that is recorded and the step is measured in fp16 AMP instead.

Steps run in the order of ``PLAN`` (GhostNet's figures first, V2/V3 last); a step that no longer fits the time
budget (``--budget-s``) is skipped and listed with the reason, and the JSON file is rewritten after every step,
so a run cut short keeps what it measured.

Goals (issue 14), recorded with their values and pass/fail: GhostNet-1.1x compiled >= 1.5x the images/s of
timm's compiled ``ghostnet_100``; our GhostNet's training activation memory <= 0.8x timm's at the same batch.

Every case is timed the same way: warm-up calls, then ``--repeats`` rounds that each run every case of a table
``--iters`` times in a row (rounds interleave the cases so clock drift hits them alike), synchronising the
device around each run; the JSON keeps every round's time per batch. ``--dry-run`` runs every step on the CPU
at 64x96, batch 2, with ``torch.compile(backend='eager')``: its numbers test the script, not the model.
"""
import argparse
import copy
import gc
import json
import os
import os.path as osp
import platform
import statistics
import sys
import time
import traceback

import torch
import torch.nn as nn

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.benchmark import saved_tensor_bytes  # noqa: E402

SCHEMA = 'mmghost-gpu-benchmark/1'
# (registry name, our width in the throughput table, timm model of the same family at 1.0x)
FAMILY = [('GhostNet', 1.1, 'ghostnet_100'), ('GhostNetV2', 1.0, 'ghostnetv2_100'),
          ('GhostNetV3', 1.0, 'ghostnetv3_100')]
GOALS = {
    'throughput': dict(
        what='GhostNet-1.1x deploy + torch.compile images/s over timm ghostnet_100 torch.compile (channels_last) '
             'images/s, bf16 autocast, batch 8, 800x1344, same process',
        goal='>= 1.5', threshold=1.5, higher_is_better=True),
    'activation_memory': dict(
        what='GhostNet-1.0x over timm ghostnet_100: memory held for backward after a train-mode forward, bf16 '
             'autocast, training batch, same input (CUDA allocator; saved-tensor bytes on CPU)',
        goal='<= 0.8', threshold=0.8, higher_is_better=False),
}
# Figures issue 14 quotes from elsewhere (an H100, timm 1.0.29, trunks at 800x1344), kept beside ours so a run's
# timm numbers can be checked against them; they are not measured by this script.
ISSUE_ANCHORS = dict(source='issue 14: H100, timm 1.0.29, bf16, 800x1344; not measured here',
                     ghostnet_100_eager_b8_images_per_s=809, ghostnet_100_compiled_channels_last_b8_images_per_s=1297,
                     mobilenetv3_large_b8_images_per_s=1375, resnet50_b8_images_per_s=591,
                     ghostnet_train_step_b16_images_per_s=87, ghostnet_train_step_b16_gib=6.9)
RETINANETS = {
    'retinanet-ghostnet-1.1x': (osp.join(ROOT, 'configs', 'retinanet_ghostnet_fpn.py'), None),
    'retinanet-r50': ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', None),
    'retinanet-mobilenetv2': ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
                              dict(backbone=dict(_delete_=True, type='MobileNetV2', out_indices=(2, 4, 6)),
                                   neck=dict(in_channels=[32, 96, 320], start_level=0))),
}
# Seconds a step is expected to need (full size on an H100-class GPU; dry run on a small CPU), to decide whether
# to start it; the compile estimate grows to the slowest compile seen so far.
ESTIMATES = dict(backbones=20, activation_memory=10, training=45, compile=75)
DRY_ESTIMATES = dict(backbones=5, activation_memory=3, training=10, compile=15)
# The order steps run in, most wanted first, so a short budget drops the least wanted: GhostNet's figures the
# goals need, then the detector training figures, then V2 and V3.
PLAN = [('backbones', 'GhostNet'), ('compile', 'GhostNet'), ('activation_memory', 'GhostNet'), ('training', None),
        ('backbones', 'GhostNetV2'), ('backbones', 'GhostNetV3'), ('activation_memory', 'GhostNetV2'),
        ('activation_memory', 'GhostNetV3'), ('compile', 'GhostNetV2'), ('compile', 'GhostNetV3')]


def step_name(section, family):
    """A step of PLAN as ``--skip`` names it: SECTION:FAMILY, or the section alone (training)."""
    return f'{section}:{family}' if family else section


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True, help='JSON file, rewritten after every case')
    parser.add_argument('--dry-run', action='store_true',
                        help='CPU, 64x96, batch 2, one iteration, compile with the eager backend: tests the logic')
    parser.add_argument('--device', help='default: cuda (cpu with --dry-run)')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, help='inference batch (default 8)')
    parser.add_argument('--train-batch', type=int, help='training and activation-memory batch (default 16)')
    parser.add_argument('--iters', type=int, help='runs of a case per timed round (default 10)')
    parser.add_argument('--repeats', type=int, help='timed rounds (default 5)')
    parser.add_argument('--warmup', type=int, help='untimed runs first (default 3)')
    parser.add_argument('--train-steps', type=int, help='timed training steps per detector (default 6)')
    parser.add_argument('--compile-backend', help="torch.compile backend (default inductor; 'eager' with --dry-run)")
    parser.add_argument('--budget-s', type=float, default=240.0, help='stop starting sections after this long')
    parser.add_argument('--sections', nargs='+', default=['backbones', 'activation_memory', 'training', 'compile'],
                        choices=['backbones', 'activation_memory', 'training', 'compile'])
    parser.add_argument('--families', nargs='+', default=[f[0] for f in FAMILY], choices=[f[0] for f in FAMILY])
    steps = [step_name(section, name) for section, name in PLAN]
    parser.add_argument('--skip', nargs='+', default=[], choices=steps, metavar='STEP',
                        help='steps of the plan not to run, recorded as skipped (SECTION:FAMILY, or training): '
                        + ', '.join(steps))
    args = parser.parse_args(argv)
    full = dict(device='cuda', size=[800, 1344], batch=8, train_batch=16, iters=10, repeats=5, warmup=3,
                train_steps=6, compile_backend='inductor')
    dry = dict(device='cpu', size=[64, 96], batch=2, train_batch=2, iters=1, repeats=2, warmup=1, train_steps=1,
               compile_backend='eager')
    for key, value in (dry if args.dry_run else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.estimates = dict(DRY_ESTIMATES if args.dry_run else ESTIMATES)
    return args


class Report:
    """The results dict, written atomically to ``path`` whenever it changes."""

    def __init__(self, path, data):
        self.path, self.data = path, data

    def write(self):
        tmp = f'{self.path}.tmp'
        with open(tmp, 'w') as f:
            json.dump(self.data, f, indent=1, default=str)
        os.replace(tmp, self.path)

    def skip(self, what, reason):
        print(f'skipped {what}: {reason}', flush=True)
        self.data['skipped'].append(dict(what=what, reason=reason))
        self.write()

    def error(self, what, exc):
        print(f'error in {what}: {exc!r}', flush=True)
        traceback.print_exc()
        self.data['errors'].append(dict(what=what, error=repr(exc)[:2000]))
        self.write()


class Clock:
    """Time left of the budget, and whether a step expected to take ``need`` seconds still fits."""

    def __init__(self, budget_s):
        self.start, self.budget = time.monotonic(), budget_s

    def elapsed(self):
        return time.monotonic() - self.start

    def left(self):
        return self.budget - self.elapsed()

    def fits(self, need):
        return self.left() >= need


def sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def autocast(device):
    return torch.autocast(device.split(':')[0], dtype=torch.bfloat16)


def free_memory(device):
    gc.collect()
    if device.startswith('cuda'):
        torch.cuda.empty_cache()


def time_interleaved(cases, device, iters, repeats, warmup, batch):
    """cases: name -> zero-argument callable. Returns name -> row (times per batch, images/s)."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    sync(device)
    samples = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(iters):
                fn()
            sync(device)
            samples[name].append((time.perf_counter() - start) / iters)
    rows = {}
    for name, s in samples.items():
        median = statistics.median(s)
        rows[name] = dict(ms_per_batch=median * 1e3, min_ms=min(s) * 1e3, max_ms=max(s) * 1e3,
                          images_per_s=batch / median, rounds_ms=[round(t * 1e3, 4) for t in s])
    return rows


class TimmTrunk(nn.Module):
    """A timm GhostNet (V1/V2/V3) run to the end of its stride-32 blocks, returning the stride 4/8/16/32 taps.

    This is the work our backbone does with its default ``out_indices=(1, 2, 3, 4)``: the stem and blocks 0-8
    (the deepest block at each stride, where timm's ``features_only`` would stop at the first one and skip the
    last stride-32 blocks); timm's final 1x1 conv, pooling and classifier are not run.
    """
    TAPS = (2, 4, 6, 8)

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        net = self.net
        x = net.act1(net.bn1(net.conv_stem(x)))
        outs = []
        for i in range(self.TAPS[-1] + 1):
            x = net.blocks[i](x)
            if i in self.TAPS:
                outs.append(x)
        return tuple(outs)


def timm_trunk(name):
    """(trunk, None) or (None, reason it cannot be built here)."""
    try:
        import timm
    except ImportError:
        return None, 'timm is not importable'
    if not timm.is_model(name):
        return None, f'timm {timm.__version__} has no model {name}'
    return TimmTrunk(timm.create_model(name)), None


def our_backbone(name, widen_factor):
    """(model, None) or (None, why not): looked up by name so members still being written are skipped."""
    from mmdet.registry import MODELS
    if MODELS.get(name) is None:
        return None, f'{name} is not registered in mmdet MODELS after `import mmghost`'
    return MODELS.build(dict(type=name, widen_factor=widen_factor)), None


def inference(model, x):
    def fn():
        with torch.no_grad(), autocast(str(x.device)):
            return model(x)
    return fn


def family_entry(name):
    return next(entry for entry in FAMILY if entry[0] == name)


def inputs(args):
    x = {'nchw': torch.rand(args.batch, 3, *args.size, device=args.device)}
    x['channels_last'] = x['nchw'].contiguous(memory_format=torch.channels_last)
    return x


def run_backbones(args, report, clock, name, models_out):
    """Eager throughput of one family member; leaves its deploy model in ``models_out`` for the compile step."""
    device = args.device
    _, width, timm_name = family_entry(name)
    what = f'backbones/{name}'
    if not clock.fits(args.estimates['backbones']):
        report.skip(what, f'time budget: {clock.left():.0f} s left')
        return
    table = report.data['backbones'][name] = dict(ours=f'{name}-{width}x', timm=timm_name, cases={})
    try:
        eval_model, why = our_backbone(name, width)
        if eval_model is None:
            table['skipped'] = why
            report.skip(what, why)
            return
        x = inputs(args)
        eval_model = eval_model.to(device).eval()
        with autocast(device):  # the default layout is a fixed rule (default_channels_last), timed here
            deploy = copy.deepcopy(eval_model).switch_to_deploy()
        default_layout = 'channels_last' if deploy.channels_last else 'nchw'
        other_layout = 'nchw' if deploy.channels_last else 'channels_last'
        other = copy.deepcopy(eval_model).switch_to_deploy(channels_last=other_layout == 'channels_last')
        cases = {'eval': inference(eval_model, x['nchw']),
                 f'deploy-{default_layout} (default)': inference(deploy, x[default_layout]),
                 f'deploy-{other_layout}': inference(other, x[other_layout])}
        trunk, why = timm_trunk(timm_name)
        if trunk is None:
            table['timm_skipped'] = why
            report.skip(f'{what}/timm', why)
        else:
            trunk = trunk.to(device).eval()
            trunk_cl = copy.deepcopy(trunk).to(memory_format=torch.channels_last)
            cases['timm-eager-nchw'] = inference(trunk, x['nchw'])
            cases['timm-eager-channels_last'] = inference(trunk_cl, x['channels_last'])
        rows = time_interleaved(cases, device, args.iters, args.repeats, args.warmup, args.batch)
        table['cases'].update(rows)
        t_default = rows[f'deploy-{default_layout} (default)']['ms_per_batch']
        t_other = rows[f'deploy-{other_layout}']['ms_per_batch']
        table['deploy_layout'] = dict(default=default_layout, faster=default_layout if t_default <= t_other
                                      else other_layout, default_over_faster=t_default / min(t_default, t_other))
        if trunk is not None:
            ref = rows['timm-eager-nchw']['images_per_s']
            for row in rows.values():
                row['x_timm_eager_nchw'] = row['images_per_s'] / ref
        models_out[name] = dict(deploy=deploy, layout=default_layout, trunk=trunk)
    except Exception as exc:  # one member's failure must not cost the others' figures
        report.error(what, exc)
    report.write()
    free_memory(device)


def held_for_backward(model, x, device):
    """Memory a train-mode forward leaves for backward: CUDA allocator bytes and autograd's saved tensors."""
    model.zero_grad(set_to_none=True)
    free_memory(device)
    row = {}
    if device.startswith('cuda'):
        sync(device)
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    with autocast(device):
        outs, saved = saved_tensor_bytes(lambda: model(x))
    if device.startswith('cuda'):
        sync(device)
        row['held_after_forward_mib'] = (torch.cuda.memory_allocated() - before) / 2**20
    row['saved_tensors_mib'] = saved / 2**20
    sum(o.float().mean() for o in outs).backward()
    if device.startswith('cuda'):
        sync(device)
        row['peak_forward_backward_mib'] = (torch.cuda.max_memory_allocated() - before) / 2**20
    del outs
    model.zero_grad(set_to_none=True)
    return row


def run_activation_memory(args, report, clock, name):
    device = args.device
    _, _, timm_name = family_entry(name)
    what = f'activation_memory/{name}'
    if not clock.fits(args.estimates['activation_memory']):
        report.skip(what, f'time budget: {clock.left():.0f} s left')
        return
    table = report.data['activation_memory'][name] = dict(ours=f'{name}-1.0x', timm=timm_name)
    try:
        ours, why = our_backbone(name, 1.0)
        if ours is None:
            table['skipped'] = why
            report.skip(what, why)
            return
        x = torch.rand(args.train_batch, 3, *args.size, device=device)
        trunk, why = timm_trunk(timm_name)
        table['ours_row'] = held_for_backward(ours.to(device).train(), x, device)
        del ours
        if trunk is None:
            table['timm_skipped'] = why
            report.skip(f'{what}/timm', why)
        else:
            table['timm_row'] = held_for_backward(trunk.to(device).train(), x, device)
            del trunk
            key = 'held_after_forward_mib' if device.startswith('cuda') else 'saved_tensors_mib'
            table['ratio_key'] = key
            table['ours_over_timm'] = table['ours_row'][key] / table['timm_row'][key]
    except Exception as exc:
        report.error(what, exc)
    report.write()
    free_memory(device)


def retinanet(name, device):
    from mmengine.config import Config

    from mmghost.engine import build_detector
    config, override = RETINANETS[name]
    if config.startswith('mmdet::'):
        cfg = Config.fromstring(f'_base_ = {config!r}\n', file_format='.py')  # mmdet:: resolves as a _base_
    else:
        cfg = Config.fromfile(config)
    if override:
        cfg.merge_from_dict(dict(model=override))
    return build_detector(cfg).to(device).train()


def detection_batch(batch, h, w, device, seed=0):
    """uint8 images on the device and 3-6 random boxes each, as a dataloader would give them."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8).to(device))
        n = int(torch.randint(3, 7, (1, ), generator=g))
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = (0.05 + 0.25 * torch.rand(n, 2, generator=g)) * torch.tensor([w, h])
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                             scale_factor=(1.0, 1.0), batch_input_shape=(h, w)))
        sample.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + wh], 1).to(device),
                                           labels=torch.randint(0, 80, (n, ), generator=g).to(device))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def optim_wrapper(model, device, dtype='bfloat16'):
    """mmengine's AMP wrapper on CUDA (what ``tools/train.py --amp`` builds, in ``dtype``); on the CPU, where
    mmengine refuses AmpOptimWrapper, the plain wrapper under an autocast the caller opens (second value)."""
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9, weight_decay=1e-4)
    if device.startswith('cuda'):
        return AmpOptimWrapper(optimizer=optimizer, dtype=dtype), None
    return OptimWrapper(optimizer=optimizer), torch.autocast('cpu', dtype=getattr(torch, dtype))


def unsupported_dtype(exc, dtype):
    """mmcv 2.1's CUDA kernels (focal loss, RoIAlign, NMS) take fp32/fp16 only: the error a bf16 step gives."""
    text = str(exc)
    return dtype == 'bfloat16' and ('BFloat16' in text or 'expected scalar type Float' in text)


def run_training(args, report, clock):
    from mmghost.engine import mmcv_ops_in_float32
    device, (h, w) = args.device, args.size
    if not clock.fits(args.estimates['training']):
        report.skip('training', f'time budget: {clock.left():.0f} s left')
        return
    data = detection_batch(args.train_batch, h, w, device)
    for name in RETINANETS:
        what = f'training/{name}'
        if not clock.fits(args.estimates['training'] / len(RETINANETS)):
            report.skip(what, f'time budget: {clock.left():.0f} s left')
            continue
        try:
            model = retinanet(name, device)
            dtype = 'bfloat16'
            wrapper, outer = optim_wrapper(model, device, dtype)

            def step():
                # As MMGhostRunner trains: mmcv 2.1's focal loss/RoIAlign/NMS kernels get float32 inputs where
                # they have no kernel for the autocast dtype (CUDA bf16; CPU fp16/bf16).
                with mmcv_ops_in_float32():
                    if outer is None:
                        return model.train_step(data, wrapper)
                    with outer:
                        return model.train_step(data, wrapper)

            try:
                step()
            except RuntimeError as exc:
                if not unsupported_dtype(exc, dtype):
                    raise
                # Record why, and still measure the step in fp16 AMP rather than lose the figures.
                report.data['training_notes'].append(
                    f'{name}: bf16 AMP step failed ({str(exc).splitlines()[0][:300]}); measured with fp16 AMP')
                dtype = 'float16'
                model.zero_grad(set_to_none=True)
                wrapper, outer = optim_wrapper(model, device, dtype)
                step()
            for _ in range(args.warmup - 1):  # the first step above was the first warm-up
                step()
            free_memory(device)
            if device.startswith('cuda'):
                torch.cuda.reset_peak_memory_stats()
            times, losses = [], []
            for _ in range(args.train_steps):
                sync(device)
                start = time.perf_counter()
                log_vars = step()
                sync(device)
                times.append(time.perf_counter() - start)
                loss = log_vars['loss']
                losses.append(float(loss.detach() if torch.is_tensor(loss) else loss))
            median = statistics.median(times)
            row = dict(amp_dtype=dtype, ms_per_step=median * 1e3, min_ms=min(times) * 1e3, max_ms=max(times) * 1e3,
                       images_per_s=args.train_batch / median, steps_ms=[round(t * 1e3, 3) for t in times],
                       losses=losses, losses_finite=all(l == l and abs(l) != float('inf') for l in losses),
                       trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad))
            if device.startswith('cuda'):
                row['peak_allocated_mib'] = torch.cuda.max_memory_allocated() / 2**20
                row['peak_reserved_mib'] = torch.cuda.max_memory_reserved() / 2**20
            report.data['training'][name] = row
            del model, wrapper
        except Exception as exc:
            report.error(what, exc)
        report.write()
        free_memory(device)
    rows = report.data['training']
    if 'retinanet-ghostnet-1.1x' in rows:
        ghost = rows['retinanet-ghostnet-1.1x']
        for row in rows.values():
            row['images_per_s_over_ghostnet'] = row['images_per_s'] / ghost['images_per_s']


def run_compiled(args, report, clock, name, models):
    """torch.compile of our deploy model and timm's (channels_last), timed against each other."""
    device = args.device
    what = f'compiled/{name}'
    need = 2 * args.estimates['compile'] + 10
    if not clock.fits(need):
        report.skip(what, f'time budget: {clock.left():.0f} s left, two compiles need ~{need:.0f} s')
        return
    if name not in models:
        report.skip(what, 'no eager model: its backbones step did not run or failed')
        return
    table = report.data['compiled'][name] = dict(backend=args.compile_backend, cases={}, compile_s={})
    try:
        x, entry = inputs(args), models[name]
        compiled = {f'{name}-deploy-compiled': (entry['deploy'], x[entry['layout']])}
        if entry['trunk'] is not None:
            trunk_cl = entry['trunk'].to(memory_format=torch.channels_last)
            compiled['timm-compiled-channels_last'] = (trunk_cl, x['channels_last'])
        cases = {}
        for case, (model, inp) in compiled.items():
            fn = inference(torch.compile(model, backend=args.compile_backend), inp)
            start = time.perf_counter()
            fn()
            sync(device)
            table['compile_s'][case] = time.perf_counter() - start
            args.estimates['compile'] = max(args.estimates['compile'], table['compile_s'][case])
            cases[case] = fn
            report.write()
        rows = time_interleaved(cases, device, args.iters, args.repeats, args.warmup, args.batch)
        table['cases'].update(rows)
        if 'timm-compiled-channels_last' in rows:
            table['ours_over_timm_compiled'] = (rows[f'{name}-deploy-compiled']['images_per_s']
                                                / rows['timm-compiled-channels_last']['images_per_s'])
    except Exception as exc:
        report.error(what, exc)
    report.write()
    torch._dynamo.reset()
    free_memory(device)


def evaluate_goals(data):
    values = {'throughput': data['compiled'].get('GhostNet', {}).get('ours_over_timm_compiled'),
              'activation_memory': data['activation_memory'].get('GhostNet', {}).get('ours_over_timm')}
    goals = {}
    for key, goal in GOALS.items():
        value = values[key]
        passed = None if value is None else (value >= goal['threshold'] if goal['higher_is_better']
                                             else value <= goal['threshold'])
        goals[key] = dict(what=goal['what'], goal=goal['goal'], value=value, passed=passed,
                          measured=value is not None and not data['dry_run'])
    return goals


def environment(device):
    import mmcv
    import mmdet
    import mmengine

    import mmghost
    env = dict(python=platform.python_version(), torch=torch.__version__, mmcv=mmcv.__version__,
               mmengine=mmengine.__version__, mmdet=mmdet.__version__, mmghost=mmghost.__version__,
               host=platform.node(), cpu_threads=torch.get_num_threads())
    try:
        import timm
        env['timm'] = timm.__version__
    except ImportError:
        env['timm'] = None
    try:
        import mmcv.ops  # noqa: F401
        env['mmcv_ops'] = True
    except ImportError as exc:
        env['mmcv_ops'] = f'not importable: {exc}'
    if device.startswith('cuda'):
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=props.total_memory / 2**30,
                   capability='.'.join(map(str, torch.cuda.get_device_capability(device))),
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    else:
        env['cpu'] = platform.processor() or platform.machine()
    return env


def main(argv=None):
    args = parse_args(argv)
    clock = Clock(args.budget_s)
    device = args.device
    if device.startswith('cuda') and not torch.cuda.is_available():
        sys.exit('gpu_benchmark.py: no CUDA device here (use --dry-run on a CPU machine)')
    import mmghost  # noqa: F401  registers the family into mmdet's MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True  # fixed shapes: every case gets cuDNN's fastest algorithms
    data = dict(schema=SCHEMA, dry_run=args.dry_run, complete=False,
                note=('CPU dry run at tiny sizes: these numbers test the script, they are not measurements'
                      if args.dry_run else 'measured; weights random'),
                settings=dict(device=device, size=list(args.size), batch=args.batch, train_batch=args.train_batch,
                              dtype='bf16 autocast', iters=args.iters, repeats=args.repeats, warmup=args.warmup,
                              train_steps=args.train_steps, compile_backend=args.compile_backend,
                              budget_s=args.budget_s, cudnn_benchmark=True, sections=args.sections,
                              families=args.families),
                issue_anchors=ISSUE_ANCHORS, env=environment(device), backbones={}, activation_memory={},
                training={}, training_notes=[], compiled={}, goals={}, skipped=[], errors=[])
    report = Report(args.out, data)
    report.write()
    models = {}
    steps = dict(backbones=lambda name: run_backbones(args, report, clock, name, models),
                 compile=lambda name: run_compiled(args, report, clock, name, models),
                 activation_memory=lambda name: run_activation_memory(args, report, clock, name),
                 training=lambda name: run_training(args, report, clock))
    for section, name in PLAN:
        # compile needs the eager step's models, which run whenever compile is asked for.
        wanted = section in args.sections or (section == 'backbones' and 'compile' in args.sections)
        if not wanted or (name is not None and name not in args.families):
            continue
        step = step_name(section, name)
        if step in args.skip:
            report.skip(step, 'asked (--skip)')
        else:
            steps[section](name)
    data['goals'] = evaluate_goals(data)
    data['elapsed_s'] = clock.elapsed()
    data['complete'] = not data['skipped'] and not data['errors']
    report.write()
    print_summary(data)
    print(f'wrote {args.out}')
    return 0


def print_summary(data):
    print(f"\n{data['note']}; {data['env'].get('gpu', data['env'].get('cpu'))}; torch {data['env']['torch']}; "
          f"timm {data['env']['timm']}; {data['settings']['size']} batch {data['settings']['batch']}")
    for section in ('backbones', 'compiled'):
        for name, table in data[section].items():
            for case, row in table.get('cases', {}).items():
                print(f"{section:<10} {name:<11} {case:<34} {row['ms_per_batch']:>9.2f} ms "
                      f"{row['images_per_s']:>9.1f} img/s")
    for name, table in data['activation_memory'].items():
        print(f"memory     {name:<11} ours {table.get('ours_row')} timm {table.get('timm_row')}")
    for name, row in data['training'].items():
        peak = f" peak {row['peak_allocated_mib']:.0f} MiB" if 'peak_allocated_mib' in row else ''
        print(f"training   {name:<26} {row['images_per_s']:>8.2f} img/s{peak}")
    for key, goal in data['goals'].items():
        print(f"goal {key}: {goal['goal']}, value {goal['value']}, passed {goal['passed']}")
    for item in data['skipped']:
        print(f"skipped {item['what']}: {item['reason']}")
    for item in data['errors']:
        print(f"ERROR {item['what']}: {item['error']}")


if __name__ == '__main__':
    sys.exit(main())
