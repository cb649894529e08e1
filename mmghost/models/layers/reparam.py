"""Re-parameterisable conv-BN branches (GhostNetV3, after RepVGG / MobileOne).

In training a re-parameterised conv is the sum of ``num_convs`` parallel conv + BN branches, an optional 1x1
conv + BN "scale" branch and an optional BN-only "skip" (identity) branch. All of them are linear in the input
once the BNs use their running statistics, so in deployment they fold into a single conv with a bias
(:func:`fuse_rep_branches`), which is what GhostNetV3 runs at inference.

GhostNetV3 keeps each site's branches as three attributes of the module that owns the site,
``<site>_rpr_conv`` (a list of :class:`ConvBN`), ``<site>_rpr_scale`` and ``<site>_rpr_skip`` (official names,
e.g. ``ghost1.primary_rpr_conv.0.conv.weight``), so this file gives the pieces as a branch module and three
functions (build, run, fuse) instead of a wrapper module that would add a level to the checkpoint keys.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import ModuleList, Sequential
from torch.nn.modules.batchnorm import _BatchNorm

IntPair = Union[int, Tuple[int, int]]


class ConvBN(Sequential):
    """A conv without bias followed by a norm layer: one re-parameterisation branch.

    The children are ``conv`` and ``bn``, the names of official GhostNetV3 checkpoints. timm stores the same
    branch as its ``ConvBnAct`` with the norm called ``bn1``; such keys are renamed while loading (whatever the
    loader: ``load_state_dict``, mmengine's ``load_checkpoint`` or ``init_cfg=dict(type='Pretrained')``), so both
    checkpoint flavours load into the same model.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int or tuple[int, int]): Kernel size.
        stride (int): Stride. Default: 1.
        padding (int or tuple[int, int]): Zero padding. Default: 0.
        groups (int): Conv groups. Default: 1.
        conv_cfg (dict, optional): Config of the conv. Default: None (``nn.Conv2d``).
        norm_cfg (dict): Config of the norm layer. Default: ``dict(type='BN')``.
        init_cfg (dict or list[dict], optional): Initialization config. Default: None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: IntPair,
                 stride: int = 1,
                 padding: IntPair = 0,
                 groups: int = 1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.add_module(
            'conv',
            build_conv_layer(
                conv_cfg, in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups,
                bias=False))
        self.add_module('bn', build_norm_layer(norm_cfg, out_channels)[1])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # timm's name for the norm (its checkpoint filter renames official ``bn.`` to ``bn1.``); an official key
        # present as well wins.
        timm_prefix = prefix + 'bn1.'
        for key in [k for k in state_dict if k.startswith(timm_prefix)]:
            official = prefix + 'bn.' + key[len(timm_prefix):]
            value = state_dict.pop(key)
            state_dict.setdefault(official, value)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def fold_norm(kernel: torch.Tensor, norm: nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
    """The kernel and bias of ``norm(conv(x))`` for a bias-free conv with ``kernel``, using running statistics.

    Raises:
        NotImplementedError: If ``norm`` is not a batch norm (only those have statistics to fold).
    """
    if not isinstance(norm, _BatchNorm):
        raise NotImplementedError(
            f'only batch norm folds into a conv; this branch has {type(norm).__name__} (norm_cfg) and cannot be '
            're-parameterised')
    std = (norm.running_var + norm.eps).sqrt()
    scale = norm.weight / std if norm.affine else 1.0 / std
    bias = norm.bias - norm.running_mean * scale if norm.affine else -norm.running_mean * scale
    return kernel * scale.reshape(-1, 1, 1, 1), bias


def identity_kernel(channels: int, groups: int, kernel_size: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """The kernel of a ``groups``-grouped conv with ``channels`` in and out that returns its input."""
    per_group = channels // groups
    kernel = like.new_zeros((channels, per_group, *kernel_size))
    index = torch.arange(channels, device=like.device)
    kernel[index, index % per_group, kernel_size[0] // 2, kernel_size[1] // 2] = 1
    return kernel


def build_rep_branches(in_channels: int,
                       out_channels: int,
                       kernel_size: int,
                       stride: int = 1,
                       groups: int = 1,
                       num_convs: int = 3,
                       with_scale: bool = True,
                       with_skip: bool = False,
                       conv_cfg: Optional[dict] = None,
                       norm_cfg: dict = dict(type='BN')
                       ) -> Tuple[ModuleList, Optional[ConvBN], Optional[nn.Module]]:
    """The branches of one re-parameterised ``kernel_size`` conv (padding ``kernel_size // 2``).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Kernel of the conv branches (odd).
        stride (int): Stride of every branch. Default: 1.
        groups (int): Groups of every conv branch. Default: 1.
        num_convs (int): Number of ``kernel_size`` conv + norm branches. Default: 3.
        with_scale (bool): Add a 1x1 conv + norm branch (only meaningful for ``kernel_size > 1``). Default: True.
        with_skip (bool): Add a norm-only identity branch; needs ``in_channels == out_channels`` and
            ``stride == 1``. Default: False.
        conv_cfg (dict, optional): Config of the convs. Default: None.
        norm_cfg (dict): Config of the norms. Default: ``dict(type='BN')``.

    Returns:
        tuple: ``(convs, scale, skip)``: a ModuleList of :class:`ConvBN`, the scale :class:`ConvBN` or None, the
        skip norm layer or None.
    """
    if with_skip and (in_channels != out_channels or stride != 1):
        raise ValueError(f'an identity branch needs in_channels == out_channels and stride 1, got '
                         f'{in_channels} -> {out_channels}, stride {stride}')
    common = dict(stride=stride, groups=groups, conv_cfg=conv_cfg, norm_cfg=norm_cfg)
    convs = ModuleList([
        ConvBN(in_channels, out_channels, kernel_size, padding=kernel_size // 2, **common) for _ in range(num_convs)
    ])
    scale = ConvBN(in_channels, out_channels, 1, padding=0, **common) if with_scale else None
    skip = build_norm_layer(norm_cfg, in_channels)[1] if with_skip else None
    return convs, scale, skip


def forward_rep_branches(x: torch.Tensor, convs: Sequence[nn.Module], scale: Optional[nn.Module],
                         skip: Optional[nn.Module]) -> torch.Tensor:
    """The training-time output of a re-parameterised conv: the sum of its branches.

    Summed in the official order (scale, skip, then the convs), so eval outputs match official/timm models to
    the last bit where the kernels allow.
    """
    branches = ([scale] if scale is not None else []) + ([skip] if skip is not None else []) + list(convs)
    out = None
    for branch in branches:
        # Not in place: a branch's output may be held by a forward hook.
        out = branch(x) if out is None else out + branch(x)
    return out


@torch.no_grad()
def fuse_rep_branches(convs: Sequence[ConvBN], scale: Optional[ConvBN],
                      skip: Optional[nn.Module]) -> nn.Conv2d:
    """One conv with bias that computes what the branches compute in eval mode (running statistics).

    Raises:
        NotImplementedError: If a branch is not a plain ``nn.Conv2d`` (e.g. a weight-standardised conv) or its
            norm is not a batch norm.
    """
    template: nn.Conv2d = convs[0].conv
    for branch in list(convs) + ([scale] if scale is not None else []):
        if type(branch.conv) is not nn.Conv2d:
            raise NotImplementedError(
                f'only plain nn.Conv2d branches can be fused, got {type(branch.conv).__name__} (conv_cfg)')
    weight = torch.zeros_like(template.weight)
    bias = template.weight.new_zeros(template.out_channels)
    for branch in convs:
        branch_weight, branch_bias = fold_norm(branch.conv.weight, branch.bn)
        weight += branch_weight
        bias += branch_bias
    kernel_h, kernel_w = template.kernel_size
    if scale is not None:
        scale_weight, scale_bias = fold_norm(scale.conv.weight, scale.bn)
        # The 1x1 kernel sits in the centre of the k x k one: with padding k // 2 and the same stride both read
        # the same input pixel.
        pad_h, pad_w = kernel_h // 2, kernel_w // 2
        weight += F.pad(scale_weight, [pad_w, pad_w, pad_h, pad_h])
        bias += scale_bias
    if skip is not None:
        skip_weight, skip_bias = fold_norm(
            identity_kernel(template.in_channels, template.groups, (kernel_h, kernel_w), template.weight), skip)
        weight += skip_weight
        bias += skip_bias
    fused = nn.Conv2d(
        template.in_channels,
        template.out_channels,
        template.kernel_size,
        stride=template.stride,
        padding=template.padding,
        dilation=template.dilation,
        groups=template.groups,
        bias=True).to(device=weight.device, dtype=weight.dtype)
    fused.weight.copy_(weight)
    fused.bias.copy_(bias)
    return fused


__all__ = ['ConvBN', 'fold_norm', 'identity_kernel', 'build_rep_branches', 'forward_rep_branches',
                      'fuse_rep_branches']
