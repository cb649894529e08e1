"""Convert GhostNet ImageNet weights to an mmghost checkpoint, and verify them against a reference forward.

    python tools/convert_weights.py SRC DST [--width 1.0] [--prefix backbone.] [--keep-head] [--verify]
    python tools/convert_weights.py SRC --verify          # check SRC without writing anything

SRC is any GhostNet checkpoint mmghost reads (the same code as the backbone's ``init_cfg``, in
:mod:`mmghost.models.checkpoint`): the official ``state_dict_73.98.pth``, timm's ``pytorch_model.bin`` or
``model.safetensors``, such weights inside ``state_dict``/``model`` wrappers or behind ``module.``/``backbone.``
prefixes, an mmdet detector checkpoint with a GhostNet backbone, or a file this tool wrote. Files are read with
``torch.load(weights_only=True)`` or safetensors: a pickle that needs code to run is refused, never executed.

Every tensor is checked against a GhostNet of ``--width``; the printed table lists the loaded, dropped
(``conv_head``/``classifier``, which detection does not use; ``--keep-head`` keeps them for GhostNetClassifier)
and missing keys. DST is ``{'state_dict': <mmghost keys>, 'meta': {...}}``; its ``meta['ghostnet_weights']``
records the source (name, sha256, layout, width) and statistics of the stride-32 features for a fixed input.

``--verify`` runs every check that applies and reports the largest difference of the stride-32 features:

* against the source model's own forward: timm's ``ghostnet_050/100/130`` if timm is importable, otherwise
  the official-structure ``benchmarks/reference_ghostnet.py``, loaded with SRC's tensors (mmghost's side uses
  DST as read back from disk when DST is given);
* against the statistics stored in SRC, when SRC is a file this tool wrote (no original file needed).

Exit status: 0 success; 1 unusable input (missing, truncated, unsafe or non-GhostNet file, width mismatch);
2 bad arguments; 3 ``--verify`` found a difference above ``--tolerance`` (relative to the features' max |x|).
"""
import argparse
import hashlib
import os
import os.path as osp
import sys
import time
from collections import OrderedDict

import torch

# benchmarks/ (the reference model) lives at the repository root, next to this folder.
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.reference_ghostnet import ReferenceGhostNet, official_features  # noqa: E402
from mmghost.models import GhostNet  # noqa: E402
from mmghost.models.checkpoint import (CLASSIFIER_PREFIXES, convert_ghostnet_checkpoint,  # noqa: E402
                                       load_ghostnet_checkpoint, official_to_mmghost, read_checkpoint,
                                       read_ghostnet_tensors)
from mmghost.utils.safe_load import CheckpointError  # noqa: E402
from mmghost.version import __version__  # noqa: E402

META_KEY = 'ghostnet_weights'
# The fixed input of the stored statistics and of --verify: torch.rand from a seeded generator.
INPUT_SEED = 0
INPUT_SHAPE = (1, 3, 224, 224)
# timm's names for the widths it builds; other widths use the official-structure reference.
TIMM_MODELS = {0.5: 'ghostnet_050', 1.0: 'ghostnet_100', 1.3: 'ghostnet_130'}
EXIT_BAD_INPUT, EXIT_VERIFY_FAILED = 1, 3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert GhostNet weights (official, timm, wrapped, detector) to an mmghost checkpoint.')
    parser.add_argument('src', help='source checkpoint (.pth/.pt/.bin/.ckpt or .safetensors)')
    parser.add_argument('dst', nargs='?', help='mmghost checkpoint to write (omit with --verify to only check)')
    parser.add_argument('--width', type=float, default=None,
                        help='GhostNet width (widen_factor) the weights are for; default: the width stored in '
                        'SRC by this tool, else 1.0')
    parser.add_argument('--prefix', default=None,
                        help='prefix of the GhostNet keys in SRC, e.g. "backbone."; default: found from the stem')
    parser.add_argument('--keep-head', action='store_true',
                        help='keep conv_head/classifier in DST (for GhostNetClassifier); detection drops them')
    parser.add_argument('--verify', action='store_true',
                        help='compare the stride-32 features with the reference model and/or the statistics '
                        'stored in SRC')
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


def mmghost_feature(checkpoint, model: GhostNet, out_index: int, x: torch.Tensor) -> torch.Tensor:
    """Load ``checkpoint`` (a path or a checkpoint dict) into ``model`` through the ``init_cfg`` code path and
    return its ``out_index`` feature of ``x``."""
    load_ghostnet_checkpoint(model, checkpoint, logger='silent')
    with torch.no_grad():
        return model.eval()(x)[model.out_indices.index(out_index)]


# ---- the reference side of --verify: the source model's own code, fed the source's tensors ----


def build_reference(widen_factor: float):
    """timm's GhostNet when timm is importable and has this width, else benchmarks' official-structure model.

    Both have the official module names (``conv_stem``, ``bn1``, ``act1``, ``blocks``) and state-dict keys.
    """
    name = TIMM_MODELS.get(widen_factor)
    if name is not None:
        try:
            import timm
        except ImportError:
            timm = None
        if timm is not None:
            return timm.create_model(name, pretrained=False), f'timm {name}'
    return ReferenceGhostNet(widen_factor), 'benchmarks/reference_ghostnet.py (official structure)'


def to_official_layout(found, official_keys) -> OrderedDict:
    """The source's tensors under official key names (mmghost-layout sources are renamed back)."""
    if found.layout == 'official':
        return OrderedDict(found.tensors)
    # official_to_mmghost renames keys and passes values through, so mapping key -> key inverts it.
    names = official_to_mmghost(OrderedDict((k, k) for k in official_keys))
    return OrderedDict((names[k], v) for k, v in found.tensors.items() if k in names)


def reference_feature(found, widen_factor: float, feature_info: dict, x: torch.Tensor):
    """Run ``x`` through the reference model loaded with the source's tensors, up to the feature that mmghost's
    ``feature_info`` describes (``module`` is ``blocks.N``, the same group in both layouts)."""
    model, name = build_reference(widen_factor)
    last_group = int(feature_info['module'].split('.')[1])
    expected = model.state_dict()
    tensors = to_official_layout(found, expected)
    # The stem and the groups up to the tapped one must come from the source; the rest is not run.
    needed = [k for k in expected if not k.startswith(('blocks.', ) + CLASSIFIER_PREFIXES)
              or k.startswith('blocks.') and int(k.split('.')[1]) <= last_group]
    missing = [k for k in needed if k not in tensors and not k.endswith('num_batches_tracked')]
    if missing:
        raise CheckpointError(f'cannot fill the reference model from {found.source}: missing {missing[:3]}')
    model.load_state_dict(OrderedDict((k, tensors[k]) for k in needed if k in tensors), strict=False)
    model.eval()
    with torch.no_grad():
        y = official_features(model, x, (last_group, ))[0]
    return y, name


def stored_record(checkpoint) -> dict:
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    record = meta.get(META_KEY) if isinstance(meta, dict) else None
    return record if isinstance(record, dict) and 'features' in record else None


def verify(args, found, src_record, state_dict, widen_factor, feature_info) -> bool:
    ok = True
    # The statistics were taken on a given input; reuse it so that old files stay comparable.
    spec = src_record['features'] if src_record else dict(seed=INPUT_SEED, shape=list(INPUT_SHAPE))
    x = fixed_input(spec['seed'], spec['shape'])
    out_index, stride = feature_info['index'], feature_info['reduction']
    # mmghost's side: DST as written (the file users load), else the converted tensors in memory, loaded into
    # a fresh detection backbone.
    ours = mmghost_feature(args.dst or {'state_dict': state_dict}, GhostNet(widen_factor, out_indices=(out_index, )),
                           out_index, x)
    ref, ref_name = reference_feature(found, widen_factor, feature_info, x)
    diff = (ours - ref).abs().max().item()
    rel = diff / max(ref.abs().max().item(), 1e-12)
    passed = rel <= args.tolerance
    ok &= passed
    print(f'verify: stride-{stride} features of mmghost vs {ref_name}, input torch.rand{tuple(x.shape)} seed '
          f'{spec["seed"]}: max |difference| {diff:.3g} = {rel:.3g} x max |x| (tolerance {args.tolerance:g}): '
          f'{"OK" if passed else "FAILED"}')
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


def convert(args) -> int:
    raw = read_checkpoint(args.src)
    src_record = stored_record(raw)
    widen_factor = args.width if args.width is not None else (src_record or {}).get('widen_factor', 1.0)
    found = read_ghostnet_tensors(raw, args.prefix, source=args.src)
    del raw  # the selected tensors are kept; the rest (optimizer state, ...) can go
    state_dict, report, model = convert_ghostnet_checkpoint(found, widen_factor, keep_head=args.keep_head)
    print(report.table())
    if not report.ok:
        raise CheckpointError(report.error_message(widen_factor))
    # The deepest bottleneck feature the weights cover: stride 32 (out index 4) for any complete trunk.
    feature_info = model.all_feature_info[min(model.out_indices[-1], 4)]
    if args.dst:
        stats = feature_statistics(
            mmghost_feature({'state_dict': state_dict}, model, feature_info['index'], fixed_input()))
        record = dict(
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
        print(f'wrote {args.dst}: {len(state_dict)} tensors, GhostNet widen_factor={widen_factor}; stride-'
              f'{record["features"]["stride"]} features of the fixed input: mean {stats["mean"]:.6g}, std '
              f'{stats["std"]:.6g}, max |x| {stats["abs_max"]:.6g}')
    if args.verify and not verify(args, found, src_record, state_dict, widen_factor, feature_info):
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
