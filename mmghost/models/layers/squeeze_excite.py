"""Squeeze-and-excitation with GhostNet's hard-sigmoid gate."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer

from .utils import make_divisible


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation with the hard-sigmoid gate ``relu6(x + 3) / 6`` used by the GhostNet family.

    The parameter names (``conv_reduce``, ``conv_expand``) are those of the official and timm checkpoints. The
    input is never modified: the gate multiplies into a new tensor (a forward hook on the module before may
    hold the input).

    Args:
        channels (int): Input and output channels.
        se_ratio (float): The squeeze width is ``make_divisible(channels * se_ratio, divisor)``. Default: 0.25.
        act_cfg (dict): Activation between the two 1x1 convs. Default: ReLU.
        divisor (int): Rounding of the squeeze width. Default: 4.
    """

    def __init__(self, channels: int, se_ratio: float = 0.25, act_cfg: dict = dict(type='ReLU'), divisor: int = 4):
        super().__init__()
        squeeze_channels = make_divisible(channels * se_ratio, divisor)
        self.conv_reduce = nn.Conv2d(channels, squeeze_channels, 1, bias=True)
        self.act1 = build_activation_layer(act_cfg)
        self.conv_expand = nn.Conv2d(squeeze_channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean((2, 3), keepdim=True)
        gate = self.conv_expand(self.act1(self.conv_reduce(gate)))
        return x * F.hardsigmoid(gate)
