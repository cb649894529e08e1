"""DFC attention, GhostNetV2's long-range gate (Tang et al., "GhostNetV2: Enhance Cheap Operation with Long-Range
Attention", NeurIPS 2022, Sec. 3.3, Fig. 4).

Official code: huawei-noah ``ghostnetv2_pytorch/model/ghostnetv2_torch.py`` (``GhostModuleV2.short_conv``), which
timm's ``GhostModuleV2`` and GhostNetV3's ``mode='ori_shortcut_mul_conv15'`` repeat unchanged.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import Sequential

from mmghost.utils.compat import is_compiling


class DFCAttention(Sequential):
    """Decoupled fully connected attention: the gate that multiplies a Ghost module's output.

    The input is average-pooled 2x2, then a ``kernel_size`` conv + norm (the same shape of conv as the Ghost
    module's primary conv, mapping to the module's ``out_channels``), a depthwise (1, 5) conv + norm (the
    "horizontal FC") and a depthwise (5, 1) conv + norm (the "vertical FC"); a sigmoid, and nearest upsampling to
    the Ghost output's size. Half-resolution attention costs a quarter of the FLOPs of full resolution.

    The children are numbered ``0``-``5`` (conv, norm, conv, norm, conv, norm) because official and timm
    checkpoints store this block as ``...ghost1.short_conv.{0..5}.*``.

    Odd sizes follow the official code exactly: the pooling floors (a 7x9 map pools to 3x4, its last row and
    column are not seen) and the nearest upsampling maps output pixel ``i`` to ``floor(i * pooled / size)``. A
    side of one pixel, which the official code cannot pool at all (it fails with an empty output), is not pooled
    along that side here, so GhostNetV2 also runs on inputs smaller than 33 px; this extension applies only in
    eager mode (a traced or compiled graph always pools 2x2).

    Args:
        in_channels (int): Channels of the Ghost module's input.
        out_channels (int): Channels of the Ghost module's output (and of the gate).
        kernel_size (int): Kernel of the first conv (the Ghost module's primary kernel). Default: 1.
        stride (int): Stride of the first conv (the Ghost module's stride). Default: 1.
        conv_cfg (dict, optional): Config of the conv layers. Default: None (``nn.Conv2d``).
        norm_cfg (dict): Config of the norm layers. Default: ``dict(type='BN')``.
        init_cfg (dict or list[dict], optional): Initialization config. Default: None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 1,
                 stride: int = 1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg=None):
        layers = [
            build_conv_layer(
                conv_cfg, in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                bias=False),
            build_norm_layer(norm_cfg, out_channels)[1],
            # Decoupled "FC" along the width, then along the height: depthwise 1x5 and 5x1.
            build_conv_layer(
                conv_cfg, out_channels, out_channels, (1, 5), stride=1, padding=(0, 2), groups=out_channels,
                bias=False),
            build_norm_layer(norm_cfg, out_channels)[1],
            build_conv_layer(
                conv_cfg, out_channels, out_channels, (5, 1), stride=1, padding=(2, 0), groups=out_channels,
                bias=False),
            build_norm_layer(norm_cfg, out_channels)[1],
        ]
        super().__init__(*layers, init_cfg=init_cfg)

    @staticmethod
    def downsample(x: torch.Tensor) -> torch.Tensor:
        """2x2 average pooling, floor mode, as the official code; a 1-pixel side is left unpooled (eager only)."""
        if not (torch.jit.is_tracing() or is_compiling()):
            height, width = x.shape[-2:]
            if height < 2 or width < 2:
                kernel = (min(height, 2), min(width, 2))
                return F.avg_pool2d(x, kernel_size=kernel, stride=kernel)
        return F.avg_pool2d(x, kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """The gate for a Ghost module whose input is ``x`` and whose output has spatial size ``size``.

        Args:
            x (Tensor): The Ghost module's input, (N, in_channels, H, W).
            size (Sequence[int]): (H', W') of the Ghost module's output.

        Returns:
            Tensor: The gate in (0, 1), (N, out_channels, H', W').
        """
        gate = super().forward(self.downsample(x))
        # Sigmoid before upsampling, as the official code ("gate_loc='before'"): nearest upsampling only copies
        # values, so this is the same result for a quarter of the sigmoids.
        return F.interpolate(gate.sigmoid(), size=size, mode='nearest')
