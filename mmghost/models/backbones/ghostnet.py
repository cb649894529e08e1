"""GhostNet (V1) backbone for MMDetection.

Paper: "GhostNet: More Features from Cheap Operations", Kai Han, Yunhe Wang, Qi Tian, Jianyuan Guo, Chunjing Xu,
Chang Xu. CVPR 2020. https://arxiv.org/abs/1911.11907

Module names follow the official implementation (huawei-noah ``ghostnet_pytorch/ghostnet.py``), which timm's
``ghostnet.py`` mirrors, so their ImageNet weights load into :class:`GhostNet` as they are, through
``init_cfg=dict(type='SafePretrained', checkpoint=PATH)`` (mmengine's ``Pretrained``, reading the file without
running code from it: :mod:`mmghost.models.pretrained`). Weights saved by mmghost 0.1 (mmcv
``ConvModule`` names) are renamed while loading; ``tools/convert_weights.py`` converts them once for good.

Reading order: :data:`GhostNet.arch_setting`, :class:`GhostBottleneck`, :class:`GhostNet`; the shared parts
are in :mod:`mmghost.models.layers` and :mod:`mmghost.models.backbones.base`.
"""
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.logging import print_log
from mmengine.model import BaseModule

from mmghost.registry import MODELS
from ..layers import GhostModule, SqueezeExcite, downsample_shortcut
from ..weights import rename_mmghost_01_in_place
from .base import GhostNetBase


class GhostBottleneck(BaseModule):
    """Ghost bottleneck (paper Sec. 3.2, Fig. 3): ghost expand -> [depthwise stride] -> [SE] -> ghost project.

    The shortcut is the identity when the shape is unchanged, otherwise a depthwise ``kernel_size`` conv (with
    the block's stride) + norm + 1x1 conv + norm. There is no activation after the addition. No operation
    writes into a tensor another module returned (forward hooks see the values as they were produced).

    Args:
        in_channels (int): Input channels.
        mid_channels (int): Expansion ("exp") channels of the first Ghost module.
        out_channels (int): Output channels.
        kernel_size (int): Kernel of the depthwise convs (stride path and shortcut). Default: 3.
        stride (int): 1 or 2. Default: 1.
        se_ratio (float): SE squeeze ratio; 0 disables SE. Default: 0.
        ratio (int): Ghost ratio ``s`` of both Ghost modules. Default: 2.
        dw_size (int): Cheap-operation kernel ``d`` of both Ghost modules. Default: 3.
        conv_cfg (dict, optional): Config of the conv layers. Default: None.
        norm_cfg (dict): Config of the norm layers. Default: ``dict(type='BN')``.
        act_cfg (dict): Activation of the first Ghost module and the SE squeeze. Default: ReLU.
        memory_efficient (bool): Recompute the Ghost modules' cheap operations in backward (see
            :class:`~mmghost.models.layers.GhostModule`). Default: False.
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
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 memory_efficient: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg)
        if stride not in (1, 2):
            raise ValueError(f'GhostBottleneck stride must be 1 or 2, got {stride!r}')
        self.stride = stride
        ghost_kwargs = dict(ratio=ratio, dw_size=dw_size, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                            memory_efficient=memory_efficient)
        self.ghost1 = self._build_ghost1(in_channels, mid_channels, act_cfg=act_cfg, **ghost_kwargs)
        if stride > 1:
            self.conv_dw = build_conv_layer(conv_cfg, mid_channels, mid_channels, kernel_size, stride=stride,
                                            padding=(kernel_size - 1) // 2, groups=mid_channels, bias=False)
            self.bn_dw = build_norm_layer(norm_cfg, mid_channels)[1]
        self.se = SqueezeExcite(mid_channels, se_ratio, act_cfg) if se_ratio and se_ratio > 0 else None
        self.ghost2 = GhostModule(mid_channels, out_channels, act_cfg=None, **ghost_kwargs)
        self.shortcut = downsample_shortcut(in_channels, out_channels, kernel_size, stride, conv_cfg, norm_cfg)

    def _build_ghost1(self, in_channels: int, mid_channels: int, **kwargs) -> nn.Module:
        """The expansion Ghost module; subclasses (GhostNetV2) build theirs here instead of replacing it after
        construction, so only the module that is kept is built and initialised."""
        return GhostModule(in_channels, mid_channels, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost1(x)
        if self.stride > 1:
            out = self.bn_dw(self.conv_dw(out))
        if self.se is not None:
            out = self.se(out)
        out = self.ghost2(out)
        # Not in place: ghost2's output may be held by a forward hook (measured: +0.6% CPU deploy latency).
        return out + self.shortcut(x)


@MODELS.register_module()
class GhostNet(GhostNetBase):
    """GhostNet (V1) backbone.

    Outputs 0-5 (stem, strides 4/8/16/32, final 1x1 conv), freezing, deploy mode and loading are those of
    :class:`~mmghost.models.backbones.base.GhostNetBase`; at width 1.1 outputs 1-4 have 28/44/124/176 channels.

    Args:
        widen_factor (float): Width multiplier alpha. Default: 1.0.
        out_indices (Sequence[int]): Output indices (0-5), sorted, unique. Default: (1, 2, 3, 4).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and stages 1..k. Default: -1.
        ratio (int): Ghost ratio ``s`` of every Ghost module. Default: 2.
        dw_size (int): Cheap-operation kernel ``d`` of every Ghost module. Default: 3.
        conv_cfg (dict, optional): Config of the conv layers. Default: None.
        norm_cfg (dict): Config of the norm layers. Default: ``dict(type='BN', requires_grad=True)``.
        act_cfg (dict): Activation. Default: ``dict(type='ReLU')``.
        norm_eval (bool): Keep norm layers in eval mode during training. Default: False.
        with_cp (bool): Gradient checkpointing of every group of bottlenecks. Default: False.
        memory_efficient (bool): Recompute every Ghost module's cheap depthwise operation in backward instead
            of storing it: 24% less activation memory than the reference implementation, same results.
            Default: True.
        init_cfg (dict or list[dict], optional): Initialization config, e.g. ``dict(type='SafePretrained',
            checkpoint='state_dict_73.98.pth')`` (official or timm weights; a detector checkpoint with
            ``prefix='backbone.'``). Default: None.
    """

    # The architecture table of the official implementation (its ``cfgs``). Each row is a bottleneck:
    # kernel size, expansion channels, output channels, SE ratio, stride. Each inner list is one group
    # (``blocks.N`` in checkpoints); the groups are gathered into the stages whose outputs have strides 4-32.
    arch_setting = [
        # stage 1: stride 2 -> 4
        [[[3, 16, 16, 0, 1]],
         [[3, 48, 24, 0, 2]],
         [[3, 72, 24, 0, 1]]],
        # stage 2: stride 4 -> 8
        [[[5, 72, 40, 0.25, 2]],
         [[5, 120, 40, 0.25, 1]]],
        # stage 3: stride 8 -> 16
        [[[3, 240, 80, 0, 2]],
         [[3, 200, 80, 0, 1],
          [3, 184, 80, 0, 1],
          [3, 184, 80, 0, 1],
          [3, 480, 112, 0.25, 1],
          [3, 672, 112, 0.25, 1]]],
        # stage 4: stride 16 -> 32
        [[[5, 672, 160, 0.25, 2]],
         [[5, 960, 160, 0, 1],
          [5, 960, 160, 0.25, 1],
          [5, 960, 160, 0, 1],
          [5, 960, 160, 0.25, 1]]],
    ]

    def build_block(self, index, in_channels, mid_channels, out_channels, kernel_size, stride,
                    se_ratio) -> nn.Module:
        return GhostBottleneck(
            in_channels, mid_channels, out_channels, kernel_size=kernel_size, stride=stride, se_ratio=se_ratio,
            ratio=self.ratio, dw_size=self.dw_size, conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg, act_cfg=self.act_cfg, memory_efficient=self.blocks_memory_efficient)

    def adapt_state_dict(self, state_dict, prefix):
        """Weights saved by mmghost 0.1 (mmcv ``ConvModule`` names) are renamed to the official names."""
        renamed = rename_mmghost_01_in_place(state_dict, prefix)
        if renamed:
            print_log(f'GhostNet: renamed {renamed} tensors under {prefix!r} from mmghost 0.1\'s layout '
                      '(stem.conv.*, ...) to the official one; tools/convert_weights.py converts such files once',
                      logger='current')
