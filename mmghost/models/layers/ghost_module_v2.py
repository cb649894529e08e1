"""GhostNetV2's Ghost module: the V1 Ghost module, optionally gated by DFC attention."""
from typing import Optional

import torch

from .dfc_attention import DFCAttention
from .ghost_module import GhostModule


class GhostModuleV2(GhostModule):
    """Ghost module with DFC attention (GhostNetV2 paper Sec. 3.3, Fig. 4; official ``GhostModuleV2``).

    Without attention (``mode='original'`` in the official code) this is exactly :class:`GhostModule`. With
    attention (``mode='attn'``) the module's output is multiplied by the gate :class:`DFCAttention` computes from
    the module's *input*, stored as ``short_conv`` as in the official and timm checkpoints.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Kernel size of the primary conv (and of the attention's first conv). Default: 1.
        stride (int): Stride of the primary conv (and of the attention's first conv). Default: 1.
        ratio (int): Ghost ratio ``s``. Default: 2.
        dw_size (int): Kernel of the cheap depthwise conv. Default: 3.
        attention (bool): Gate the output with DFC attention. Default: True.
        conv_cfg (dict, optional): Config of the conv layers. Default: None (``nn.Conv2d``).
        norm_cfg (dict): Config of the norm layers. Default: ``dict(type='BN')``.
        act_cfg (dict, optional): Activation of the primary and cheap convs; None for none. Default: ReLU.
        memory_efficient (bool): Recompute the cheap operation in backward (see :class:`GhostModule`).
            Default: False.
        init_cfg (dict or list[dict], optional): Initialization config. Default: None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 1,
                 stride: int = 1,
                 ratio: int = 2,
                 dw_size: int = 3,
                 attention: bool = True,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 memory_efficient: bool = False,
                 init_cfg=None):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            ratio=ratio,
            dw_size=dw_size,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            memory_efficient=memory_efficient,
            init_cfg=init_cfg)
        self.short_conv = DFCAttention(
            in_channels, out_channels, kernel_size, stride, conv_cfg=conv_cfg,
            norm_cfg=norm_cfg) if attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.short_conv is None:
            return out
        return out * self.short_conv(x, out.shape[-2:])
