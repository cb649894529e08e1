"""Reading GhostNet-family weights files of every layout, and explaining the ones that do not fit.

The backbones have the official/timm module names, so official ``.pth`` files, timm's ``pytorch_model.bin``
and detector checkpoints load with ``init_cfg=dict(type='SafePretrained', checkpoint=PATH[,
prefix='backbone.'])`` (:mod:`mmghost.models.pretrained`; mmengine's ``Pretrained`` reads them too, unsafely on
torch < 2.6). On that path, besides :data:`WRAPPER_KEYS` and the safetensors test, only two small things the
backbones call while loading come from here: renaming mmghost 0.1's layout (:func:`from_mmghost_01`, V1 only)
and the width-mismatch message (:func:`shape_mismatch_error`).

What mmengine's ``Pretrained`` cannot read is converted once by ``tools/convert_weights.py`` with
:func:`read_trunk_weights`: safetensors files, wrappers other than ``state_dict`` (``model``, ...), unknown
prefixes, and files in mmghost 0.1's layout (mmcv ``ConvModule`` names: ``stem.conv.weight``, ...).
"""
import os
import re
from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log

from mmghost.utils.safe_load import CheckpointError, safe_torch_load

# mmghost 0.1 built its layers from mmcv's ConvModule (``conv``/``bn`` children); these ordered rules rename
# its keys (relative to the trunk) to the official ones; the first match wins. ``blocks.N.M`` is the same.
MMGHOST_01_TO_OFFICIAL: List[Tuple[str, str]] = [
    (r'^stem\.conv\.', 'conv_stem.'),
    (r'^stem\.bn\.', 'bn1.'),
    (r'\.(primary_conv|cheap_operation)\.conv\.', r'.\1.0.'),
    (r'\.(primary_conv|cheap_operation)\.bn\.', r'.\1.1.'),
    (r'\.conv_dw\.conv\.', '.conv_dw.'),
    (r'\.conv_dw\.bn\.', '.bn_dw.'),
    (r'\.shortcut\.0\.conv\.', '.shortcut.0.'),
    (r'\.shortcut\.0\.bn\.', '.shortcut.1.'),
    (r'\.shortcut\.1\.conv\.', '.shortcut.2.'),
    (r'\.shortcut\.1\.bn\.', '.shortcut.3.'),
    (r'^(blocks\.\d+\.0)\.bn\.', r'\1.bn1.'),  # the final 1x1 conv (ConvBnAct)
]
# The stem's conv weight in each layout: how a trunk is found in a file.
STEM_KEYS = {'official': 'conv_stem.weight', 'mmghost-0.1': 'stem.conv.weight'}
# The ImageNet head of the official/timm classifiers; a detection backbone has no use for it.
HEAD_PREFIXES = ('conv_head.', 'classifier.')
# Wrappers that training frameworks put around a state dict, tried in this order.
WRAPPER_KEYS = ('state_dict', 'model', 'model_state_dict', 'model_state', 'net', 'network', 'state_dict_ema',
                'model_ema')
# Widths tried when weights do not fit, to tell the user which width they hold.
COMMON_WIDEN_FACTORS = (0.5, 0.75, 1.0, 1.1, 1.2, 1.3, 1.5, 1.6, 2.0)


def from_mmghost_01(state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Rename mmghost 0.1 trunk keys (``stem.conv.weight``...) to the official ones (other keys unchanged)."""
    out = OrderedDict()
    for key, value in state_dict.items():
        new_key = key
        for pattern, repl in MMGHOST_01_TO_OFFICIAL:
            new_key, n = re.subn(pattern, repl, key)
            if n:
                break
        out[new_key] = value
    return out


def rename_mmghost_01_in_place(state_dict: dict, prefix: str = '') -> int:
    """If ``state_dict`` holds an mmghost 0.1 trunk under ``prefix``, rename its keys in place; return how
    many keys were renamed (0: not that layout)."""
    if prefix + STEM_KEYS['mmghost-0.1'] not in state_dict:
        return 0
    keys = [k for k in state_dict if k.startswith(prefix)]
    renamed = from_mmghost_01(OrderedDict((k[len(prefix):], k) for k in keys))
    count = 0
    for new_key, old_key in renamed.items():
        if prefix + new_key != old_key:
            state_dict[prefix + new_key] = state_dict.pop(old_key)
            count += 1
    return count


# ---- width mismatch ----


def widen_factors_of(backbone_cls) -> Tuple[float, ...]:
    """The widths tried for ``backbone_cls``: its published ones (``weights_widen_factors``, e.g. RepGhostNet's
    0.58 and 1.11) first, then :data:`COMMON_WIDEN_FACTORS`."""
    own = tuple(getattr(backbone_cls, 'weights_widen_factors', ()))
    return own + tuple(w for w in COMMON_WIDEN_FACTORS if w not in own)


def guess_widen_factor(weights: Dict[str, torch.Tensor], backbone_cls,
                       candidates: Optional[Sequence[float]] = None) -> Optional[float]:
    """The first of ``candidates`` (default: :func:`widen_factors_of`) whose :meth:`~GhostNetBase.width_signature`
    fits ``weights`` (trunk keys without prefix), or None."""
    for widen_factor in candidates or widen_factors_of(backbone_cls):
        signature = backbone_cls.width_signature(widen_factor)
        checks = [(weights[k], shape) for k, shape in signature.items() if isinstance(weights.get(k), torch.Tensor)]
        if checks and all(tuple(t.shape) == shape for t, shape in checks):
            return widen_factor
    return None


def shape_mismatch_error(backbone_cls, widen_factor: float, mismatched: List[Tuple[str, tuple, tuple]],
                         weights: Dict[str, torch.Tensor]) -> CheckpointError:
    """The error for weights whose shapes do not fit a backbone, naming both widths when they differ.

    Args:
        backbone_cls: The backbone's class (a :class:`GhostNetBase` subclass).
        widen_factor: The backbone's width.
        mismatched: ``(key, weights shape, model shape)`` per tensor that does not fit.
        weights: The trunk's weights (keys without prefix), to work out their width.
    """
    name = backbone_cls.__name__
    key, got, expected = mismatched[0]
    msg = [f'weights do not fit {name}(widen_factor={widen_factor}): {len(mismatched)} tensors have other shapes, '
           f'e.g. {key}: weights {got} vs model {expected}']
    found = guess_widen_factor(weights, backbone_cls)
    if found is not None and found != widen_factor:
        msg.append(f'the weights hold a {name} of width {found} (widen_factor={found}), the model has width '
                   f'{widen_factor} (widen_factor={widen_factor}): build the model with widen_factor={found} '
                   f'(tools/convert_weights.py --width {found}) or use weights of width {widen_factor}')
    elif found is not None:
        msg.append(f'the channels fit width {found} like the model, so other arguments (ratio, dw_size) or the '
                   'network (GhostNet, GhostNetV2, GhostNetV3, RepGhostNet) differ')
    else:
        msg.append(f'their shapes fit no {name} of the usual widths {widen_factors_of(backbone_cls)}: another '
                   f'width than the model\'s {widen_factor} (widen_factor), or another network')
    return CheckpointError('\n  '.join(msg))


# ---- reading files of every layout (tools/convert_weights.py) ----


def _is_safetensors_file(path: str) -> bool:
    """A safetensors file starts with its JSON header's length (8 bytes, little endian), then the ``{``."""
    with open(path, 'rb') as f:
        head = f.read(9)
    return (len(head) == 9 and head[8:9] == b'{'
            and 0 < int.from_bytes(head[:8], 'little') <= os.path.getsize(path) - 8)


def read_weights_file(path: Union[str, os.PathLike]) -> dict:
    """Read a ``.pth``/``.pt``/``.bin``/``.ckpt`` (``safe_torch_load``: nothing in the pickle runs) or a
    ``.safetensors`` file (recognised by its content too: Hugging Face downloads get renamed)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'weights file not found: {path}')
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


def unwrap_state_dict(obj) -> 'OrderedDict[str, torch.Tensor]':
    """The tensors of a loaded file, looking inside the usual wrappers (``state_dict``, ``model``, ...)."""
    while isinstance(obj, dict) and not _is_state_dict(obj):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise CheckpointError(f'not a GhostNet weights file: expected a dict of tensors, found {type(obj).__name__}')
    tensors = OrderedDict((k, v) for k, v in obj.items() if isinstance(v, torch.Tensor))
    if not tensors:
        raise CheckpointError(
            f'not a GhostNet weights file: no tensors found (top-level keys: {sorted(map(str, obj))[:10]})')
    return tensors


def find_trunk(state_dict: Dict[str, torch.Tensor],
               prefix: Optional[str] = None) -> Tuple['OrderedDict[str, torch.Tensor]', str, str]:
    """Find the GhostNet trunk in a state dict by its stem key.

    Args:
        state_dict: Unwrapped tensors.
        prefix: Prefix of the trunk's keys (e.g. ``'backbone.'``); found from the stem key when None.

    Returns:
        (the trunk's tensors without the prefix, as in the file, its layout ``'official'`` or
        ``'mmghost-0.1'``, the prefix).
    """
    if prefix is None:
        candidates = sorted({key[:-len(stem)] for key in state_dict for stem in STEM_KEYS.values()
                             if key.endswith(stem) and (key == stem or key[:-len(stem)].endswith('.'))},
                            key=len)
        if not candidates:
            raise CheckpointError(
                'not a GhostNet weights file: no stem weight (conv_stem.weight or stem.conv.weight) found; '
                f'first keys: {list(state_dict)[:5]}')
        if len(candidates) > 1 and not all(c.startswith('module.') or c == '' for c in candidates):
            print_log(f'several GhostNets in the file (prefixes {candidates}); using {candidates[0]!r}. '
                      'Pass prefix= to choose another.', logger='current', level=30)
        prefix = candidates[0]
    selected = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items() if k.startswith(prefix))
    # DataParallel / DistributedDataParallel wrap every key once more.
    if selected and all(k.startswith('module.') for k in selected):
        selected = OrderedDict((k[len('module.'):], v) for k, v in selected.items())
    layout = next((name for name, stem in STEM_KEYS.items() if stem in selected), None)
    if layout is None:
        raise CheckpointError(f'no GhostNet stem under prefix {prefix!r} in the file')
    return selected, layout, prefix


class TrunkWeights(NamedTuple):
    """The GhostNet trunk found in a weights file (see :func:`read_trunk_weights`)."""
    tensors: 'OrderedDict[str, torch.Tensor]'  # official key names, no prefix; head keys included if present
    layout: str  # layout of the file: 'official' (official/timm/mmghost >= 0.2 names) or 'mmghost-0.1'
    prefix: str  # the prefix the keys had in the file, e.g. 'backbone.'
    source: str  # file name, or '<dict>'
    num_ignored: int  # tensors outside the prefix (a detector's neck and head, ...)

    def trunk(self) -> 'OrderedDict[str, torch.Tensor]':
        """The tensors without the ImageNet head (``conv_head``, ``classifier``)."""
        return OrderedDict((k, v) for k, v in self.tensors.items() if not k.startswith(HEAD_PREFIXES))

    def head(self) -> 'OrderedDict[str, torch.Tensor]':
        return OrderedDict((k, v) for k, v in self.tensors.items() if k.startswith(HEAD_PREFIXES))


def read_trunk_weights(weights: Union[str, os.PathLike, dict],
                       prefix: Optional[str] = None,
                       source: Optional[str] = None) -> TrunkWeights:
    """Read (safely), unwrap and select the GhostNet trunk of a file or loaded dict, in the official layout.

    Args:
        weights: A path (``.pth``/``.bin``/``.safetensors``...), a state dict or a wrapped checkpoint dict.
        prefix: Prefix of the trunk's keys; found from the stem key when None.
        source: Name shown in messages; defaults to the path.

    Raises:
        CheckpointError: missing, unreadable, truncated or unsafe file, or no GhostNet inside.
    """
    if isinstance(weights, (str, os.PathLike)):
        source = source or os.fspath(weights)
        weights = read_weights_file(weights)
    state_dict = unwrap_state_dict(weights)
    tensors, layout, prefix = find_trunk(state_dict, prefix)
    if layout == 'mmghost-0.1':
        tensors = from_mmghost_01(tensors)
    num_ignored = sum(not k.startswith(prefix) for k in state_dict)
    return TrunkWeights(tensors, layout, prefix, source or '<dict>', num_ignored)


def summarize_keys(keys: Sequence[str]) -> str:
    """Key prefixes with counts, e.g. ``'classifier.* (2), blocks.9.* (6)'``."""
    counts = OrderedDict()
    for key in keys:
        head = '.'.join(key.split('.')[:2 if key.startswith('blocks.') else 1]) + '.*'
        counts[head] = counts.get(head, 0) + 1
    return ', '.join(f'{head} ({n})' for head, n in counts.items()) or 'none'
