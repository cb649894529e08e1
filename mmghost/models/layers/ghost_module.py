"""The Ghost module of GhostNet (V1), with the official checkpoints' names."""
import math
import numbers
from typing import Optional

import torch
from mmengine.model import BaseModule

from mmghost.utils.compat import is_compiling
from .conv_bn_act import conv_norm_act
from .utils import recompute_in_backward


def check_ratio_and_dw_size(ratio, dw_size):
    """Raise ValueError naming the argument unless ``ratio`` is an int >= 1 and ``dw_size`` an odd int >= 1."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Integral) or ratio < 1:
        raise ValueError(f'ratio (the Ghost ratio s) must be an int >= 1, got {ratio!r}')
    if (isinstance(dw_size, bool) or not isinstance(dw_size, numbers.Integral) or dw_size < 1
            or dw_size % 2 == 0):
        raise ValueError(f'dw_size (the cheap-operation kernel d) must be an odd int >= 1, got {dw_size!r}')


def concat_channels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.cat([a, b], dim=1)``, faster for channels_last inputs (and the same channels_last result).

    Concatenating along the innermost (channel) axis of NHWC views is faster than torch.cat's generic strided
    path along dim 1. Under torch.compile the compiler picks the layout (and torch 2.1's dynamo breaks the graph
    on ``is_contiguous``), so the plain cat is traced there.
    """
    if not is_compiling() and a.dim() == 4 and a.is_contiguous(memory_format=torch.channels_last) and \
            b.is_contiguous(memory_format=torch.channels_last):
        return torch.cat([a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)], dim=3).permute(0, 3, 1, 2)
    return torch.cat([a, b], dim=1)


class GhostModule(BaseModule):
    """Ghost module: a drop-in replacement for a conv layer (GhostNet paper Sec. 3.1, Fig. 2b).

    A primary conv makes ``m = ceil(out_channels / ratio)`` intrinsic maps; a cheap depthwise ``dw_size`` conv
    makes ``(ratio - 1) * m`` ghost maps from them; the two are concatenated and the first ``out_channels`` kept.
    Both convs are followed by a norm layer and, if ``act_cfg`` is given, the activation. Children are named
    as in the official checkpoints: ``primary_conv.0`` (conv), ``primary_conv.1`` (norm), ``primary_conv.2``
    (activation or identity), the same for ``cheap_operation``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels ``n``.
        kernel_size (int): Kernel size of the primary conv. Default: 1.
        stride (int): Stride of the primary conv. Default: 1.
        ratio (int): ``s`` in the paper: every intrinsic map yields ``s - 1`` ghosts. Default: 2.
        dw_size (int): ``d`` in the paper: kernel size of the cheap depthwise conv. Default: 3.
        conv_cfg (dict, optional): Config of the conv layers. Default: None (``nn.Conv2d``).
        norm_cfg (dict): Config of the norm layers. Default: ``dict(type='BN')``.
        act_cfg (dict, optional): Config of the activation; None for a linear module. Default: ReLU.
        memory_efficient (bool): In training, recompute the cheap operation in the backward pass instead of
            keeping its activations (conv output and ghost maps): about a quarter less activation memory for
            GhostNet, for one extra depthwise conv per module. Results, gradients and norm statistics are
            unchanged. Default: False.
        init_cfg (dict or list[dict], optional): Initialization config. Default: None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 1,
                 stride: int = 1,
                 ratio: int = 2,
                 dw_size: int = 3,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 memory_efficient: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg)
        check_ratio_and_dw_size(ratio, dw_size)
        self.out_channels = out_channels
        self.memory_efficient = memory_efficient
        self.intrinsic_channels = math.ceil(out_channels / ratio)
        self.ghost_channels = self.intrinsic_channels * (ratio - 1)
        self.primary_conv = conv_norm_act(
            in_channels, self.intrinsic_channels, kernel_size, stride, kernel_size // 2,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        # ratio == 1 degenerates to a plain conv, as in the official code (a zero-channel cheap op).
        self.cheap_operation = conv_norm_act(
            self.intrinsic_channels, self.ghost_channels, dw_size, 1, dw_size // 2, groups=self.intrinsic_channels,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg) if self.ghost_channels > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intrinsic = self.primary_conv(x)
        if self.cheap_operation is None:
            return intrinsic
        # Under torch.compile the partitioner already chooses what to recompute; the eager trick would only
        # break the graph there.
        if (self.memory_efficient and self.training and torch.is_grad_enabled() and intrinsic.requires_grad
                and not is_compiling()):
            ghosts = recompute_in_backward(self.cheap_operation, self.cheap_operation, intrinsic)
        else:
            ghosts = self.cheap_operation(intrinsic)
        out = concat_channels(intrinsic, ghosts)
        # With widths rounded to multiples of 4 and ratio 2 this slice is empty; skipping it keeps the output
        # contiguous for the next conv.
        if self.intrinsic_channels + self.ghost_channels != self.out_channels:  # static: no tracer warning
            out = out[:, :self.out_channels]
        return out
