"""GhostNetV3's Ghost module: re-parameterisable primary and cheap convs, optionally DFC attention."""
import math
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer
from mmengine.model import BaseModule

from mmghost.utils.compat import is_compiling
from .dfc_attention import DFCAttention
from .ghost_module import check_ratio_and_dw_size, concat_channels
from .reparam import build_rep_branches, forward_rep_branches, fuse_rep_branches
from .utils import recompute_in_backward


class GhostModuleV3(BaseModule):
    """Ghost module with re-parameterised convs (GhostNetV3 paper, "GhostNetV3: Exploring the Training
    Strategies for Compact Models", Liu et al., 2024, Sec. 3.1; official ``ghostnetv3_pytorch/ghostnetv3.py``).

    In training, the primary conv is the sum of ``num_convs`` conv + norm branches (``primary_rpr_conv``), plus
    a 1x1 conv + norm (``primary_rpr_scale``) when its kernel is larger than 1 and a norm-only identity branch
    (``primary_rpr_skip``) when input and intrinsic channels are equal; the cheap depthwise conv likewise
    (``cheap_rpr_conv``, ``cheap_rpr_scale`` when ``dw_size > 1``, ``cheap_rpr_skip`` when ghost and intrinsic
    channels are equal, i.e. ratio 2). These are the official rules and names; timm's port builds the same
    branches for every width that has weights (it never builds ``primary_rpr_skip`` and always builds
    ``cheap_rpr_scale``, which differ only for other widths or ``dw_size == 1``). With ``attention`` the output
    is gated by DFC attention (``short_conv``, official ``mode='ori_shortcut_mul_conv15'``).

    :meth:`switch_to_deploy` folds each site into one conv with bias: ``primary_conv`` and ``cheap_operation``
    (each ``nn.Sequential(conv, activation)``, as in the official deployed model).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Kernel size of the primary conv. Default: 1.
        stride (int): Stride of the primary conv. Default: 1.
        ratio (int): Ghost ratio ``s``. Default: 2.
        dw_size (int): Kernel of the cheap depthwise conv. Default: 3.
        attention (bool): Gate the output with DFC attention. Default: False.
        num_convs (int): Conv branches per re-parameterised conv. Default: 3 (official).
        conv_cfg (dict, optional): Config of the conv layers. Default: None (``nn.Conv2d``).
        norm_cfg (dict): Config of the norm layers. Default: ``dict(type='BN')``.
        act_cfg (dict, optional): Activation after each site; None for none. Default: ReLU.
        memory_efficient (bool): In training, recompute the cheap site (all its branches) in the backward pass
            instead of keeping its activations; same results, gradients and norm statistics. Default: False.
        init_cfg (dict or list[dict], optional): Initialization config. Default: None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 1,
                 stride: int = 1,
                 ratio: int = 2,
                 dw_size: int = 3,
                 attention: bool = False,
                 num_convs: int = 3,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 memory_efficient: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg)
        check_ratio_and_dw_size(ratio, dw_size)
        if ratio < 2:
            raise ValueError(f'GhostModuleV3 needs ratio >= 2 (a cheap operation to re-parameterise), got {ratio}')
        self.out_channels = out_channels
        self.memory_efficient = memory_efficient
        self.deploy = False
        self.intrinsic_channels = intrinsic = math.ceil(out_channels / ratio)
        self.ghost_channels = ghost = intrinsic * (ratio - 1)
        common = dict(num_convs=num_convs, conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.primary_rpr_conv, self.primary_rpr_scale, self.primary_rpr_skip = build_rep_branches(
            in_channels, intrinsic, kernel_size, stride=stride, with_scale=kernel_size > 1,
            with_skip=in_channels == intrinsic and stride == 1, **common)
        self.primary_activation = build_activation_layer(act_cfg) if act_cfg is not None else nn.Identity()
        self.cheap_rpr_conv, self.cheap_rpr_scale, self.cheap_rpr_skip = build_rep_branches(
            intrinsic, ghost, dw_size, groups=intrinsic, with_scale=dw_size > 1, with_skip=ghost == intrinsic,
            **common)
        self.cheap_activation = build_activation_layer(act_cfg) if act_cfg is not None else nn.Identity()
        self.short_conv = DFCAttention(
            in_channels, out_channels, kernel_size, stride, conv_cfg=conv_cfg,
            norm_cfg=norm_cfg) if attention else None

    def _primary(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.primary_conv(x)
        return self.primary_activation(
            forward_rep_branches(x, self.primary_rpr_conv, self.primary_rpr_scale, self.primary_rpr_skip))

    def _cheap(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.cheap_operation(x)
        return self.cheap_activation(
            forward_rep_branches(x, self.cheap_rpr_conv, self.cheap_rpr_scale, self.cheap_rpr_skip))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intrinsic = self._primary(x)
        # Under torch.compile the partitioner already chooses what to recompute.
        if (self.memory_efficient and self.training and torch.is_grad_enabled() and intrinsic.requires_grad
                and not is_compiling()):
            ghosts = recompute_in_backward(self._cheap, self, intrinsic)
        else:
            ghosts = self._cheap(intrinsic)
        out = concat_channels(intrinsic, ghosts)
        # Decided from the channel counts, not from out.shape: a shape test would be traced as a tensor
        # comparison (TracerWarning) when exporting with dynamic axes.
        if self.intrinsic_channels + self.ghost_channels != self.out_channels:
            out = out[:, :self.out_channels]
        if self.short_conv is None:
            return out
        return out * self.short_conv(x, out.shape[-2:])

    def switch_to_deploy(self):
        """Fold each re-parameterised site into one conv with bias, in place (outputs equal eval mode's).

        Only batch norms fold; calling this again changes nothing.
        """
        if self.deploy:
            return
        self.primary_conv = nn.Sequential(
            fuse_rep_branches(self.primary_rpr_conv, self.primary_rpr_scale, self.primary_rpr_skip),
            self.primary_activation)
        self.cheap_operation = nn.Sequential(
            fuse_rep_branches(self.cheap_rpr_conv, self.cheap_rpr_scale, self.cheap_rpr_skip),
            self.cheap_activation)
        for name in ('primary_rpr_conv', 'primary_rpr_scale', 'primary_rpr_skip', 'primary_activation',
                     'cheap_rpr_conv', 'cheap_rpr_scale', 'cheap_rpr_skip', 'cheap_activation'):
            delattr(self, name)
        self.deploy = True
