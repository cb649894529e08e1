"""GhostNetV3 backbone for MMDetection.

Paper: "GhostNetV3: Exploring the Training Strategies for Compact Models", Zhenhua Liu, Zhiwei Hao, Kai Han,
Yehui Tang, Yunhe Wang. 2024. https://arxiv.org/abs/2404.11202

GhostNetV3 is GhostNetV2's architecture trained with re-parameterisable branches: every Ghost module's primary
and cheap convs and every strided depthwise conv are, in training, sums of three conv + BN branches plus a 1x1
"scale" branch and, where shapes allow, a BN-only identity branch; :meth:`GhostNetV3.switch_to_deploy` folds
them into single convs. DFC attention (V2's) gates ``ghost1`` from bottleneck 2 on.

Module names follow the official implementation (huawei-noah ``ghostnetv3_pytorch/ghostnetv3.py``). timm's
``ghostnetv3_100`` has the same 1956 keys except that it calls each branch's norm ``bn1`` where the official
file says ``bn``; both load (the branch module renames timm's keys while loading, see
:class:`~mmghost.models.layers.ConvBN`).

Reading order: :class:`GhostBottleneckV3`, :class:`GhostNetV3`; the shared parts are in
:mod:`mmghost.models.layers` (:class:`~mmghost.models.layers.GhostModuleV3`, :mod:`~mmghost.models.layers.reparam`)
and :mod:`mmghost.models.backbones.base`.
"""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmghost.registry import MODELS
from ..layers import (GhostModuleV3, SqueezeExcite, build_rep_branches,
                      downsample_shortcut, forward_rep_branches, fuse_rep_branches)
from .base import GhostNetBase
from .ghostnet import GhostNet


class GhostBottleneckV3(BaseModule):
    """GhostNetV3 bottleneck: V2's bottleneck with re-parameterised Ghost modules and strided depthwise conv.

    ``ghost1`` (expansion, activation, DFC attention if ``attention``) -> for stride 2 the depthwise
    ``kernel_size`` conv as ``dw_rpr_conv`` (``num_convs`` conv + norm branches) + ``dw_rpr_scale`` (1x1,
    stride 2) -> SE -> ``ghost2`` (projection, linear) -> + shortcut. Official names and branch rules
    (``dw_rpr_skip`` is never built: the depthwise conv only exists with stride 2). After
    :meth:`switch_to_deploy` the depthwise conv is ``conv_dw`` (one conv with bias, as in timm's deployed model).

    Args:
        in_channels (int): Input channels.
        mid_channels (int): Expansion channels.
        out_channels (int): Output channels.
        kernel_size (int): Kernel of the depthwise convs (stride path and shortcut). Default: 3.
        stride (int): 1 or 2. Default: 1.
        se_ratio (float): SE squeeze ratio; 0 disables SE. Default: 0.
        ratio (int): Ghost ratio ``s`` of both Ghost modules (>= 2). Default: 2.
        dw_size (int): Cheap-operation kernel ``d`` of both Ghost modules. Default: 3.
        attention (bool): DFC attention on ``ghost1``. Default: True.
        num_convs (int): Conv branches per re-parameterised conv. Default: 3.
        conv_cfg (dict, optional): Config of the conv layers. Default: None.
        norm_cfg (dict): Config of the norm layers. Default: ``dict(type='BN')``.
        act_cfg (dict): Activation of ``ghost1`` and of the SE squeeze. Default: ReLU.
        memory_efficient (bool): Recompute the Ghost modules' cheap sites in backward. Default: False.
        init_cfg (dict or list[dict], optional): Initialization config. Default: None.
    """

    def __init__(self,
                 in_channels: int,
                 mid_channels: int,
                 out_channels: int,
                 kernel_size: int = 3,
                 stride: int = 1,
                 se_ratio: float = 0.,
                 ratio: int = 2,
                 dw_size: int = 3,
                 attention: bool = True,
                 num_convs: int = 3,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 memory_efficient: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg)
        if stride not in (1, 2):
            raise ValueError(f'GhostBottleneckV3 stride must be 1 or 2, got {stride!r}')
        self.stride = stride
        self.deploy = False
        ghost_kwargs = dict(ratio=ratio, dw_size=dw_size, num_convs=num_convs, conv_cfg=conv_cfg,
                            norm_cfg=norm_cfg, memory_efficient=memory_efficient)
        self.ghost1 = GhostModuleV3(in_channels, mid_channels, attention=attention, act_cfg=act_cfg, **ghost_kwargs)
        if stride > 1:
            self.dw_rpr_conv, self.dw_rpr_scale, _ = build_rep_branches(
                mid_channels, mid_channels, kernel_size, stride=stride, groups=mid_channels, num_convs=num_convs,
                with_scale=kernel_size > 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.se = SqueezeExcite(mid_channels, se_ratio, act_cfg) if se_ratio and se_ratio > 0 else None
        self.ghost2 = GhostModuleV3(mid_channels, out_channels, attention=False, act_cfg=None, **ghost_kwargs)
        self.shortcut = downsample_shortcut(in_channels, out_channels, kernel_size, stride, conv_cfg, norm_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost1(x)
        if self.stride > 1:
            out = self.conv_dw(out) if self.deploy else forward_rep_branches(out, self.dw_rpr_conv,
                                                                             self.dw_rpr_scale, None)
        if self.se is not None:
            out = self.se(out)
        out = self.ghost2(out)
        return out + self.shortcut(x)

    def switch_to_deploy(self):
        """Fold the re-parameterised convs of this block (Ghost modules, depthwise conv) into single convs."""
        if self.deploy:
            return
        self.ghost1.switch_to_deploy()
        self.ghost2.switch_to_deploy()
        if self.stride > 1:
            # Registered after the existing children: the next child (se or ghost2) is no norm that the
            # backbone's BN folding could mistake for this conv's.
            self.conv_dw = fuse_rep_branches(self.dw_rpr_conv, self.dw_rpr_scale, None)
            del self.dw_rpr_conv, self.dw_rpr_scale
        self.deploy = True


@MODELS.register_module()
class GhostNetV3(GhostNetBase):
    """GhostNetV3 backbone.

    The architecture table, widths, outputs 0-5 and DFC attention placement are GhostNetV2's
    (:class:`~mmghost.models.backbones.GhostNetV2`); the Ghost modules and strided depthwise convs are
    re-parameterisable (:class:`GhostBottleneckV3`). Train with the branches; :meth:`switch_to_deploy` first
    folds every site into one conv (:meth:`reparameterize`), then, as for every family member, folds the
    remaining batch norms and switches to channels_last on the CPU. Deployed outputs equal eval outputs up to
    float rounding.

    Public weights: official ``ghostnetv3-1.0.pth.tar`` and timm ``ghostnetv3_100.in1k`` (77.1% ImageNet
    top-1 with EMA in the paper), both in the training (branched) form. Other widths (0.5, 1.3, 1.6) exist as
    architectures without weights.

    Args:
        widen_factor (float): Width multiplier. Default: 1.0.
        out_indices (Sequence[int]): Output indices (0-5), sorted, unique. Default: (1, 2, 3, 4).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and stages 1..k. Default: -1.
        ratio (int): Ghost ratio ``s`` of every Ghost module, >= 2 (the cheap conv is what is
            re-parameterised). Default: 2.
        dw_size (int): Cheap-operation kernel ``d`` of every Ghost module. Default: 3.
        conv_cfg (dict, optional): Config of the conv layers (plain convs can be re-parameterised). Default: None.
        norm_cfg (dict): Config of the norm layers (batch norms can be folded). Default:
            ``dict(type='BN', requires_grad=True)``.
        act_cfg (dict): Activation. Default: ``dict(type='ReLU')``.
        norm_eval (bool): Keep norm layers in eval mode during training. Default: False.
        with_cp (bool): Gradient checkpointing of every group of bottlenecks. Default: False.
        memory_efficient (bool): Recompute every Ghost module's cheap site (all its branches) in backward
            instead of storing it (same results, gradients and statistics). Default: True.
        init_cfg (dict or list[dict], optional): Initialization config, e.g. ``dict(type='SafePretrained',
            checkpoint='ghostnetv3-1.0.pth.tar')`` (official or timm weights; a detector checkpoint with
            ``prefix='backbone.'``). Default: None.
    """

    arch_setting = GhostNet.arch_setting
    #: Bottlenecks from this running index on get DFC attention (official ``layer_id > 1``).
    first_attention_block = 2
    #: Conv branches per re-parameterised conv (official ``num_conv_branches``).
    num_rep_convs = 3
    #: Its cheap conv is re-parameterised, so every Ghost module needs one: ratio >= 2.
    min_ratio = 2

    def build_block(self, index, in_channels, mid_channels, out_channels, kernel_size, stride,
                    se_ratio) -> nn.Module:
        return GhostBottleneckV3(
            in_channels, mid_channels, out_channels, kernel_size=kernel_size, stride=stride, se_ratio=se_ratio,
            ratio=self.ratio, dw_size=self.dw_size,
            attention=index >= self.first_attention_block, num_convs=self.num_rep_convs, conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg, act_cfg=self.act_cfg, memory_efficient=self.blocks_memory_efficient)

    def reparameterize(self) -> None:
        """Fold every re-parameterisable site into one conv with bias (first step of :meth:`switch_to_deploy`)."""
        for module in self.modules():
            if isinstance(module, GhostBottleneckV3):
                module.switch_to_deploy()
