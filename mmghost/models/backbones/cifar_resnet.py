"""He et al.'s CIFAR ResNet (Deep Residual Learning, CVPR 2016, Sec. 4.2), the network of the GhostNet paper's
Ghost-ResNet-56 experiment (Table 4).

mmpretrain has no such network: its ``ResNet_CIFAR`` is the ImageNet ResNet (4 stages, 64-512 channels) with a
small stem, depths 18-152. This one is registered in mmengine's root ``MODELS`` registry, so mmpretrain
(``ImageClassifier``) and mmdet configs both find ``type='CifarResNet'`` after ``import mmghost``.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule, constant_init
from mmengine.registry import MODELS as ROOT_MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from ..pretrained import reads_pretrained_weights


class ShortcutA(nn.Module):
    """He et al.'s option A shortcut: the identity, subsampled by ``stride`` and zero-padded to ``out_channels``
    (extra channels at the end). No parameters.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels (>= ``in_channels``).
        stride (int): Spatial subsampling, as the block's strided conv. Default: 1.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:  # the positions a 3x3 conv with padding 1 and this stride is centred on
            x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels)) if self.extra_channels else x


@ROOT_MODELS.register_module()
class CifarResNet(BaseModule):
    """He et al.'s CIFAR ResNet: a 3x3 conv to 16 channels, three stages of ``n`` basic blocks with 16, 32 and 64
    channels (strides 1, 2, 2), depth ``6n + 2``. With option A shortcuts its parameters (with a 10-class linear
    head) are He et al.'s Table 6: 0.27M (ResNet-20), 0.46M, 0.66M, 0.85M (ResNet-56), 1.7M (ResNet-110).

    Every conv is built by mmcv's ``build_conv_layer(conv_cfg, ...)`` and every norm by ``build_norm_layer``, so
    ``conv_cfg=dict(type='GhostConv', ratio=2, dw_size=3)`` makes the paper's Ghost-ResNet-56. The blocks are
    mmdet's ``BasicBlock`` (children ``conv1``/``norm1``/``conv2``/``norm2``, as in mmdet and mmpretrain).

    Args:
        depth (int): 20, 32, 44, 56 or 110 (``6n + 2``). Default: 56.
        in_channels (int): Input image channels. Default: 3.
        base_channels (int): Channels of the stem and the first stage (doubled at each later stage). Default: 16.
        out_indices (Sequence[int]): Stages (0, 1, 2) whose outputs are returned. Default: ``(2, )``.
        shortcut (str): ``'A'``: parameter-free (subsample + zero-pad) shortcuts where the shape changes, as He et
            al. use on CIFAR (and as their parameter counts assume); ``'B'``: a 1x1 conv + norm projection
            there (built with ``conv_cfg``/``norm_cfg`` too). Default: ``'A'``.
        frozen_stages (int): Freeze (eval mode, no gradients) the stem and stages ``1..frozen_stages``; 0 freezes
            the stem only, -1 nothing. Default: -1.
        conv_cfg (dict, optional): Config of every conv. Default: None (``nn.Conv2d``).
        norm_cfg (dict): Config of every norm. Default: ``dict(type='BN', requires_grad=True)``.
        norm_eval (bool): Keep the batch norms in eval mode while training. Default: False.
        with_cp (bool): Gradient checkpointing in the blocks. Default: False.
        zero_init_residual (bool): Zero-initialise each block's last norm. Default: False (He et al. do not).
        init_cfg (dict or list[dict], optional): Initialization config. Default: Kaiming for convs, 1/0 for norms
            (mmdet ResNet's).
    """

    arch_settings = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}

    def __init__(self,
                 depth: int = 56,
                 in_channels: int = 3,
                 base_channels: int = 16,
                 out_indices: Sequence[int] = (2, ),
                 shortcut: str = 'A',
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 zero_init_residual: bool = False,
                 init_cfg=[
                     dict(type='Kaiming', layer='Conv2d'),
                     dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
                 ]):
        super().__init__(init_cfg)
        if depth not in self.arch_settings:
            raise ValueError(f'CifarResNet: depth must be one of {sorted(self.arch_settings)} (6n + 2), got '
                             f'{depth!r}')
        out_indices = tuple(out_indices)
        if not out_indices or any(i not in (0, 1, 2) for i in out_indices):
            raise ValueError(f'CifarResNet: out_indices must be stage indices in (0, 1, 2), got {out_indices!r}')
        if shortcut not in ('A', 'B'):
            raise ValueError(f"CifarResNet: shortcut must be 'A' or 'B', got {shortcut!r}")
        if not -1 <= frozen_stages <= 3:
            raise ValueError(f'CifarResNet: frozen_stages must be in -1..3, got {frozen_stages!r}')
        self.depth = depth
        self.out_indices = out_indices
        self.shortcut = shortcut
        self.frozen_stages = frozen_stages
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.norm_eval = norm_eval
        self.zero_init_residual = zero_init_residual

        self.conv1 = build_conv_layer(conv_cfg, in_channels, base_channels, 3, stride=1, padding=1, bias=False)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, base_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.relu = nn.ReLU(inplace=True)
        self.res_layers = []
        # Imported here, not at module level: importing mmdet.models imports mmcv's compiled ops, which
        # `import mmghost` must not need.
        from mmdet.models.backbones.resnet import BasicBlock
        channels = base_channels
        for i in range(3):
            out_channels = base_channels * 2**i
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(self.arch_settings[depth]):
                block_stride = stride if j == 0 else 1
                blocks.append(
                    BasicBlock(channels, out_channels, stride=block_stride,
                               downsample=self._shortcut(channels, out_channels, block_stride),
                               with_cp=with_cp, conv_cfg=conv_cfg, norm_cfg=norm_cfg))
                channels = out_channels
            name = f'layer{i + 1}'
            self.add_module(name, nn.Sequential(*blocks))
            self.res_layers.append(name)
        self.feat_dim = channels
        self._freeze_stages()

    def _shortcut(self, in_channels: int, out_channels: int, stride: int) -> Optional[nn.Module]:
        if stride == 1 and in_channels == out_channels:
            return None
        if self.shortcut == 'A':
            return ShortcutA(in_channels, out_channels, stride)
        return nn.Sequential(
            build_conv_layer(self.conv_cfg, in_channels, out_channels, 1, stride=stride, bias=False),
            build_norm_layer(self.norm_cfg, out_channels)[1])

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            modules = [self.conv1, self.norm1]
            modules += [getattr(self, f'layer{i}') for i in range(1, self.frozen_stages + 1)]
            for module in modules:
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def init_weights(self):
        super().init_weights()
        # Loaded weights win over the zero init (Pretrained or SafePretrained alike).
        if self.zero_init_residual and not reads_pretrained_weights(self.init_cfg):
            for name in self.res_layers:
                for block in getattr(self, name):
                    constant_init(block.norm2, 0)

    def forward(self, x: torch.Tensor) -> tuple:
        x = self.relu(self.norm1(self.conv1(x)))
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self
