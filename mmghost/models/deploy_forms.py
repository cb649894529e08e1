"""Deploy-time graph forms of a GhostNet-family trunk for CPU runtimes that compute in blocked layouts.

ONNX Runtime runs convs in a blocked layout (NCHWc: blocks of 16 channels with AVX-512, 8 with AVX2) and takes a
depthwise conv or a ``Concat`` into it only when the channel counts are multiples of the block
(``onnxruntime/core/optimizer/nchwc_transformer.cc``: ``TransformConv``, ``TransformConcat``). GhostNet's Ghost
modules concatenate two halves of 8-88 channels (GhostNet-1.1x: 14, 26, 40, 44, ...), so in the plain graph
nearly every Ghost module is wrapped in ``ReorderOutput``/``ReorderInput`` nodes and a ``Concat`` in plain
NCHW (the profile in docs/deploy.md, "Where the time goes").

The forms here rebuild a deployed trunk (:meth:`GhostNetBase.switch_to_deploy` with ``channels_last=False``)
with the same function and standard ONNX ops only:

* ``'padded'``: every Ghost module's intrinsic maps are padded with zero channels to a multiple of ``block``, so
  both halves of its concatenation fill whole blocks; each consumer (depthwise conv, SE, DFC gate, next
  primary conv, shortcut convs, residual adds) gets zero weights at the padded positions, and the taps return
  the original channels.
* ``'split'`` (what :func:`~mmghost.models.deploy_model` uses for ONNX export): ``'padded'`` without the
  concatenations: the two halves of every Ghost module travel as two tensors (depthwise convs, SE gates and
  residual adds act on each half), and a conv that reads both halves is two convs whose outputs are added (ONNX
  Runtime fuses that ``Add`` into its blocked conv's sum input). Only the taps concatenate. A module of at most
  ``block / 2`` intrinsic maps (GhostNet's first bottleneck, at the largest resolution) takes ``'dup'`` instead,
  which fills one block with both halves rather than two blocks half empty.
* ``'dup'``: the primary conv computes the intrinsic maps twice and one depthwise conv (multiplier 1) passes the
  first copy through with delta kernels and makes the ghosts from the second: no concatenation, one tensor,
  halves padded to ``block / 2``, but twice the primary conv's outputs.
* ``'delta'``: each Ghost module's cheap operation becomes one depthwise conv with channel multiplier 2 whose
  first output per channel is the identity (a delta kernel), the channels interleaved. ONNX Runtime does not
  take a grouped conv with multiplier 2 into its blocked layout (``TransformConv`` needs one input channel per
  group *and* as many outputs as groups), so it reorders around every one of them: measured, not recommended.

``'dup'`` and ``'delta'`` apply the cheap operation's activation to the intrinsic maps a second time, so they
(and ``'split'``'s small modules) need an idempotent activation (ReLU, ReLU6, none: the family's).
docs/deploy.md ("Where the time goes") has the measurements.

Outputs equal the deployed trunk's up to float rounding (zero channels and delta kernels are exact). Padding
adds channels the blocked layout would have padded anyway for a conv's output; it is not free where a runtime
does not use blocks (PyTorch NCHW, channels_last): :func:`deploy_model` applies a form only for NCHW on the CPU,
the layout ONNX export uses. Supported: every family backbone (GhostNet, GhostNetV2 with its DFC gates,
GhostNetV3 after re-parameterisation) with Ghost ratio 2; anything else keeps the plain form.
"""
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers.dfc_attention import DFCAttention

__all__ = ['DEPLOY_FORMS', 'TrunkForm', 'apply_deploy_form']

#: Names of the forms :func:`apply_deploy_form` builds, and ``'plain'`` (the deployed trunk as it is).
DEPLOY_FORMS = ('plain', 'padded', 'split', 'dup', 'delta')

# Activations a(a(x)) = a(x): the delta kernels of 'dup' and 'delta' pass intrinsic maps through them again.
IDEMPOTENT = (nn.ReLU, nn.ReLU6, nn.Hardtanh)

# A layout says where the channels of a tensor are: one LongTensor per part (the tensors that stand for it),
# giving for each channel of the part the original channel it holds, or -1 for a zero channel.
Layout = List[torch.Tensor]


class UnsupportedForm(ValueError):
    """The trunk has a module the deploy forms do not rebuild (the caller keeps the plain form)."""


def plain_layout(channels: int) -> Layout:
    return [torch.arange(channels)]


def _padded(slots: torch.Tensor, block: int) -> torch.Tensor:
    pad = -len(slots) % block
    return torch.cat([slots, slots.new_full((pad, ), -1)])


def ghost_layout(intrinsic: int, block: int, form: str) -> Layout:
    """The layout of a Ghost module's output of ``2 * intrinsic`` channels in ``form``: intrinsic maps and ghosts
    each padded to a multiple of ``block`` (``'dup'``: ``block / 2``); two parts (``'split'``), one (``'padded'``,
    ``'dup'``) or interleaved (``'delta'``)."""
    first = _padded(torch.arange(intrinsic), max(block // 2, 1) if form == 'dup' else block)
    second = torch.where(first >= 0, first + intrinsic, first)
    if form == 'delta':
        return [torch.stack([first, second], 1).flatten()]
    return [first, second] if form == 'split' else [torch.cat([first, second])]


def _same(a: Layout, b: Layout) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and bool((x == y).all()) for x, y in zip(a, b))


def _pick(tensor: torch.Tensor, slots: torch.Tensor, dim: int) -> torch.Tensor:
    """``tensor`` indexed by ``slots`` along ``dim``, zero where a slot is -1."""
    picked = tensor.index_select(dim, slots.clamp(min=0).to(tensor.device))
    shape = [1] * tensor.dim()
    shape[dim] = -1
    return picked * (slots >= 0).to(tensor).view(shape)


def _conv_like(conv: nn.Conv2d, in_channels: int, out_channels: int, groups: int, weight, bias) -> nn.Conv2d:
    new = nn.Conv2d(in_channels, out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    groups, bias=bias is not None).to(conv.weight)
    new.weight.data.copy_(weight)
    if bias is not None:
        new.bias.data.copy_(bias)
    return new.requires_grad_(False)


def _unit(sequence: nn.Module) -> tuple:
    """The conv and activation of a deployed conv-norm-act unit (norm folded into an ``nn.Identity``)."""
    children = list(sequence.children())
    if not children or type(children[0]) is not nn.Conv2d:
        raise UnsupportedForm(f'expected a plain nn.Conv2d first in {type(sequence).__name__}')
    rest = [c for c in children[1:] if not isinstance(c, nn.Identity)]
    if len(rest) > 1 or any(isinstance(c, (nn.Conv2d, nn.modules.batchnorm._BatchNorm)) for c in rest):
        raise UnsupportedForm(f'{type(sequence).__name__} is not conv + folded norm + activation')
    return children[0], (rest[0] if rest else None)


class FormConv(nn.Module):
    """A conv from one layout to another: a depthwise conv per part, or a dense conv as one conv per (output
    part, input part) pair whose outputs are added; zero weights and biases at zero channels."""

    def __init__(self, conv: nn.Conv2d, in_layout: Layout, out_layout: Layout, act: Optional[nn.Module] = None):
        super().__init__()
        if type(conv) is not nn.Conv2d or conv.padding_mode != 'zeros':
            raise UnsupportedForm(f'{type(conv).__name__} is not a plain, zero-padded nn.Conv2d')
        weight = conv.weight.detach()
        bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(conv.out_channels)
        self.depthwise = conv.groups > 1
        self.convs = nn.ModuleList()
        if self.depthwise:
            if not (conv.groups == conv.in_channels == conv.out_channels) or not _same(in_layout, out_layout):
                raise UnsupportedForm('a grouped conv that is not depthwise between equal layouts')
            for slots in in_layout:
                self.convs.append(nn.ModuleList([_conv_like(
                    conv, len(slots), len(slots), len(slots), _pick(weight, slots, 0), _pick(bias, slots, 0))]))
        else:
            for out_slots in out_layout:
                rows = _pick(weight, out_slots, 0)
                self.convs.append(nn.ModuleList([
                    _conv_like(conv, len(in_slots), len(out_slots), 1, _pick(rows, in_slots, 1),
                               _pick(bias, out_slots, 0) if i == 0 else None)
                    for i, in_slots in enumerate(in_layout)]))
        self.act = act

    def forward(self, parts: List[torch.Tensor]) -> List[torch.Tensor]:
        outs = []
        for k, convs in enumerate(self.convs):
            if self.depthwise:
                out = convs[0](parts[k])
            else:
                out = convs[0](parts[0])
                for conv, part in zip(convs[1:], parts[1:]):
                    out = out + conv(part)
            outs.append(self.act(out) if self.act is not None else out)
        return outs


class FormGate(nn.Module):
    """DFC attention (:class:`~mmghost.models.layers.DFCAttention`, norms folded) between layouts."""

    def __init__(self, gate: DFCAttention, in_layout: Layout, out_layout: Layout):
        super().__init__()
        children = list(gate.children())
        if len(children) != 6 or not all(isinstance(c, nn.Identity) for c in children[1::2]):
            raise UnsupportedForm('DFC attention whose norms are not folded')
        self.convs = nn.ModuleList([FormConv(children[0], in_layout, out_layout)]
                                   + [FormConv(c, out_layout, out_layout) for c in children[2::2]])

    def forward(self, parts: List[torch.Tensor], size) -> List[torch.Tensor]:
        parts = [DFCAttention.downsample(p) for p in parts]
        for conv in self.convs:
            parts = conv(parts)
        return [F.interpolate(p.sigmoid(), size=size, mode='nearest') for p in parts]


def _delta_and_cheap(cheap: nn.Conv2d, act: Optional[nn.Module], slots: torch.Tensor, form: str):
    """Weights and biases of a depthwise conv that passes the intrinsic maps through (delta kernels, zero bias)
    and makes the ghosts, each on the channels ``slots`` (``-1``: zero)."""
    if act is not None and not isinstance(act, IDEMPOTENT):
        raise UnsupportedForm(f'form {form!r} needs an idempotent activation, got {type(act).__name__}')
    weight = _pick(cheap.weight.detach(), slots, 0)
    bias = _pick(cheap.bias.detach() if cheap.bias is not None else weight.new_zeros(cheap.out_channels), slots, 0)
    delta = torch.zeros_like(weight)
    kh, kw = weight.shape[-2:]
    delta[:, :, kh // 2, kw // 2] = (slots >= 0).to(weight).view(-1, 1)
    return (delta, torch.zeros_like(bias)), (weight, bias)


class DeltaCheap(nn.Module):
    """Form ``'delta'``: intrinsic maps and ghosts from one depthwise conv with channel multiplier 2, whose first
    output per channel is the identity (a delta kernel), so no concatenation; channels come interleaved
    (intrinsic 0, ghost 0, intrinsic 1, ...). The activation runs on the intrinsic maps twice: exact only for
    idempotent activations (ReLU, ReLU6, none)."""

    def __init__(self, cheap: nn.Conv2d, act: Optional[nn.Module], padded: torch.Tensor):
        super().__init__()
        (delta, zero), (weight, bias) = _delta_and_cheap(cheap, act, padded, 'delta')
        m = len(padded)
        self.conv = _conv_like(cheap, m, 2 * m, m, torch.stack([delta, weight], 1).flatten(0, 1),
                               torch.stack([zero, bias], 1).flatten())
        self.act = act

    def forward(self, parts: List[torch.Tensor]) -> List[torch.Tensor]:
        out = self.conv(parts[0])
        return [self.act(out) if self.act is not None else out]


class DupCheap(nn.Module):
    """Form ``'dup'``: the primary conv computes every intrinsic map twice (``[p; p]``), and one depthwise conv
    (channel multiplier 1, which ONNX Runtime's blocked layout takes) passes the first copy through with delta
    kernels and makes the ghosts from the second: ``[p; cheap(p)]`` without a concatenation. Costs a second
    copy of the primary conv's output channels; exact for idempotent activations (ReLU, ReLU6, none)."""

    def __init__(self, cheap: nn.Conv2d, act: Optional[nn.Module], half: torch.Tensor):
        super().__init__()
        (delta, zero), (weight, bias) = _delta_and_cheap(cheap, act, half, 'dup')
        n = 2 * len(half)
        self.conv = _conv_like(cheap, n, n, n, torch.cat([delta, weight]), torch.cat([zero, bias]))
        self.act = act

    def forward(self, parts: List[torch.Tensor]) -> List[torch.Tensor]:
        out = self.conv(parts[0])
        return [self.act(out) if self.act is not None else out]


def module_form(intrinsic: int, block: int, form: str, act: Optional[nn.Module] = None) -> str:
    """The form of one Ghost module: ``form``, except that ``'split'`` takes ``'dup'`` where that pads less: a
    module of at most ``block / 2`` intrinsic maps (GhostNet's first bottleneck: 8) would be split into two
    half-empty blocks, while ``'dup'`` fills one block with both halves for the same primary conv outputs (if
    its cheap operation's activation ``act`` is idempotent)."""
    half = max(block // 2, 1)
    fewer_channels = 2 * -(-intrinsic // half) * half <= -(-intrinsic // block) * block
    if form == 'split' and fewer_channels and (act is None or isinstance(act, IDEMPOTENT)):
        return 'dup'
    return form


class FormGhost(nn.Module):
    """A Ghost module (V1, V2 with or without DFC gate, V3 deployed) in a padded, split or delta form."""

    def __init__(self, module: nn.Module, in_layout: Layout, block: int, form: str):
        super().__init__()
        if not hasattr(module, 'intrinsic_channels'):
            # RepGhost's module adds instead of concatenating: nothing for a form to remove
            raise UnsupportedForm(f'{type(module).__name__} has no Ghost concatenation')
        m = module.intrinsic_channels
        if module.ghost_channels != m or module.out_channels != 2 * m:
            raise UnsupportedForm(f'Ghost ratio other than 2 ({module.out_channels} channels from {m})')
        primary, primary_act = _unit(module.primary_conv)
        cheap, cheap_act = _unit(module.cheap_operation)
        self.form = form = module_form(m, block, form, cheap_act)
        self.layout = ghost_layout(m, block, form)
        if form == 'dup':
            half = self.layout[0][:len(self.layout[0]) // 2]
            self.primary = FormConv(primary, in_layout, [torch.cat([half, half])], primary_act)
            self.cheap = DupCheap(cheap, cheap_act, half)
        else:
            intrinsic = [_padded(torch.arange(m), block)]
            self.primary = FormConv(primary, in_layout, intrinsic, primary_act)
            self.cheap = (DeltaCheap(cheap, cheap_act, intrinsic[0]) if form == 'delta'
                          else FormConv(cheap, intrinsic, intrinsic, cheap_act))
        gate = getattr(module, 'short_conv', None)
        self.gate = FormGate(gate, in_layout, self.layout) if gate is not None else None

    def forward(self, parts: List[torch.Tensor]) -> List[torch.Tensor]:
        intrinsic = self.primary(parts)[0]
        if self.form in ('delta', 'dup'):
            outs = self.cheap([intrinsic])
        else:
            ghosts = self.cheap([intrinsic])[0]
            outs = [intrinsic, ghosts] if self.form == 'split' else [torch.cat([intrinsic, ghosts], dim=1)]
        if self.gate is None:
            return outs
        gates = self.gate(parts, intrinsic.shape[-2:])
        return [o * g for o, g in zip(outs, gates)]


class FormSE(nn.Module):
    """:class:`~mmghost.models.layers.SqueezeExcite` on a layout (squeeze channels padded to the block)."""

    def __init__(self, se: nn.Module, layout: Layout, block: int):
        super().__init__()
        squeeze = [_padded(torch.arange(se.conv_reduce.out_channels), block)]
        self.reduce = FormConv(se.conv_reduce, layout, squeeze, se.act1)
        self.expand = FormConv(se.conv_expand, squeeze, layout)

    def forward(self, parts: List[torch.Tensor]) -> List[torch.Tensor]:
        gates = self.expand(self.reduce([p.mean((2, 3), keepdim=True) for p in parts]))
        return [p * F.hardsigmoid(g) for p, g in zip(parts, gates)]


class FormBottleneck(nn.Module):
    """A Ghost bottleneck (V1/V2, or V3 deployed): ghost1 -> [depthwise stride] -> [SE] -> ghost2, + shortcut."""

    def __init__(self, bottleneck: nn.Module, in_layout: Layout, block: int, form: str):
        super().__init__()
        self.ghost1 = FormGhost(bottleneck.ghost1, in_layout, block, form)
        mid = self.ghost1.layout
        self.conv_dw = None
        if bottleneck.stride > 1:
            if getattr(bottleneck, 'bn_dw', None) is not None and not isinstance(bottleneck.bn_dw, nn.Identity):
                raise UnsupportedForm('the bottleneck\'s depthwise norm is not folded')
            self.conv_dw = FormConv(bottleneck.conv_dw, mid, mid)
        self.se = FormSE(bottleneck.se, mid, block) if bottleneck.se is not None else None
        self.ghost2 = FormGhost(bottleneck.ghost2, mid, block, form)
        self.layout = self.ghost2.layout
        shortcut = list(bottleneck.shortcut.children())
        if not shortcut:
            if not _same(in_layout, self.layout):
                raise UnsupportedForm('an identity shortcut between different layouts')
            self.shortcut = None
        else:
            dw, pw = _unit(nn.Sequential(*shortcut[:2]))[0], _unit(nn.Sequential(*shortcut[2:]))[0]
            self.shortcut = nn.ModuleList([FormConv(dw, in_layout, in_layout), FormConv(pw, in_layout, self.layout)])

    def forward(self, parts: List[torch.Tensor]) -> List[torch.Tensor]:
        out = self.ghost1(parts)
        if self.conv_dw is not None:
            out = self.conv_dw(out)
        if self.se is not None:
            out = self.se(out)
        out = self.ghost2(out)
        short = parts if self.shortcut is None else self.shortcut[1](self.shortcut[0](parts))
        return [o + s for o, s in zip(out, short)]


def restore_plan(layout: Layout, max_slices: int = 4):
    """How to get the original channels back from a tensor in ``layout``: ``('slices', [(part, start, stop)])``,
    runs of consecutive channels to concatenate (the ``'padded'`` and ``'split'`` layouts: two), or, where that
    would take more than ``max_slices`` runs (``'delta'``'s interleaving), ``('gather', positions)`` in the
    parts' concatenation."""
    where = {}
    offset = 0
    for k, slots in enumerate(layout):
        for i, c in enumerate(slots.tolist()):
            if c >= 0:
                where[c] = (k, i, offset + i)
        offset += len(slots)
    runs = []
    for c in range(len(where)):
        k, i, _ = where[c]
        if runs and runs[-1][0] == k and runs[-1][2] == i:
            runs[-1][2] = i + 1
        else:
            runs.append([k, i, i + 1])
    if len(runs) <= max_slices:
        return 'slices', [tuple(run) for run in runs]
    return 'gather', [where[c][2] for c in range(len(where))]


def restore(parts: List[torch.Tensor], plan) -> torch.Tensor:
    """The original channels of ``parts`` (see :func:`restore_plan`)."""
    kind, values = plan
    if kind == 'slices':
        pieces = [parts[k] if (start, stop) == (0, parts[k].shape[1]) else parts[k][:, start:stop]
                  for k, start, stop in values]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
    whole = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    return whole.index_select(1, torch.tensor(values, device=whole.device))


class TrunkForm(nn.Module):
    """A deployed GhostNet-family trunk rebuilt in a deploy form (see the module docstring); called by
    :meth:`GhostNetBase.forward_taps` for the backbone's ``out_indices``.

    Args:
        backbone: A family backbone in deploy mode, NCHW.
        form (str): ``'padded'``, ``'split'``, ``'dup'`` or ``'delta'``.
        block (int): Pad the Ghost modules' halves to a multiple of this many channels (16 serves AVX-512's and
            AVX2's blocks; 1 pads nothing). Default: 16.
    """

    def __init__(self, backbone: nn.Module, form: str = 'split', block: int = 16):
        super().__init__()
        if form not in DEPLOY_FORMS[1:]:
            raise ValueError(f'form must be one of {DEPLOY_FORMS[1:]}, got {form!r}')
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise ValueError(f'block must be an int >= 1, got {block!r}')
        if not backbone.deploy:
            raise ValueError('the backbone must be in deploy mode (switch_to_deploy) first')
        self.form, self.block = form, block
        self.out_indices = tuple(backbone.out_indices)
        if not isinstance(backbone.bn1, nn.Identity):
            raise UnsupportedForm('the stem norm is not folded')
        stem_channels = backbone.conv_stem.out_channels
        if stem_channels % 2:
            raise UnsupportedForm(f'odd stem width {stem_channels}')
        # The stem feeds the first bottleneck's identity shortcut: it gets the layout of a Ghost module's output.
        layout = ghost_layout(stem_channels // 2, block, module_form(stem_channels // 2, block, form))
        self.stem = FormConv(backbone.conv_stem, plain_layout(3), layout, backbone.act1)
        layouts = [layout]  # layout of each output 0..num_stages
        self.stages = nn.ModuleList()
        for stage, group_ids in enumerate(backbone.stage_groups, 1):
            layers = nn.ModuleList()
            for g in group_ids:
                for child in backbone.blocks[g].children():
                    if stage == 5:  # the final 1x1 conv (ConvBnAct)
                        conv, act = _unit(nn.Sequential(child.conv, child.bn1, child.act1))
                        layers.append(FormConv(conv, layout, plain_layout(conv.out_channels), act))
                        layout = plain_layout(conv.out_channels)
                    else:
                        layers.append(FormBottleneck(child, layout, block, form))
                        layout = layers[-1].layout
            self.stages.append(layers)
            layouts.append(layout)
        self.plans = [restore_plan(layout) for layout in layouts]

    def forward(self, x: torch.Tensor) -> tuple:
        parts = self.stem([x])
        outs = [restore(parts, self.plans[0])] if 0 in self.out_indices else []
        for stage, layers in enumerate(self.stages, 1):
            for layer in layers:
                parts = layer(parts)
            if stage in self.out_indices:
                outs.append(restore(parts, self.plans[stage]))
        return tuple(outs)

    def extra_repr(self) -> str:
        return f'form={self.form!r}, block={self.block}'


def apply_deploy_form(backbone: nn.Module, form: str = 'split', block: int = 16) -> bool:
    """Give a deployed NCHW family backbone a deploy form, in place (``backbone.deploy_form``, a
    :class:`TrunkForm` that :meth:`~GhostNetBase.forward_taps` runs for ``out_indices``); ``'plain'`` removes it.

    Args:
        backbone: A family backbone after ``switch_to_deploy(channels_last=False)``.
        form (str): One of :data:`DEPLOY_FORMS`.
        block (int): Channel block the Ghost modules' halves are padded to. Default: 16.

    Returns:
        bool: True if the form was applied.

    Raises:
        ValueError: Bad ``form``/``block``, a channels_last backbone, or a trunk the forms do not cover
            (:class:`UnsupportedForm`, a ValueError: e.g. Ghost ratio other than 2).
    """
    if form not in DEPLOY_FORMS:
        raise ValueError(f'form must be one of {DEPLOY_FORMS}, got {form!r}')
    if form == 'plain':
        if getattr(backbone, 'deploy_form', None) is not None:
            del backbone.deploy_form
        return False
    if backbone.channels_last:
        raise ValueError('deploy forms are for the NCHW deploy mode (switch_to_deploy(channels_last=False))')
    trunk = TrunkForm(backbone, form, block)
    backbone.deploy_form = trunk.eval()
    return True
