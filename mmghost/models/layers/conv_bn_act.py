"""Conv + norm (+ activation) units with the module names of the official/timm GhostNet checkpoints.

mmcv's ``ConvModule`` would name its children ``conv``/``bn``/``activate``; the official checkpoints use
positional ``nn.Sequential`` children (``primary_conv.0``/``.1``) and ``conv``/``bn1``/``act1`` for the final
1x1 conv. Building them with mmcv's builders keeps ``conv_cfg``/``norm_cfg``/``act_cfg`` configurable.
"""
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer, build_conv_layer, build_norm_layer


def conv_norm_act(in_channels: int,
                  out_channels: int,
                  kernel_size,
                  stride=1,
                  padding=0,
                  groups: int = 1,
                  conv_cfg: Optional[dict] = None,
                  norm_cfg: dict = dict(type='BN'),
                  act_cfg: Optional[dict] = dict(type='ReLU')) -> nn.Sequential:
    """``nn.Sequential(conv, norm, activation)``: state-dict keys ``0.weight``, ``1.weight``, ``1.running_mean``...

    The conv has no bias (the norm follows). Without ``act_cfg`` the third child is ``nn.Identity`` (no
    parameters, so the keys are the same with or without an activation, as in the official code).
    """
    return nn.Sequential(
        build_conv_layer(conv_cfg, in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         groups=groups, bias=False),
        build_norm_layer(norm_cfg, out_channels)[1],
        build_activation_layer(act_cfg) if act_cfg is not None else nn.Identity())


class ConvBnAct(nn.Module):
    """Conv + norm + activation with the official children names ``conv``, ``bn1``, ``act1``.

    The family's final 1x1 conv (``blocks.9.0``) is one of these in the official and timm checkpoints.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Kernel size (padding ``kernel_size // 2``). Default: 1.
        stride (int): Stride. Default: 1.
        conv_cfg (dict, optional): Config of the conv layer. Default: None (``nn.Conv2d``).
        norm_cfg (dict): Config of the norm layer. Default: ``dict(type='BN')``.
        act_cfg (dict, optional): Config of the activation; None for none. Default: ReLU.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 1,
                 stride: int = 1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU')):
        super().__init__()
        self.conv = build_conv_layer(conv_cfg, in_channels, out_channels, kernel_size, stride=stride,
                                     padding=kernel_size // 2, bias=False)
        self.bn1 = build_norm_layer(norm_cfg, out_channels)[1]
        self.act1 = build_activation_layer(act_cfg) if act_cfg is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv(x)))


def downsample_shortcut(in_channels: int,
                        out_channels: int,
                        kernel_size: int = 3,
                        stride: int = 1,
                        conv_cfg: Optional[dict] = None,
                        norm_cfg: dict = dict(type='BN')) -> nn.Sequential:
    """The Ghost bottleneck's shortcut when the shape changes: depthwise ``kernel_size`` conv (with the block's
    stride) + norm + 1x1 conv + norm, keys ``0-3`` as in the official code; empty (identity) otherwise."""
    if in_channels == out_channels and stride == 1:
        return nn.Sequential()
    return nn.Sequential(
        build_conv_layer(conv_cfg, in_channels, in_channels, kernel_size, stride=stride,
                         padding=(kernel_size - 1) // 2, groups=in_channels, bias=False),
        build_norm_layer(norm_cfg, in_channels)[1],
        build_conv_layer(conv_cfg, in_channels, out_channels, 1, bias=False),
        build_norm_layer(norm_cfg, out_channels)[1])
