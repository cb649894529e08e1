"""Convert GhostNet-family ImageNet weights to a checkpoint mmengine loads as it is, and verify them.

    python tools/convert_weights.py SRC DST [--backbone GhostNet] [--width 1.0] [--prefix backbone.]
        [--keep-head] [--verify]
    python tools/convert_weights.py SRC --verify          # check SRC without writing anything

The backbones have the official/timm key names, so official ``.pth`` files and timm's ``pytorch_model.bin``
load directly through ``init_cfg=dict(type='SafePretrained', checkpoint=PATH)`` (mmengine's ``Pretrained``
reading the file without running code from it; it reads safetensors and the usual wrappers too). This tool is
for what mmengine's ``Pretrained`` cannot read: safetensors files (timm's ``model.safetensors``), wrappers other
than ``state_dict`` (``model``, ``model_state_dict``, ``state_dict_ema``...), ``module.``/other prefixes, and
files saved by mmghost 0.1 (its ``stem.conv.weight``... layout, detector checkpoints included). Files are read with ``torch.load(weights_only)``
semantics (mmghost's ``safe_torch_load``) or safetensors: a pickle that needs code to run is refused.

Every tensor is loaded into the backbone ``--backbone`` (a type name of mmdet's registry: ``GhostNet``,
``GhostNetV2``, ``GhostNetV3``, ``RepGhostNet``; default: the one the keys show) of ``--width`` (default: the width
the shapes show; RepGhostNet weights in the official deploy form go into ``RepGhostNet(reparameterized=True)``
and stay in that form); the printed table lists the loaded, dropped (``conv_head``/``classifier``, which
detection does not use; ``--keep-head`` keeps them for the ImageNet classifiers) and missing keys. DST is
``{'state_dict': <official keys>, 'meta': {...}}``; ``meta['ghostnet_weights']`` records the source (name, sha256,
layout, backbone, width) and statistics of the stride-32 features for a fixed input.

``--verify`` runs every check that applies and reports the largest difference of the stride-32 features:

* DST loaded through mmengine's stock ``init_cfg`` path against the converted tensors;
* against timm's model of that backbone and width (``ghostnet_100``, ``ghostnetv2_130``...) fed the converted
  weights, when timm is importable; otherwise this check is skipped and said so (tests/test_parity.py checks
  the backbones against timm);
* against the statistics stored in SRC, when SRC is a file this tool wrote (no original file needed).

Exit status: 0 success; 1 unusable input (missing, truncated, unsafe or non-GhostNet file, width mismatch);
2 bad arguments; 3 ``--verify`` found a difference above ``--tolerance`` (relative to the features' max |x|).
"""
import argparse
import hashlib
import os
import os.path as osp
import re
import sys
import time
from collections import OrderedDict

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:  # run as `python tools/convert_weights.py` from a checkout without an install
    sys.path.insert(0, ROOT)

import mmghost.models  # noqa: E402,F401  registers the backbones
from mmghost.models.weights import (COMMON_WIDEN_FACTORS, guess_widen_factor, read_trunk_weights,  # noqa: E402
                                    read_weights_file, summarize_keys)
from mmghost.registry import MODELS  # noqa: E402
from mmghost.utils.safe_load import CheckpointError  # noqa: E402
from mmghost.version import __version__  # noqa: E402

META_KEY = 'ghostnet_weights'
# The fixed input of the stored statistics and of --verify: torch.rand from a seeded generator.
INPUT_SEED = 0
INPUT_SHAPE = (1, 3, 224, 224)
# timm's names for the family members and widths it builds.
TIMM_MODELS = {
    'GhostNet': {0.5: 'ghostnet_050', 1.0: 'ghostnet_100', 1.3: 'ghostnet_130'},
    'GhostNetV2': {1.0: 'ghostnetv2_100', 1.3: 'ghostnetv2_130', 1.6: 'ghostnetv2_160'},
    'GhostNetV3': {0.5: 'ghostnetv3_050', 1.0: 'ghostnetv3_100', 1.3: 'ghostnetv3_130', 1.6: 'ghostnetv3_160'},
    'RepGhostNet': {0.5: 'repghostnet_050', 0.58: 'repghostnet_058', 0.8: 'repghostnet_080', 1.0: 'repghostnet_100',
                    1.11: 'repghostnet_111', 1.3: 'repghostnet_130', 1.5: 'repghostnet_150', 2.0: 'repghostnet_200'},
}
# RepGhostNet's two forms: training (``fusion_bn`` branches) and re-parameterised (official deploy form:
# ``cheap_operation`` one conv with bias; GhostNet's and V3's are ``cheap_operation.0``).
REPGHOST_TRAINING_KEY = re.compile(r'\.fusion_bn\.0\.')
REPGHOST_REPARAMETERIZED_KEY = re.compile(r'\.cheap_operation\.(weight|bias)$')
EXIT_BAD_INPUT, EXIT_VERIFY_FAILED = 1, 3
FINAL_CONV = 'blocks.9.'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert GhostNet-family weights (official, timm, wrapped, detector, mmghost 0.1) to a '
        'checkpoint with the official key names')
    parser.add_argument('src', help='source weights (.pth/.pt/.bin/.ckpt/.tar or .safetensors)')
    parser.add_argument('dst', nargs='?', help='checkpoint to write (omit with --verify to only check)')
    parser.add_argument('--backbone', default=None,
                        help='backbone type in mmdet\'s registry (GhostNet, GhostNetV2, GhostNetV3, RepGhostNet); '
                        'default: the one stored in SRC by this tool, else the one its keys show')
    parser.add_argument('--width', type=float, default=None,
                        help='width (widen_factor) the weights are for; default: the width stored in SRC by '
                        'this tool, else the one their shapes show')
    parser.add_argument('--prefix', default=None,
                        help='prefix of the backbone keys in SRC, e.g. "backbone."; default: found from the stem')
    parser.add_argument('--keep-head', action='store_true',
                        help='keep conv_head/classifier in DST (for the ImageNet classifiers); detection drops them')
    parser.add_argument('--verify', action='store_true',
                        help='compare the stride-32 features with timm and/or the statistics stored in SRC')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest accepted |difference| / max|reference feature| for --verify')
    args = parser.parse_args(argv)
    if args.width is not None and not 0 < args.width < float('inf'):
        parser.error(f'--width must be a positive number, got {args.width}')
    if args.dst is None and not args.verify:
        parser.error('give DST to convert to, or --verify to check SRC without converting')
    if args.dst is not None and osp.exists(args.src) and osp.exists(args.dst) and osp.samefile(args.src, args.dst):
        parser.error('DST must not be SRC')
    return args


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def fixed_input(seed: int = INPUT_SEED, shape=INPUT_SHAPE) -> torch.Tensor:
    return torch.rand(tuple(shape), generator=torch.Generator().manual_seed(seed))


def feature_statistics(feature: torch.Tensor) -> dict:
    """A few numbers that pin a feature map down: global mean/std/max|x| and the mean of every channel."""
    f = feature.double()
    return dict(mean=f.mean().item(), std=f.std().item(), abs_max=f.abs().max().item(),
                channel_mean=f.mean((0, 2, 3)).tolist())


def compare_statistics(stats: dict, stored: dict) -> float:
    """The largest difference between two :func:`feature_statistics`, relative to the stored max |x|."""
    if len(stats['channel_mean']) != len(stored['channel_mean']):
        raise CheckpointError(f'stored statistics have {len(stored["channel_mean"])} channels, the features '
                              f'{len(stats["channel_mean"])}')
    diffs = [abs(stats[k] - stored[k]) for k in ('mean', 'std', 'abs_max')]
    diffs += [abs(a - b) for a, b in zip(stats['channel_mean'], stored['channel_mean'])]
    return max(diffs) / max(stored['abs_max'], 1e-12)


def backbone_class(name: str):
    cls = MODELS.get(name)
    if cls is None or not hasattr(cls, 'width_signature'):
        family = sorted(n for n in TIMM_MODELS if MODELS.get(n) is not None)
        raise CheckpointError(f'--backbone {name!r} is not a GhostNet-family backbone of mmdet\'s registry; '
                              f'known: {", ".join(family)}')
    return cls


def guess_backbone(keys) -> str:
    """The family member whose modules the keys show: V3's re-parameterisation branches, V2's DFC attention,
    RepGhostNet's fusion branch or folded cheap operation."""
    if any('_rpr_' in k for k in keys):
        return 'GhostNetV3'
    if any(REPGHOST_TRAINING_KEY.search(k) or REPGHOST_REPARAMETERIZED_KEY.search(k) for k in keys):
        return 'RepGhostNet'
    if any('.short_conv.' in k for k in keys):
        return 'GhostNetV2'
    return 'GhostNet'


def form_kwargs(name: str, keys) -> dict:
    """Constructor arguments for the form of the weights: ``reparameterized=True`` for RepGhostNet weights in the
    official deploy form, nothing otherwise."""
    if name == 'RepGhostNet' and any(REPGHOST_REPARAMETERIZED_KEY.search(k) for k in keys):
        return dict(reparameterized=True)
    return {}


def build_backbone(name: str, widen_factor: float, depth: int = 5, **kwargs):
    """The backbone with outputs 0..depth (depth 5: the whole trunk), random weights, eval mode."""
    return MODELS.build(dict(type=name, widen_factor=widen_factor, out_indices=tuple(range(depth + 1)),
                             **kwargs)).eval()


def load_into(model, tensors) -> tuple:
    """Load ``tensors`` into ``model`` (shape mismatches raise, naming the widths); (missing, unexpected)."""
    result = model.load_state_dict(tensors, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith('num_batches_tracked')]
    return missing, list(result.unexpected_keys)


def convert_trunk(found, name: str, widen_factor: float, keep_head: bool = False):
    """Load ``found``'s trunk into the backbone; return (official-layout state dict, model, report dict).

    A trunk without the final 1x1 conv (``blocks.9``; a detector's backbone built to stride 32) is matched
    against a backbone of that depth, and the report says which ``out_indices`` the result serves.
    """
    trunk, head = found.trunk(), found.head()
    notes = []
    kwargs = form_kwargs(name, trunk)
    model = build_backbone(name, widen_factor, **kwargs)
    missing, unexpected = load_into(model, trunk)
    if missing and all(k.startswith(FINAL_CONV) for k in missing) and not any(k.startswith(FINAL_CONV)
                                                                                 for k in trunk):
        model = build_backbone(name, widen_factor, depth=4, **kwargs)
        missing, unexpected = load_into(model, trunk)
        notes.append(f'the weights end at stage 4 (no {FINAL_CONV}*): the result serves out_indices up to 4')
    if found.num_ignored:
        notes.append(f'{found.num_ignored} tensors outside prefix {found.prefix!r} ignored (detector neck, head, '
                     '...)')
    # The model's own state dict: official names whatever the file had (0.1 layout, timm's V3 names).
    state_dict = OrderedDict(model.state_dict())
    if keep_head and head:
        state_dict.update(head)
        notes.append(f'kept for the ImageNet classifier: {summarize_keys(list(head))}')
    loaded = len(trunk) - len(unexpected)
    report = dict(source=found.source, layout=found.layout, prefix=found.prefix, loaded=loaded,
                  dropped=list(head), missing=missing, unexpected=unexpected, notes=notes)
    return state_dict, model, report


def format_report(report: dict, name: str, widen_factor: float) -> str:
    rows = [('loaded', report['loaded'], ''),
            ('dropped (unused)', len(report['dropped']), summarize_keys(report['dropped'])),
            ('missing', len(report['missing']), ', '.join(report['missing'][:8])),
            ('unexpected', len(report['unexpected']), ', '.join(report['unexpected'][:8]))]
    lines = [f'weights {report["source"]} (layout: {report["layout"]}, prefix: {report["prefix"]!r}) -> '
             f'{name}(widen_factor={widen_factor})', f'{"keys":<22}{"count":>6}  examples']
    lines += [f'{row:<22}{count:>6}  {examples}' for row, count, examples in rows]
    lines += [f'note: {note}' for note in report['notes']]
    return '\n'.join(lines)


def stored_record(checkpoint) -> dict:
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    record = meta.get(META_KEY) if isinstance(meta, dict) else None
    return record if isinstance(record, dict) and 'features' in record else None


def tap(model, out_index: int, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval().forward_taps(x, (out_index, ))[0]


# ---- the reference side of --verify ----


def timm_model(name: str, widen_factor: float):
    """timm's model of a family member at a width, random weights, eval mode; (None, why) without timm.

    Widths timm names (``ghostnet_100``, ``ghostnetv2_130``...) are built by name; others through timm's
    ``_create_ghostnet`` (timm's names pin the width, so ``create_model(..., width=w)`` cannot change it).
    """
    try:
        import timm
    except ImportError:
        return None, 'timm is not importable (pip install timm)'
    widths = TIMM_MODELS.get(name)
    if widths is None:
        return None, f'timm has no {name}'
    timm_name = widths.get(widen_factor)
    if timm_name is not None:
        return timm.create_model(timm_name, pretrained=False).eval(), f'timm {timm.__version__} {timm_name}'
    base = widths[1.0]
    try:
        if name == 'RepGhostNet':
            from timm.models.repghost import _create_repghostnet
            net = _create_repghostnet(base, width=widen_factor, pretrained=False)
        else:
            version = {'GhostNet': {}, 'GhostNetV2': dict(version='v2'), 'GhostNetV3': dict(version='v3')}[name]
            from timm.models.ghostnet import _create_ghostnet
            net = _create_ghostnet(base, width=widen_factor, pretrained=False, **version)
    except (ImportError, TypeError) as e:
        return None, f'timm {timm.__version__} cannot build {name} of width {widen_factor}: {e}'
    return net.eval(), f'timm {timm.__version__} {base} at width {widen_factor}'


def timm_reference(name: str, widen_factor: float, tensors, last_group: int, x: torch.Tensor):
    """timm's model of this backbone and width fed ``tensors`` (the converted weights, official names), run
    through timm's own modules to ``blocks.last_group``; (None, why) when timm cannot provide it."""
    net, net_name = timm_model(name, widen_factor)
    if net is None:
        return None, net_name
    if form_kwargs(name, tensors).get('reparameterized'):
        net.convert_to_deploy()  # timm's RepGhostNet in the official deploy form, as the weights are
        net_name += ' (convert_to_deploy())'
    expected = net.state_dict()
    # timm names the norm of V3's re-parameterisation branches ``bn1`` where the official code (and mmghost)
    # say ``bn``; otherwise the keys are the same.
    tensors = OrderedDict((k, tensors[k] if k in tensors else tensors.get(re.sub(r'\.bn1\.', '.bn.', k)))
                          for k in expected)
    needed = [k for k in expected if not k.startswith(('blocks.', 'conv_head.', 'classifier.'))
              or k.startswith('blocks.') and int(k.split('.')[1]) <= last_group]
    missing = [k for k in needed if tensors[k] is None and not k.endswith('num_batches_tracked')]
    if missing:
        raise CheckpointError(f'cannot fill {net_name} from the weights: missing {missing[:3]}')
    net.load_state_dict(OrderedDict((k, tensors[k]) for k in needed if tensors[k] is not None), strict=False)
    return timm_trunk_features(net, x, (last_group, ))[0], net_name


def timm_trunk_features(net, x: torch.Tensor, groups) -> list:
    """Outputs of ``blocks.N`` for N in ``groups`` (sorted) of an official-structure model (timm's or the
    official code: ``conv_stem``, ``bn1``, ``act1``, ``blocks``), deeper blocks not run."""
    outs = []
    with torch.no_grad():
        y = net.act1(net.bn1(net.conv_stem(x)))
        for i, block in enumerate(net.blocks[:groups[-1] + 1]):
            y = block(y)
            if i in groups:
                outs.append(y)
    return outs


def mmengine_loaded(path_or_state, name: str, widen_factor: float, out_index: int, **kwargs):
    """The backbone initialised through mmengine's stock ``init_cfg`` (Pretrained) from a file."""
    model = MODELS.build(dict(type=name, widen_factor=widen_factor, out_indices=(out_index, ),
                              init_cfg=dict(type='Pretrained', checkpoint=path_or_state), **kwargs))
    model.init_weights()
    return model.eval()


def verify(args, found, src_record, state_dict, model, name, widen_factor, feature_info) -> bool:
    ok = True
    spec = src_record['features'] if src_record else dict(seed=INPUT_SEED, shape=list(INPUT_SHAPE))
    x = fixed_input(spec['seed'], spec['shape'])
    out_index, stride = feature_info['index'], feature_info['reduction']
    ours = tap(model, out_index, x)

    def line(what, diff, rel, passed):
        return (f'verify: stride-{stride} features of {what}, input torch.rand{tuple(x.shape)} seed {spec["seed"]}: '
                f'max |difference| {diff:.3g} = {rel:.3g} x max |x| (tolerance {args.tolerance:g}): '
                f'{"OK" if passed else "FAILED"}')

    def compare(a, b):
        diff = (a - b).abs().max().item()
        return diff, diff / max(b.abs().max().item(), 1e-12)

    # The file users load, through the path they use (mmengine's init_cfg), against the converted tensors.
    if args.dst:
        stock = tap(mmengine_loaded(args.dst, name, widen_factor, out_index, **form_kwargs(name, state_dict)),
                    out_index, x)
        diff, rel = compare(stock, ours)
        passed = rel <= args.tolerance
        ok &= passed
        print(line(f'{args.dst} loaded by init_cfg=dict(type=\'Pretrained\') vs the converted tensors', diff, rel,
                   passed))
    last_group = int(feature_info['module'].split('.')[1])
    ref, ref_name = timm_reference(name, widen_factor, state_dict, last_group, x)
    if ref is None:
        print(f'verify: reference check skipped: {ref_name}; tests/test_parity.py checks the backbones against '
              'timm')
    else:
        diff, rel = compare(ours, ref)
        passed = rel <= args.tolerance
        ok &= passed
        print(line(f'mmghost vs {ref_name}', diff, rel, passed))
    if src_record:
        if src_record['features'].get('out_index') != out_index:
            print(f'verify: stored statistics are for out index {src_record["features"].get("out_index")}, '
                  f'not {out_index}: FAILED')
            return False
        rel = compare_statistics(feature_statistics(ours), src_record['features'])
        passed = rel <= args.tolerance
        ok &= passed
        print(f'verify: stride-{stride} features vs the statistics stored for {src_record.get("source")} (sha256 '
              f'{str(src_record.get("source_sha256"))[:12]}...): max difference {rel:.3g} x max |x| (tolerance '
              f'{args.tolerance:g}): {"OK" if passed else "FAILED"}')
    return ok


def choose_backbone_and_width(args, found, src_record):
    name = args.backbone or (src_record or {}).get('backbone') or guess_backbone(found.tensors)
    cls = backbone_class(name)
    widen_factor = args.width if args.width is not None else (src_record or {}).get('widen_factor')
    if widen_factor is None:
        widen_factor = guess_widen_factor(found.trunk(), cls)
        if widen_factor is None:
            raise CheckpointError(f'the shapes fit no {name} of the widths {COMMON_WIDEN_FACTORS}: give --width '
                                  '(and --backbone)')
    return name, widen_factor


def convert(args) -> int:
    raw = read_weights_file(args.src)
    src_record = stored_record(raw)
    found = read_trunk_weights(raw, args.prefix, source=args.src)
    del raw  # the selected tensors are kept; the rest (optimizer state, ...) can go
    name, widen_factor = choose_backbone_and_width(args, found, src_record)
    state_dict, model, report = convert_trunk(found, name, widen_factor, keep_head=args.keep_head)
    print(format_report(report, name, widen_factor))
    if report['missing'] or report['unexpected']:
        raise CheckpointError(f'the weights do not fit {name}(widen_factor={widen_factor}): '
                              f'{len(report["missing"])} model tensors missing (e.g. {report["missing"][:3]}), '
                              f'{len(report["unexpected"])} unknown (e.g. {report["unexpected"][:3]})')
    # The deepest bottleneck feature the weights cover: stride 32 (out index 4) for any complete trunk.
    feature_info = model.all_feature_info[min(model.out_indices[-1], 4)]
    if args.dst:
        stats = feature_statistics(tap(model, feature_info['index'], fixed_input()))
        record = dict(
            backbone=name,
            widen_factor=widen_factor,
            source=osp.basename(args.src),
            source_sha256=sha256_of(args.src),
            source_layout=found.layout,
            source_prefix=found.prefix,
            out_indices_up_to=model.out_indices[-1],
            num_tensors=len(state_dict),
            keep_head=args.keep_head,
            features=dict(input=f'torch.rand{INPUT_SHAPE} from torch.Generator().manual_seed({INPUT_SEED})',
                          seed=INPUT_SEED, shape=list(INPUT_SHAPE), out_index=feature_info['index'],
                          stride=feature_info['reduction'], **stats))
        meta = dict(mmghost_version=__version__, torch_version=str(torch.__version__),
                    time=time.strftime('%Y%m%d_%H%M%S'), converted_by='tools/convert_weights.py')
        meta[META_KEY] = record
        if osp.dirname(args.dst):
            os.makedirs(osp.dirname(args.dst), exist_ok=True)
        # Written beside DST and renamed into place, so an interrupted run never leaves a half-written DST.
        tmp = f'{args.dst}.tmp{os.getpid()}'
        try:
            torch.save({'state_dict': state_dict, 'meta': meta}, tmp)
            os.replace(tmp, args.dst)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)
        print(f'wrote {args.dst}: {len(state_dict)} tensors, {name} widen_factor={widen_factor}; stride-'
              f'{record["features"]["stride"]} features of the fixed input: mean {stats["mean"]:.6g}, std '
              f'{stats["std"]:.6g}, max |x| {stats["abs_max"]:.6g}')
    if args.verify and not verify(args, found, src_record, state_dict, model, name, widen_factor, feature_info):
        return EXIT_VERIFY_FAILED
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return convert(args)
    except CheckpointError as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == '__main__':
    sys.exit(main())
