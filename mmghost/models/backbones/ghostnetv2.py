"""GhostNetV2 backbone for MMDetection.

Paper: "GhostNetV2: Enhance Cheap Operation with Long-Range Attention", Yehui Tang, Kai Han, Jianyuan Guo,
Chang Xu, Chao Xu, Yunhe Wang. NeurIPS 2022. https://arxiv.org/abs/2211.12905

GhostNetV2 is GhostNet (V1) with DFC attention on the expansion Ghost module (``ghost1``) of every bottleneck
but the first two. Module names follow the official implementation (huawei-noah ``ghostnetv2_pytorch``) and
timm's ``ghostnetv2_100/130/160``, whose weights have the same keys, so both load as they are through
``init_cfg=dict(type='SafePretrained', checkpoint=PATH)`` (:mod:`mmghost.models.pretrained`).

Reading order: :class:`GhostBottleneckV2`, :class:`GhostNetV2`; the shared parts are in
:mod:`mmghost.models.layers` (:class:`~mmghost.models.layers.GhostModuleV2`,
:class:`~mmghost.models.layers.DFCAttention`) and :mod:`mmghost.models.backbones.base`.
"""
from typing import Optional

import torch.nn as nn

from mmghost.registry import MODELS
from ..layers import GhostModuleV2
from .base import GhostNetBase
from .ghostnet import GhostBottleneck, GhostNet


class GhostBottleneckV2(GhostBottleneck):
    """GhostNetV2 bottleneck (paper Fig. 4b): V1's bottleneck whose expansion module has DFC attention.

    Only ``ghost1`` differs from :class:`~mmghost.models.backbones.GhostBottleneck`: a
    :class:`~mmghost.models.layers.GhostModuleV2` with ``attention`` (official ``mode='attn'``). The
    projection module ``ghost2`` stays V1's, as in the official code.

    Args:
        in_channels (int): Input channels.
        mid_channels (int): Expansion channels.
        out_channels (int): Output channels.
        kernel_size (int): Kernel of the depthwise convs (stride path and shortcut). Default: 3.
        stride (int): 1 or 2. Default: 1.
        se_ratio (float): SE squeeze ratio; 0 disables SE. Default: 0.
        ratio (int): Ghost ratio ``s`` of both Ghost modules. Default: 2.
        dw_size (int): Cheap-operation kernel ``d`` of both Ghost modules. Default: 3.
        attention (bool): DFC attention on ``ghost1``. Default: True.
        conv_cfg (dict, optional): Config of the conv layers. Default: None.
        norm_cfg (dict): Config of the norm layers. Default: ``dict(type='BN')``.
        act_cfg (dict): Activation of ``ghost1`` and of the SE squeeze. Default: ReLU.
        memory_efficient (bool): Recompute the Ghost modules' cheap operations in backward. Default: False.
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
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 memory_efficient: bool = False,
                 init_cfg=None):
        # Read by _build_ghost1, which V1's constructor calls (a plain attribute may be set before
        # nn.Module.__init__; only parameters, buffers and submodules may not).
        self.attention = attention
        super().__init__(
            in_channels, mid_channels, out_channels, kernel_size=kernel_size, stride=stride, se_ratio=se_ratio,
            ratio=ratio, dw_size=dw_size, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg,
            memory_efficient=memory_efficient, init_cfg=init_cfg)

    def _build_ghost1(self, in_channels: int, mid_channels: int, **kwargs) -> GhostModuleV2:
        """V1's position among the children (so the same state-dict order), with DFC attention."""
        return GhostModuleV2(in_channels, mid_channels, attention=self.attention, **kwargs)


@MODELS.register_module()
class GhostNetV2(GhostNetBase):
    """GhostNetV2 backbone.

    The architecture table, widths and outputs are GhostNet's (:class:`~mmghost.models.backbones.GhostNet`):
    outputs 0-5 are the stem, the deepest block at strides 4/8/16/32 and the final 1x1 conv, with 16, 24, 40,
    112, 160 and 960 channels at width 1.0 (every count ``make_divisible(c * widen_factor, 4)``). Bottlenecks
    2-15 (``blocks.2`` on) carry DFC attention, as timm's ``layer_idx > 1`` and the official ``layer_id > 1``.
    Freezing, deploy mode (BN folding, channels_last on CPU) and loading are those of
    :class:`~mmghost.models.backbones.base.GhostNetBase`.

    Public weights: official ``ck_ghostnetv2_10.pth.tar`` / ``_13`` / ``_16`` (75.3 / 76.9 / 77.8% ImageNet
    top-1 in the paper) and timm ``ghostnetv2_100.in1k`` / ``130`` / ``160`` (the same tensors and keys).

    DFC attention pools its input 2x2 (floor, as the official code) and upsamples the gate to the module's
    size, so odd feature sizes give the official results; see :class:`~mmghost.models.layers.DFCAttention`.

    Args:
        widen_factor (float): Width multiplier. Default: 1.0.
        out_indices (Sequence[int]): Output indices (0-5), sorted, unique. Default: (1, 2, 3, 4).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and stages 1..k. Default: -1.
        ratio (int): Ghost ratio ``s`` of every Ghost module. Default: 2.
        dw_size (int): Cheap-operation kernel ``d`` of every Ghost module. Default: 3.
        conv_cfg (dict, optional): Config of the conv layers. Default: None.
        norm_cfg (dict): Config of the norm layers. Default: ``dict(type='BN', requires_grad=True)``.
        act_cfg (dict): Activation. Default: ``dict(type='ReLU')``.
        norm_eval (bool): Keep norm layers in eval mode during training. Default: False.
        with_cp (bool): Gradient checkpointing of every group of bottlenecks. Default: False.
        memory_efficient (bool): Recompute every Ghost module's cheap operation in backward instead of storing
            it (same results, gradients and statistics). Default: True.
        init_cfg (dict or list[dict], optional): Initialization config, e.g. ``dict(type='SafePretrained',
            checkpoint='ck_ghostnetv2_10.pth.tar')`` (official or timm weights; a detector checkpoint with
            ``prefix='backbone.'``). Default: None.
    """

    arch_setting = GhostNet.arch_setting
    #: Bottlenecks from this running index on get DFC attention (official ``layer_id > 1``).
    first_attention_block = 2

    def build_block(self, index, in_channels, mid_channels, out_channels, kernel_size, stride,
                    se_ratio) -> nn.Module:
        return GhostBottleneckV2(
            in_channels, mid_channels, out_channels, kernel_size=kernel_size, stride=stride, se_ratio=se_ratio,
            ratio=self.ratio, dw_size=self.dw_size,
            attention=index >= self.first_attention_block, conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg, memory_efficient=self.blocks_memory_efficient)
