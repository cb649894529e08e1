"""Reading GhostNet weights from every layout users have, into mmghost's :class:`GhostNet`.

Supported sources (one code path for the backbone's ``init_cfg`` and ``tools/convert_weights.py``):

* the official ``state_dict_73.98.pth`` and timm's ``ghostnet_100`` (``pytorch_model.bin`` /
  ``model.safetensors``): plain state dicts with the official keys (``conv_stem``, ``bn1``,
  ``blocks.N.M.ghost1.primary_conv.0.weight``, ...);
* the same inside wrappers (``state_dict``, ``model``, ...) and behind prefixes (``module.``, ``backbone.``, ...);
* mmghost/mmdet checkpoints (``backbone.stem.conv.weight``, ...).

mmghost builds its layers from mmcv's ``ConvModule`` (``conv``/``bn`` children), so official keys are renamed
by :data:`OFFICIAL_TO_MMGHOST`; the numbering ``blocks.N.M`` is the same in both layouts.

Entry points: :func:`load_ghostnet_checkpoint` (the backbone's ``init_cfg``), :func:`read_ghostnet_tensors` +
:func:`convert_ghostnet_checkpoint` (``tools/convert_weights.py``, which writes mmghost-layout checkpoints).
"""
import os
import re
from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import torch
from mmengine.logging import print_log

from mmghost.utils.safe_load import CheckpointError, safe_torch_load

# Ordered (pattern, replacement) rules applied to each official key; the first match wins.
OFFICIAL_TO_MMGHOST: List[Tuple[str, str]] = [
    (r'^conv_stem\.', 'stem.conv.'),
    (r'^bn1\.', 'stem.bn.'),
    (r'\.(primary_conv|cheap_operation)\.0\.', r'.\1.conv.'),
    (r'\.(primary_conv|cheap_operation)\.1\.', r'.\1.bn.'),
    (r'\.conv_dw\.', '.conv_dw.conv.'),
    (r'\.bn_dw\.', '.conv_dw.bn.'),
    (r'\.shortcut\.0\.', '.shortcut.0.conv.'),
    (r'\.shortcut\.1\.', '.shortcut.0.bn.'),
    (r'\.shortcut\.2\.', '.shortcut.1.conv.'),
    (r'\.shortcut\.3\.', '.shortcut.1.bn.'),
    (r'^(blocks\.\d+\.0)\.bn1\.', r'\1.bn.'),  # the final 1x1 ConvBnAct
]
# Classification-only parameters of the official/timm model; a backbone has no use for them.
CLASSIFIER_PREFIXES = ('conv_head.', 'classifier.', 'fc.', 'head.')
# Keys that identify a GhostNet stem in each layout.
STEM_KEYS = {'official': 'conv_stem.weight', 'mmghost': 'stem.conv.weight'}
# Wrappers that training frameworks put around a state dict, tried in this order.
WRAPPER_KEYS = ('state_dict', 'model', 'model_state_dict', 'model_state', 'net', 'network')
# Widths tried when a checkpoint does not fit, to tell the user which width it holds.
COMMON_WIDEN_FACTORS = (0.5, 0.75, 1.0, 1.1, 1.2, 1.3, 1.5, 2.0)


def _is_safetensors_file(path: str) -> bool:
    """A safetensors file starts with its JSON header's length (8 bytes, little endian), then the ``{``."""
    with open(path, 'rb') as f:
        head = f.read(9)
    return (len(head) == 9 and head[8:9] == b'{'
            and 0 < int.from_bytes(head[:8], 'little') <= os.path.getsize(path) - 8)


def read_checkpoint(path: Union[str, os.PathLike]) -> dict:
    """Read a ``.pth``/``.pt``/``.bin``/``.ckpt`` (safe ``torch.load``) or ``.safetensors`` file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint file not found: {path}')
    # By content too: Hugging Face downloads are sometimes renamed, and torch.load's error would be misleading.
    if path.endswith('.safetensors') or _is_safetensors_file(path):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(f'{path} is a safetensors file: pip install safetensors') from None
        try:
            return load_file(path, device='cpu')
        except Exception as e:
            raise CheckpointError(f'cannot read safetensors file {path}: {e}') from None
    return safe_torch_load(path)


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def unwrap_state_dict(obj) -> Dict[str, torch.Tensor]:
    """Return the tensors of a checkpoint, looking inside the usual wrappers (``state_dict``, ``model``...)."""
    while isinstance(obj, dict) and not _is_state_dict(obj):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise CheckpointError(f'not a GhostNet checkpoint: expected a dict of tensors, found {type(obj).__name__}')
    tensors = OrderedDict((k, v) for k, v in obj.items() if isinstance(v, torch.Tensor))
    if not tensors:
        raise CheckpointError(
            f'not a GhostNet checkpoint: no tensors found (top-level keys: {sorted(map(str, obj))[:10]})')
    return tensors


def select_ghostnet(state_dict: Dict[str, torch.Tensor],
                    prefix: Optional[str] = None) -> Tuple[Dict[str, torch.Tensor], str, str]:
    """Find the GhostNet inside a state dict.

    Args:
        state_dict: Unwrapped tensors.
        prefix: Prefix of the GhostNet keys (e.g. ``'backbone.'``); found from the stem key when None.

    Returns:
        (the GhostNet's tensors without the prefix, the layout ``'official'`` or ``'mmghost'``, the prefix).
    """
    if prefix is None:
        candidates = sorted({key[:-len(stem)] for key in state_dict for stem in STEM_KEYS.values()
                             if key.endswith(stem) and (key == stem or key[:-len(stem)].endswith('.'))},
                            key=len)
        if not candidates:
            raise CheckpointError(
                'not a GhostNet checkpoint: no stem weight (conv_stem.weight or stem.conv.weight) found; '
                f'first keys: {list(state_dict)[:5]}')
        if len(candidates) > 1 and not all(c.startswith('module.') or c == '' for c in candidates):
            print_log(f'several GhostNets in the checkpoint (prefixes {candidates}); using {candidates[0]!r}. '
                      'Pass prefix= to choose another.', logger='current', level=30)
        prefix = candidates[0]
    selected = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items() if k.startswith(prefix))
    # DataParallel / DistributedDataParallel wrap every key once more.
    if selected and all(k.startswith('module.') for k in selected):
        selected = OrderedDict((k[len('module.'):], v) for k, v in selected.items())
    layout = next((name for name, stem in STEM_KEYS.items() if stem in selected), None)
    if layout is None:
        raise CheckpointError(f'no GhostNet stem under prefix {prefix!r} in the checkpoint')
    return selected, layout, prefix


def official_to_mmghost(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename official/timm GhostNet keys to mmghost's (classifier keys pass through unchanged)."""
    out = OrderedDict()
    for key, value in state_dict.items():
        new_key = key
        for pattern, repl in OFFICIAL_TO_MMGHOST:
            new_key, n = re.subn(pattern, repl, key)
            if n:
                break
        out[new_key] = value
    return out


def _summarize(keys: List[str]) -> str:
    """Key prefixes up to the second dot with counts, e.g. 'classifier.* (2), blocks.9.* (6)'."""
    counts = OrderedDict()
    for key in keys:
        head = '.'.join(key.split('.')[:2 if key.startswith('blocks.') else 1]) + '.*'
        counts[head] = counts.get(head, 0) + 1
    return ', '.join(f'{head} ({n})' for head, n in counts.items()) or 'none'


class LoadReport:
    """What a checkpoint contributed to a model: loaded, dropped (classifier), missing, unexpected, mismatched."""

    def __init__(self, source: str, layout: str, prefix: str):
        self.source, self.layout, self.prefix = source, layout, prefix
        self.loaded: List[str] = []
        self.dropped: List[str] = []
        self.dropped_tensors: Dict[str, torch.Tensor] = OrderedDict()
        self.missing: List[str] = []
        self.unexpected: List[str] = []
        self.mismatched: List[Tuple[str, tuple, tuple]] = []
        self.notes: List[str] = []
        # The width the checkpoint holds, worked out when its shapes do not fit (None: unknown).
        self.checkpoint_widen_factor: Optional[float] = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def table(self) -> str:
        rows = [('loaded', len(self.loaded), ''), ('dropped (unused)', len(self.dropped),
                                                  _summarize(self.dropped)),
                ('missing', len(self.missing), ', '.join(self.missing[:8])),
                ('unexpected', len(self.unexpected), ', '.join(self.unexpected[:8])),
                ('shape mismatch', len(self.mismatched),
                 ', '.join(f'{k} {tuple(a)} vs model {tuple(b)}' for k, a, b in self.mismatched[:4]))]
        lines = [f'checkpoint {self.source} (layout: {self.layout}, prefix: {self.prefix!r})',
                 f'{"keys":<22}{"count":>6}  examples']
        lines += [f'{name:<22}{count:>6}  {examples}' for name, count, examples in rows]
        lines += [f'note: {note}' for note in self.notes]
        return '\n'.join(lines)

    def error_message(self, widen_factor: Optional[float] = None) -> str:
        msg = [f'checkpoint {self.source} does not fit this GhostNet:']
        if self.mismatched:
            key, ckpt_shape, model_shape = self.mismatched[0]
            msg.append(f'{len(self.mismatched)} tensors have other shapes, e.g. {key}: checkpoint '
                       f'{tuple(ckpt_shape)} vs model {tuple(model_shape)}')
            found = self.checkpoint_widen_factor
            if found is not None and found != widen_factor:
                msg.append(f'the checkpoint holds a GhostNet of width {found} (widen_factor={found}), the model has '
                           f'width {widen_factor} (widen_factor={widen_factor}): build the model with '
                           f'widen_factor={found} (tools/convert_weights.py --width {found}) or use weights of '
                           f'width {widen_factor}')
            elif found is not None:
                msg.append(f'the channels fit width {found} like the model, so the ratio/dw_size or the network '
                           '(e.g. GhostNetV2) differ')
            else:
                msg.append(f'its shapes fit no GhostNet of the usual widths {COMMON_WIDEN_FACTORS}: another '
                           f'width than the model\'s {widen_factor} (widen_factor), or another network')
        if self.missing:
            msg.append(f'{len(self.missing)} model tensors are missing, e.g. {self.missing[:3]}')
        if self.unexpected:
            msg.append(f'{len(self.unexpected)} checkpoint tensors are unknown, e.g. {self.unexpected[:3]}')
        return '\n  '.join(msg)


def match_state_dict(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], source: str = '<dict>',
                     layout: str = 'mmghost', prefix: str = '') -> Tuple[Dict[str, torch.Tensor], LoadReport]:
    """Compare mmghost-layout tensors with ``model.state_dict()``; return the loadable ones and a report."""
    report = LoadReport(source, layout, prefix)
    expected = model.state_dict()
    # A GhostNet built only up to its deepest output has no use for the deeper stages' tensors.
    unused = CLASSIFIER_PREFIXES + tuple(getattr(model, 'unbuilt_prefixes', ()))
    loadable = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith(unused):
            report.dropped.append(key)
            report.dropped_tensors[key] = value
        elif key not in expected:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(expected[key].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(expected[key].shape)))
        else:
            loadable[key] = value
            report.loaded.append(key)
    # Some exports drop BN's step counter; it is not a weight, so its absence is harmless.
    report.missing = [k for k in expected if k not in state_dict and not k.endswith('num_batches_tracked')]
    if report.mismatched:
        report.checkpoint_widen_factor = guess_widen_factor(state_dict)
    return loadable, report


class GhostNetTensors(NamedTuple):
    """The GhostNet found in a checkpoint, before renaming (see :func:`read_ghostnet_tensors`)."""
    tensors: Dict[str, torch.Tensor]  # without the prefix, in the checkpoint's own key layout
    layout: str  # 'official' (official/timm keys) or 'mmghost'
    prefix: str  # the prefix the keys had in the checkpoint, e.g. 'backbone.'
    source: str  # file name, or '<dict>'
    num_ignored: int  # tensors outside the prefix (a detector's neck and head, ...)

    def mmghost_tensors(self) -> Dict[str, torch.Tensor]:
        """The tensors with mmghost's key names."""
        return official_to_mmghost(self.tensors) if self.layout == 'official' else self.tensors


def read_ghostnet_tensors(checkpoint: Union[str, os.PathLike, dict],
                          prefix: Optional[str] = None,
                          source: Optional[str] = None) -> GhostNetTensors:
    """Read (safely), unwrap and select the GhostNet of a checkpoint file or of an already loaded checkpoint.

    Args:
        checkpoint: A path (``.pth``/``.bin``/``.safetensors``...), a state dict or a wrapped checkpoint dict.
        prefix: Prefix of the GhostNet keys; found from the stem key when None.
        source: Name shown in reports; defaults to the path.

    Raises:
        CheckpointError: missing, unreadable, truncated or unsafe file, or no GhostNet inside.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        source = source or os.fspath(checkpoint)
        checkpoint = read_checkpoint(checkpoint)
    state_dict = unwrap_state_dict(checkpoint)
    tensors, layout, prefix = select_ghostnet(state_dict, prefix)
    num_ignored = sum(not k.startswith(prefix) for k in state_dict)
    return GhostNetTensors(tensors, layout, prefix, source or '<dict>', num_ignored)


def prepare_ghostnet_state_dict(model: torch.nn.Module,
                                checkpoint: Union[str, os.PathLike, dict],
                                prefix: Optional[str] = None) -> Tuple[Dict[str, torch.Tensor], LoadReport]:
    """Read, unwrap, select and rename a GhostNet checkpoint for ``model`` (the tool's and the loader's path)."""
    found = read_ghostnet_tensors(checkpoint, prefix)
    return match_state_dict(model, found.mmghost_tensors(), found.source, found.layout, found.prefix)


def guess_widen_factor(state_dict: Dict[str, torch.Tensor],
                       candidates=COMMON_WIDEN_FACTORS) -> Optional[float]:
    """The first of ``candidates`` that explains the channels of ``state_dict`` (mmghost layout), or None.

    Used only to explain a mismatch. It compares the stem's output channels and the input channels of every
    bottleneck and of the final 1x1 conv (each the rounded ``c * widen_factor`` of the architecture table), which
    do not depend on ``ratio``/``dw_size`` and need no model to be built.
    """
    from mmghost.models.backbones.ghostnet import GhostNet, make_divisible
    groups = [group for stage in GhostNet.arch_setting for group in stage]

    def channels(widen_factor):  # key -> (dim, channels) for the given width
        prev = make_divisible(GhostNet.stem_channels * widen_factor, 4)
        expected = {'stem.conv.weight': (0, prev)}
        for g, group in enumerate(groups):
            for m, (_, _, out, _, _) in enumerate(group):
                expected[f'blocks.{g}.{m}.ghost1.primary_conv.conv.weight'] = (1, prev)
                prev = make_divisible(out * widen_factor, 4)
        expected[f'blocks.{len(groups)}.0.conv.weight'] = (1, prev)
        return expected

    for widen_factor in candidates:
        checks = [(state_dict[k], dim, c) for k, (dim, c) in channels(widen_factor).items() if k in state_dict]
        if checks and all(t.dim() > dim and t.shape[dim] == c for t, dim, c in checks):
            return widen_factor
    return None


def _stage_of(model: torch.nn.Module, key: str) -> int:
    """The stage (0 = stem, 1-5) of an mmghost key of ``model`` (a :class:`GhostNet`)."""
    if not key.startswith('blocks.'):
        return 0
    group = int(key.split('.')[1])
    return next(stage for stage, groups in enumerate(model.stage_groups, start=1) if group in groups)


def convert_ghostnet_checkpoint(
        found: GhostNetTensors,
        widen_factor: float = 1.0,
        keep_head: bool = False) -> Tuple[Dict[str, torch.Tensor], LoadReport, torch.nn.Module]:
    """Check every tensor of ``found`` against a GhostNet of ``widen_factor`` and return them in mmghost layout.

    The tensors are matched against the whole trunk (stem, stages 1-4 and the final 1x1 conv), so the result
    serves any ``out_indices``. A checkpoint whose GhostNet stops earlier, e.g. a detector's backbone built up to
    stride 32 (no ``blocks.9``), is matched against a trunk of its depth instead, and the report notes which
    ``out_indices`` the result serves; a stage that is only partly present is an error.

    Args:
        found: From :func:`read_ghostnet_tensors`.
        widen_factor: Width of the GhostNet the weights are for.
        keep_head: Also return the classification head (``conv_head.*``, ``classifier.*``) unchanged, for
            :class:`GhostNetClassifier`; by default it is dropped, as detection does not use it.

    Returns:
        (mmghost-layout tensors in the model's order, the report, the GhostNet they were checked against).
        Nothing is raised for tensors that do not fit: check ``report.ok`` and ``report.error_message()``.
    """
    from mmghost.models.backbones.ghostnet import GhostNet
    tensors = found.mmghost_tensors()

    def match(depth):
        model = GhostNet(widen_factor, out_indices=tuple(range(depth + 1)))
        return (model, ) + match_state_dict(model, tensors, found.source, found.layout, found.prefix)

    model, loadable, report = match(GhostNet.num_outputs - 1)
    if report.missing:
        # Shrink to the stages the checkpoint has, if it has no tensor at all of the deeper ones.
        depth = min(_stage_of(model, k) for k in report.missing) - 1
        deeper = tuple(f'blocks.{g}.' for groups in model.stage_groups[depth:] for g in groups)
        if depth >= 1 and not any(k.startswith(deeper) for k in tensors):
            model, loadable, report = match(depth)
            report.notes.append(f'the checkpoint\'s GhostNet ends at stage {depth} (no '
                                f'{", ".join(p + "*" for p in deeper)}): the result serves out_indices up to {depth}')
    if found.num_ignored:
        report.notes.append(f'{found.num_ignored} tensors outside prefix {found.prefix!r} ignored (detector neck, '
                            'head, ...)')
    state_dict = OrderedDict((k, loadable[k]) for k in model.state_dict() if k in loadable)
    if keep_head:
        head = OrderedDict((k, v) for k, v in report.dropped_tensors.items() if k.startswith(CLASSIFIER_PREFIXES))
        state_dict.update(head)
        if head:
            report.notes.append(f'kept for GhostNetClassifier: {_summarize(list(head))}')
    return state_dict, report, model


def load_ghostnet_checkpoint(model: torch.nn.Module,
                             checkpoint: Union[str, os.PathLike, dict],
                             prefix: Optional[str] = None,
                             logger='current') -> LoadReport:
    """Load a GhostNet checkpoint into ``model`` strictly for every backbone tensor.

    Classifier keys (``conv_head``, ``classifier``) and those of stages the model did not build (deeper than
    its last ``out_indices``) are dropped and reported in the log.

    Raises:
        CheckpointError: unreadable or unsafe file, no GhostNet inside, or any missing, unknown or
            differently-shaped backbone tensor (e.g. a checkpoint of another width).
    """
    loadable, report = prepare_ghostnet_state_dict(model, checkpoint, prefix)
    if not report.ok:
        raise CheckpointError(report.error_message(getattr(model, 'widen_factor', None)))
    model.load_state_dict(loadable, strict=False)
    print_log(f'GhostNet: loaded {len(report.loaded)} tensors from {report.source} '
              f'({report.layout} layout, prefix {report.prefix!r}); dropped as unused (classifier, unbuilt stages): '
              f'{_summarize(report.dropped)}', logger=logger)
    return report
