"""Function-preserving widening (Net2WiderNet) of GhostNet ImageNet weights to a larger width.

Net2WiderNet (Chen, Goodfellow, Shlens, "Net2Net: Accelerating Learning via Knowledge Transfer", ICLR 2016):
every channel of the wider network is a copy of a channel of the narrower one. The layers that *produce* a
channel copy its weights (conv rows, biases, batch-norm parameters and running statistics); the layers that
*consume* it divide their weights among the copies, so sums over channels are unchanged. Per-channel
operations (depthwise convs, batch norm, ReLU, the SE gate) commute with copying. The wider network then
computes the narrower one's function exactly (up to float rounding).

GhostNet adds three constraints, handled here by giving every channel space a mapping from new to old
channels and sharing mappings where the network ties channels together:

* **The Ghost concatenation.** A Ghost module's output is ``cat(intrinsic, ghosts)``, where ghost ``k`` is a
  depthwise function of intrinsic map ``k // (s - 1)``. Widening the ``m`` intrinsic maps to ``M`` with a mapping
  ``g`` fixes the ghost half too: ghost ``K*(s-1)+r`` copies old ghost ``g(K)*(s-1)+r``. So a Ghost module's
  output mapping is *ghost-structured*: built from one intrinsic mapping, on both halves of the concatenation.
  (The official code keeps the first ``n`` of the ``m*s`` maps; GhostNet's widths are multiples of 4 and
  ``s = 2``, so nothing is cut. Widening a module that does cut is refused.)
* **Residual streams.** A bottleneck with an identity shortcut adds its ``ghost2`` output to its input, so both
  must have the same mapping: a chain of identity shortcuts is one channel space, ghost-structured because
  ``ghost2`` produces it; the stem (which feeds the identity shortcut of ``blocks.0.0``) and each projection
  shortcut (``shortcut.2``) simply produce the mapping of the stream they start.
* **SE.** The squeeze width also grows (``make_divisible(c / 4, 4)``): it is a channel space of its own between
  ``conv_reduce`` (producer) and ``conv_expand`` (consumer); the gate's channels follow the block's mid channels.

The final 1x1 conv (``960 * alpha`` channels) is a free channel space consumed by ``conv_head`` after global
pooling; ``conv_head`` (1280) and ``classifier`` are not widened.

The target shapes come from a model built at the target width (:func:`ghostnet_weight_shapes`), so the channel
counts are exactly the architecture table's ``make_divisible(c * alpha, 4)``. Keys are the official ones
(huawei-noah ``ghostnet_pytorch`` = timm ``ghostnet_100``): ``conv_stem``, ``bn1``,
``blocks.N.M.ghost1.primary_conv.0``, ``...cheap_operation.1``, ``conv_dw``, ``bn_dw``, ``se.conv_reduce``,
``shortcut.0-3``, ``blocks.9.0.conv``/``bn1``, ``conv_head``, ``classifier``.

The result is a wider network computing the *narrower* network's function (ImageNet top-1 that of the source);
it is a starting point for fine-tuning, not a substitute for weights trained at the wider width.
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Sequence

import torch

from .classifiers import GhostNetClassifier

_BN_PARAMS = ('weight', 'bias', 'running_mean', 'running_var')
_BLOCK_KEY = re.compile(r'^blocks\.(\d+)\.(\d+)\.')


class _Space:
    """A channel space widened from ``src_size`` to ``len(mapping)`` channels; ``mapping[i]`` is the old channel
    that new channel ``i`` copies. Consumers divide their weights by ``counts[mapping]``."""

    def __init__(self, mapping: torch.Tensor, src_size: int, intrinsic: Optional['_Space'] = None,
                 ratio: int = 1):
        self.mapping = mapping
        self.src_size = src_size
        self.intrinsic = intrinsic  # for a ghost-structured space: the mapping of its intrinsic half
        self.ratio = ratio
        counts = torch.bincount(mapping, minlength=src_size)
        if counts.numel() != src_size or bool((counts == 0).any()):
            raise AssertionError('a widening mapping must copy every old channel at least once')
        self.divisor = counts.to(torch.float64)[mapping]

    @property
    def dst_size(self) -> int:
        return self.mapping.numel()


class _Widener:
    """Walks the official layout in forward order (stem, ``blocks.N.M``, final conv, head), choosing each channel
    space's mapping where it is produced and applying it to every tensor that produces or consumes it."""

    def __init__(self, src: Mapping[str, torch.Tensor], shapes: Mapping[str, Sequence[int]], generator):
        self.src = src
        self.shapes = shapes
        self.generator = generator
        self.out: Dict[str, torch.Tensor] = OrderedDict()

    # -- channel spaces -------------------------------------------------------------------------------------
    def plain(self, src_size: int, dst_size: int, what: str) -> _Space:
        if dst_size < src_size:
            raise ValueError(f'{what}: cannot widen {src_size} channels to fewer ({dst_size}); '
                             'the target width must not be smaller than the source width')
        extra = torch.randint(0, src_size, (dst_size - src_size, ), generator=self.generator)
        return _Space(torch.cat([torch.arange(src_size), extra]), src_size)

    def ghost(self, src_size: int, dst_size: int, ratio: int, what: str) -> _Space:
        """A ghost-structured space: ``src_size / ratio`` intrinsic maps, each with ``ratio - 1`` ghosts."""
        if src_size % ratio or dst_size % ratio:
            raise ValueError(f'{what}: {src_size} -> {dst_size} channels are not multiples of the Ghost ratio '
                             f'{ratio}; a Ghost module that drops part of its concatenation cannot be widened')
        m = src_size // ratio
        intrinsic = self.plain(m, dst_size // ratio, what)
        ghosts = (m + intrinsic.mapping[:, None] * (ratio - 1) + torch.arange(ratio - 1)).flatten()
        return _Space(torch.cat([intrinsic.mapping, ghosts]), src_size, intrinsic, ratio)

    # -- tensors --------------------------------------------------------------------------------------------
    def _take(self, key: str) -> torch.Tensor:
        if key not in self.src:
            raise KeyError(f'the source weights have no {key!r}: not a GhostNet in the official layout')
        if key not in self.shapes:
            raise KeyError(f'the target model has no {key!r}')
        return self.src[key]

    def _put(self, key: str, value: torch.Tensor):
        expected = tuple(self.shapes[key])
        if tuple(value.shape) != expected:
            raise ValueError(f'{key}: widened to {tuple(value.shape)} but the target model has {expected}')
        self.out[key] = value.to(self.src[key].dtype).contiguous()

    def conv(self, key: str, out: Optional[_Space], inp: Optional[_Space], depthwise: bool = False):
        """Conv/linear weight ``[out, in, ...]``: rows copied by ``out``, inputs copied by ``inp`` and divided
        among the copies (a depthwise conv's single input follows its output channel: no division)."""
        w = self._take(key).to(torch.float64)
        if out is not None:
            w = w.index_select(0, out.mapping)
        if inp is not None and not depthwise:
            shape = (1, -1) + (1, ) * (w.dim() - 2)
            w = w.index_select(1, inp.mapping) / inp.divisor.reshape(shape)
        self._put(key, w)

    def vector(self, key: str, space: Optional[_Space]):
        v = self._take(key)
        self._put(key, v if space is None else v.index_select(0, space.mapping))

    def bn(self, prefix: str, space: _Space):
        for name in _BN_PARAMS:
            self.vector(f'{prefix}.{name}', space)
        key = f'{prefix}.num_batches_tracked'
        if key in self.src:
            self._put(key, self.src[key].clone())

    # -- GhostNet parts -------------------------------------------------------------------------------------
    def ghost_module(self, prefix: str, inp: _Space, out: _Space):
        primary = self._take(f'{prefix}.primary_conv.0.weight')
        if out.intrinsic is None or primary.shape[0] != out.intrinsic.src_size:
            raise ValueError(f'{prefix}: output channels do not match its {primary.shape[0]} intrinsic maps')
        self.conv(f'{prefix}.primary_conv.0.weight', out.intrinsic, inp)
        self.bn(f'{prefix}.primary_conv.1', out.intrinsic)
        m, big_m = out.intrinsic.src_size, out.intrinsic.dst_size
        ghosts = _Space(out.mapping[big_m:] - m, out.src_size - m)
        self.conv(f'{prefix}.cheap_operation.0.weight', ghosts, None, depthwise=True)
        self.bn(f'{prefix}.cheap_operation.1', ghosts)

    def ratio_of(self, prefix: str) -> int:
        primary = self._take(f'{prefix}.primary_conv.0.weight').shape[0]
        cheap = self._take(f'{prefix}.cheap_operation.0.weight').shape[0]
        if cheap % primary:
            raise ValueError(f'{prefix}: {cheap} ghost maps from {primary} intrinsic maps is not a Ghost module')
        return cheap // primary + 1

    def bottleneck(self, prefix: str, stream: _Space) -> _Space:
        ratio = self.ratio_of(f'{prefix}.ghost1')
        consumer = f'{prefix}.ghost2.primary_conv.0.weight'
        mid = self.ghost(self._take(consumer).shape[1], self.shapes[consumer][1], ratio, f'{prefix}.ghost1')
        self.ghost_module(f'{prefix}.ghost1', stream, mid)
        if f'{prefix}.conv_dw.weight' in self.src:
            self.conv(f'{prefix}.conv_dw.weight', mid, None, depthwise=True)
            self.bn(f'{prefix}.bn_dw', mid)
        if f'{prefix}.se.conv_reduce.weight' in self.src:
            key = f'{prefix}.se.conv_reduce.weight'
            squeeze = self.plain(self._take(key).shape[0], self.shapes[key][0], f'{prefix}.se')
            self.conv(key, squeeze, mid)
            self.vector(f'{prefix}.se.conv_reduce.bias', squeeze)
            self.conv(f'{prefix}.se.conv_expand.weight', mid, squeeze)
            self.vector(f'{prefix}.se.conv_expand.bias', mid)
        if f'{prefix}.shortcut.0.weight' in self.src:  # projection shortcut: a new residual stream starts
            key = f'{prefix}.shortcut.2.weight'
            out = self.ghost(self._take(key).shape[0], self.shapes[key][0], self.ratio_of(f'{prefix}.ghost2'),
                             f'{prefix}.ghost2')
            self.conv(f'{prefix}.shortcut.0.weight', stream, None, depthwise=True)
            self.bn(f'{prefix}.shortcut.1', stream)
            self.conv(key, out, stream)
            self.bn(f'{prefix}.shortcut.3', out)
        else:  # identity shortcut: ghost2 adds into the stream it came from, so it must produce its mapping
            out = stream
            if out.ratio != self.ratio_of(f'{prefix}.ghost2'):
                raise ValueError(f'{prefix}: identity shortcut around a Ghost module of another ratio')
        self.ghost_module(f'{prefix}.ghost2', mid, out)
        return out

    def run(self) -> Dict[str, torch.Tensor]:
        blocks = sorted({(int(m.group(1)), int(m.group(2))) for m in map(_BLOCK_KEY.match, self.src) if m})
        if 'conv_stem.weight' not in self.src or not blocks:
            raise ValueError('not GhostNet weights in the official layout (conv_stem, bn1, blocks.N.M...): '
                             'convert other layouts first')
        first = f'blocks.{blocks[0][0]}.{blocks[0][1]}.ghost2'
        stream = self.ghost(self._take('conv_stem.weight').shape[0], self.shapes['conv_stem.weight'][0],
                            self.ratio_of(first), 'conv_stem')
        self.conv('conv_stem.weight', stream, None)
        self.bn('bn1', stream)
        for stage, index in blocks:
            prefix = f'blocks.{stage}.{index}'
            if f'{prefix}.ghost1.primary_conv.0.weight' in self.src:
                stream = self.bottleneck(prefix, stream)
            elif f'{prefix}.conv.weight' in self.src:  # the final 1x1 ConvBnAct (960 * alpha channels)
                key = f'{prefix}.conv.weight'
                stream_in, stream = stream, self.plain(self._take(key).shape[0], self.shapes[key][0], key)
                self.conv(key, stream, stream_in)
                self.bn(f'{prefix}.bn1', stream)
            else:
                raise ValueError(f'{prefix}: neither a Ghost bottleneck nor the final conv')
        if 'conv_head.weight' in self.src:  # classification head: consumes the pooled final features
            self.conv('conv_head.weight', None, stream)
            self.vector('conv_head.bias', None)
            self.vector('classifier.weight', None)
            self.vector('classifier.bias', None)
        left = sorted(set(self.src) - set(self.out))
        if left:
            raise ValueError(f'unexpected tensors in the source weights (not widened): {left[:8]}')
        return self.out


def widen_ghostnet_weights(state_dict: Mapping[str, torch.Tensor],
                           target_shapes: Mapping[str, Sequence[int]],
                           noise: float = 0.0,
                           seed: int = 0) -> Dict[str, torch.Tensor]:
    """Widen GhostNet weights (official key layout) to the shapes of a wider GhostNet, keeping its function.

    Args:
        state_dict (Mapping[str, Tensor]): Source weights in the official/timm layout, with or without the
            classification head (``conv_head``, ``classifier``).
        target_shapes (Mapping[str, Sequence[int]]): Shape of every tensor of the wider model, by key (see
            :func:`ghostnet_weight_shapes`). Keys of the target that the source lacks are left out.
        noise (float): If > 0, add Gaussian noise of standard deviation ``noise`` times each widened conv/linear
            weight's own standard deviation to it, to break the symmetry between copied channels before
            fine-tuning (the function is then only approximately kept). Default: 0 (exact).
        seed (int): Seed of the random choice of the channels to copy and of the noise. Default: 0.

    Returns:
        dict[str, Tensor]: The widened weights, same keys and dtypes as ``state_dict``.
    """
    if not noise >= 0:
        raise ValueError(f'noise must be >= 0, got {noise!r}')
    generator = torch.Generator().manual_seed(seed)
    out = _Widener(state_dict, target_shapes, generator).run()
    if noise > 0:
        for key, value in out.items():
            if (key.endswith('.weight') and value.dim() >= 2 and value.is_floating_point()
                    and tuple(value.shape) != tuple(state_dict[key].shape)):
                std = float(state_dict[key].double().std()) if state_dict[key].numel() > 1 else 0.0
                out[key] = value + noise * std * torch.randn(value.shape, generator=generator).to(value.dtype)
    return out


def ghostnet_weight_shapes(widen_factor: float, num_classes: int = 1000) -> Dict[str, torch.Size]:
    """Shapes of every tensor of the GhostNet ImageNet classifier at ``widen_factor``, by official key."""
    model = GhostNetClassifier(widen_factor, num_classes=num_classes)
    return OrderedDict((k, v.shape) for k, v in model.state_dict().items())
