"""GhostNet backbone for MMDetection.

Paper: "GhostNet: More Features from Cheap Operations", Kai Han, Yunhe Wang, Qi Tian, Jianyuan Guo, Chunjing Xu,
Chang Xu. CVPR 2020. https://arxiv.org/abs/1911.11907

The architecture follows the official implementation (huawei-noah ``ghostnet_pytorch/ghostnet.py``), which timm's
``ghostnet.py`` mirrors, so ImageNet checkpoints of either load into :class:`GhostNet` through
``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` (see :mod:`mmghost.models.checkpoint` for the key mapping).

Reading order: :data:`GhostNet.arch_setting` (the architecture table), :class:`GhostModule`,
:class:`SqueezeExcite`, :class:`GhostBottleneck`, :class:`GhostNet`.
"""
import math
import numbers
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule, build_activation_layer, build_norm_layer
from mmcv.cnn.utils import fuse_conv_bn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmghost.registry import MODELS


def make_divisible(value: float, divisor: int = 4, min_ratio: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never losing more than 10%.

    Same rule as ``_make_divisible`` in the official GhostNet code and as mmdet's ``make_divisible``; kept here
    because importing ``mmdet.models.layers`` pulls in ``mmcv.ops`` (compiled ops), which a backbone-only
    install must not need.
    """
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < min_ratio * value:
        new_value += divisor
    return new_value


class GhostModule(BaseModule):
    """Ghost module: a drop-in replacement for a conv layer (paper Sec. 3.1, Fig. 2b).

    A primary conv makes ``m = ceil(out_channels / ratio)`` intrinsic maps; a cheap depthwise ``dw_size`` conv
    makes ``(ratio - 1) * m`` ghost maps from them; the two are concatenated and the first ``out_channels`` kept.
    Both convs are followed by a norm layer and, if ``act_cfg`` is given, the activation.

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
        _check_ratio_and_dw_size(ratio, dw_size)
        self.out_channels = out_channels
        self.memory_efficient = memory_efficient
        self.intrinsic_channels = math.ceil(out_channels / ratio)
        self.ghost_channels = self.intrinsic_channels * (ratio - 1)
        self.primary_conv = ConvModule(
            in_channels,
            self.intrinsic_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg)
        # ratio == 1 degenerates to a plain conv, as in the official code (a zero-channel cheap op).
        self.cheap_operation = ConvModule(
            self.intrinsic_channels,
            self.ghost_channels,
            dw_size,
            padding=dw_size // 2,
            groups=self.intrinsic_channels,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg) if self.ghost_channels > 0 else None

    def _recomputed_cheap_operation(self, intrinsic: torch.Tensor) -> torch.Tensor:
        recomputing = False  # the first call is the forward pass, later ones the recomputation in backward

        def run(x):
            nonlocal recomputing
            first, recomputing = not recomputing, True
            norm = self.cheap_operation.norm if self.cheap_operation.with_norm else None
            if first or not isinstance(norm, _BatchNorm):
                return self.cheap_operation(x)
            # The recomputation in backward must not move the running statistics a second time.
            momentum, norm.momentum = norm.momentum, 0.0
            tracked = None if norm.num_batches_tracked is None else norm.num_batches_tracked.clone()
            try:
                return self.cheap_operation(x)
            finally:
                norm.momentum = momentum
                if tracked is not None:
                    norm.num_batches_tracked.copy_(tracked)

        return cp.checkpoint(run, intrinsic, use_reentrant=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intrinsic = self.primary_conv(x)
        if self.cheap_operation is None:
            return intrinsic
        # Under torch.compile the partitioner already chooses what to recompute; the eager trick would only
        # break the graph there.
        if (self.memory_efficient and self.training and torch.is_grad_enabled() and intrinsic.requires_grad
                and not torch.compiler.is_compiling()):
            ghosts = self._recomputed_cheap_operation(intrinsic)
        else:
            ghosts = self.cheap_operation(intrinsic)
        if intrinsic.dim() == 4 and intrinsic.is_contiguous(memory_format=torch.channels_last) and \
                ghosts.is_contiguous(memory_format=torch.channels_last):
            # channels_last: concatenating along the innermost (channel) axis of NHWC views is faster than
            # torch.cat's generic strided path along dim 1; the result is the same channels_last tensor.
            out = torch.cat([intrinsic.permute(0, 2, 3, 1), ghosts.permute(0, 2, 3, 1)], dim=3).permute(0, 3, 1, 2)
        else:
            out = torch.cat([intrinsic, ghosts], dim=1)
        # With widths rounded to multiples of 4 and ratio 2 this slice is empty; skipping it keeps the output
        # contiguous for the next conv.
        if out.shape[1] != self.out_channels:
            out = out[:, :self.out_channels]
        return out


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation with the hard-sigmoid gate ``relu6(x + 3) / 6`` used by GhostNet.

    The parameter names (``conv_reduce``, ``conv_expand``) are those of the official and timm checkpoints.

    Args:
        channels (int): Input and output channels.
        se_ratio (float): The squeeze width is ``make_divisible(channels * se_ratio, 4)``. Default: 0.25.
        act_cfg (dict): Activation between the two 1x1 convs. Default: ReLU.
    """

    def __init__(self, channels: int, se_ratio: float = 0.25, act_cfg: dict = dict(type='ReLU')):
        super().__init__()
        squeeze_channels = make_divisible(channels * se_ratio, 4)
        self.conv_reduce = nn.Conv2d(channels, squeeze_channels, 1, bias=True)
        self.act = build_activation_layer(act_cfg)
        self.conv_expand = nn.Conv2d(squeeze_channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean((2, 3), keepdim=True)
        gate = F.hardsigmoid(self.conv_expand(self.act(self.conv_reduce(gate))))
        # In-place scaling saves one full-size activation when autograd does not need x.
        if torch.is_grad_enabled() and x.requires_grad:
            return x * gate
        return x.mul_(gate)


class GhostBottleneck(BaseModule):
    """Ghost bottleneck (paper Sec. 3.2, Fig. 3): ghost expand -> [depthwise stride] -> [SE] -> ghost project.

    The shortcut is the identity when the shape is unchanged, otherwise a depthwise ``kernel_size`` conv (with
    the block's stride) + norm + 1x1 conv + norm. There is no activation after the addition.

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
        with_cp (bool): Trade compute for memory with gradient checkpointing of the whole block. Default: False.
        memory_efficient (bool): Recompute the Ghost modules' cheap operations in backward (see
            :class:`GhostModule`). Default: False.
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
                 with_cp: bool = False,
                 memory_efficient: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg)
        if stride not in (1, 2):
            raise ValueError(f'GhostBottleneck stride must be 1 or 2, got {stride!r}')
        self.stride = stride
        self.with_cp = with_cp
        # Whole-block checkpointing already keeps nothing inside the block.
        ghost_kwargs = dict(ratio=ratio, dw_size=dw_size, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                            memory_efficient=memory_efficient and not with_cp)
        self.ghost1 = GhostModule(in_channels, mid_channels, act_cfg=act_cfg, **ghost_kwargs)
        if stride > 1:
            self.conv_dw = ConvModule(
                mid_channels,
                mid_channels,
                kernel_size,
                stride=stride,
                padding=(kernel_size - 1) // 2,
                groups=mid_channels,
                conv_cfg=conv_cfg,
                norm_cfg=norm_cfg,
                act_cfg=None)
        self.se = SqueezeExcite(mid_channels, se_ratio, act_cfg) if se_ratio and se_ratio > 0 else None
        self.ghost2 = GhostModule(mid_channels, out_channels, act_cfg=None, **ghost_kwargs)
        if in_channels == out_channels and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                ConvModule(
                    in_channels,
                    in_channels,
                    kernel_size,
                    stride=stride,
                    padding=(kernel_size - 1) // 2,
                    groups=in_channels,
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg,
                    act_cfg=None),
                ConvModule(
                    in_channels, out_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=None))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost1(x)
        if self.stride > 1:
            out = self.conv_dw(out)
        if self.se is not None:
            out = self.se(out)
        out = self.ghost2(out)
        # ghost2's output is a fresh tensor (cat or conv), so adding in place is safe for autograd.
        return out.add_(self.shortcut(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


def _check_ratio_and_dw_size(ratio, dw_size):
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Integral) or ratio < 1:
        raise ValueError(f'ratio (the Ghost ratio s) must be an int >= 1, got {ratio!r}')
    if (isinstance(dw_size, bool) or not isinstance(dw_size, numbers.Integral) or dw_size < 1
            or dw_size % 2 == 0):
        raise ValueError(f'dw_size (the cheap-operation kernel d) must be an odd int >= 1, got {dw_size!r}')


@MODELS.register_module()
class GhostNet(BaseModule):
    """GhostNet backbone.

    Outputs, selected by ``out_indices`` (each the deepest feature at its stride):

    ===== ======= ==================================== ========================
    index stride  where                                channels at widen 1.0
    ===== ======= ==================================== ========================
    0     2       stem conv                            16
    1     4       end of stage 1 (``blocks.0-2``)      24
    2     8       end of stage 2 (``blocks.3-4``)      40
    3     16      end of stage 3 (``blocks.5-6``)      112
    4     32      end of stage 4 (``blocks.7-8``)      160
    5     32      final 1x1 conv (``blocks.9``)        960
    ===== ======= ==================================== ========================

    Every channel count is ``make_divisible(c * widen_factor, 4)``; at 1.1 outputs 1-4 have 28/44/124/176
    channels. :attr:`out_channels` lists the channels of the selected outputs and :attr:`feature_info`
    describes them (channels, stride, module).

    Args:
        widen_factor (float): Width multiplier alpha. Default: 1.0.
        out_indices (Sequence[int]): Output indices (0-5, see above), sorted, unique. Default: (1, 2, 3, 4).
        frozen_stages (int): Stages to freeze (weights and norm statistics): -1 freezes nothing, 0 the stem,
            k the stem and stages 1..k (5 = everything). Default: -1.
        ratio (int): Ghost ratio ``s`` of every Ghost module. Default: 2.
        dw_size (int): Cheap-operation kernel ``d`` of every Ghost module. Default: 3.
        conv_cfg (dict, optional): Config of the conv layers. Default: None.
        norm_cfg (dict): Config of the norm layers. Default: ``dict(type='BN', requires_grad=True)``.
        act_cfg (dict): Activation. Default: ``dict(type='ReLU')``.
        norm_eval (bool): Keep norm layers in eval mode (frozen statistics) during training. Default: False.
        with_cp (bool): Use gradient checkpointing in the bottlenecks. Default: False.
        memory_efficient (bool): In training, recompute every Ghost module's cheap depthwise operation in the
            backward pass instead of storing it: 24% less activation memory than the reference implementation,
            same results. Default: True.
        init_cfg (dict or list[dict], optional): Initialization config. ``dict(type='Pretrained',
            checkpoint=PATH)`` accepts official/timm GhostNet ImageNet checkpoints and mmdet detector
            checkpoints; see :func:`mmghost.models.checkpoint.load_ghostnet_checkpoint`. Default: None.
    """

    # The architecture table of the official implementation (its ``cfgs``). Each row is a bottleneck:
    # kernel size, expansion channels, output channels, SE ratio, stride. Each inner list is one group
    # (``blocks.N`` in checkpoints); the groups are gathered into the stages whose outputs have strides 4-32.
    arch_setting: List[List[List[list]]] = [
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
    stem_channels = 16
    head_channels = 960  # stage 5: the 1x1 conv after the last bottleneck
    num_outputs = 6  # stem, stages 1-4, head conv

    def __init__(self,
                 widen_factor: float = 1.0,
                 out_indices: Sequence[int] = (1, 2, 3, 4),
                 frozen_stages: int = -1,
                 ratio: int = 2,
                 dw_size: int = 3,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 act_cfg: dict = dict(type='ReLU'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 memory_efficient: bool = True,
                 init_cfg=None):
        super().__init__(init_cfg)
        self._check_args(widen_factor, out_indices, frozen_stages, ratio, dw_size, norm_cfg, act_cfg)
        self.widen_factor = widen_factor
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.deploy = False
        self.channels_last = False  # set by switch_to_deploy()

        def width(c):
            return make_divisible(c * widen_factor, 4)

        stem_channels = width(self.stem_channels)
        self.stem = ConvModule(
            3, stem_channels, 3, stride=2, padding=1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        # Stages deeper than the deepest requested output are not built: their parameters would never get a
        # gradient (which breaks DistributedDataParallel) and their compute would be wasted.
        self.num_stages = self.out_indices[-1]
        channels = [stem_channels]
        groups = []  # one nn.Sequential per group of the table, then one for the final 1x1 conv
        group_ends = []  # index one past the last group of each stage, stages 1-5
        in_channels = stem_channels
        for stage_setting in self.arch_setting:
            for group in stage_setting:
                layers = []
                for kernel_size, exp, out, se_ratio, stride in group:
                    layers.append(
                        GhostBottleneck(
                            in_channels,
                            width(exp),
                            width(out),
                            kernel_size=kernel_size,
                            stride=stride,
                            se_ratio=se_ratio,
                            ratio=ratio,
                            dw_size=dw_size,
                            conv_cfg=conv_cfg,
                            norm_cfg=norm_cfg,
                            act_cfg=act_cfg,
                            with_cp=with_cp,
                            memory_efficient=memory_efficient))
                    in_channels = width(out)
                groups.append(nn.Sequential(*layers))
            group_ends.append(len(groups))
            channels.append(in_channels)
        head_channels = width(self.head_channels)
        groups.append(
            nn.Sequential(
                ConvModule(
                    in_channels, head_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)))
        group_ends.append(len(groups))
        channels.append(head_channels)
        num_built = group_ends[self.num_stages - 1] if self.num_stages > 0 else 0
        # One Sequential of groups, so checkpoint keys keep the official ``blocks.N.M`` numbering.
        self.blocks = nn.Sequential(*groups[:num_built])
        # stage_groups[i] lists the indices into self.blocks that make stage i + 1 (built stages only).
        starts = [0] + group_ends[:-1]
        self.stage_groups: List[Tuple[int, ...]] = [
            tuple(range(start, end)) for start, end in zip(starts, group_ends)][:self.num_stages]
        # Checkpoint keys of the stages not built; the loader drops them instead of failing.
        self.unbuilt_prefixes = tuple(f'blocks.{g}.' for g in range(num_built, len(groups)))

        strides = [2, 4, 8, 16, 32, 32]
        modules = ['stem'] + [f'blocks.{end - 1}' for end in group_ends]
        self.all_feature_info = [
            dict(num_chs=c, reduction=s, module=m, index=i)
            for i, (c, s, m) in enumerate(zip(channels, strides, modules))
        ]
        self.feature_info = [self.all_feature_info[i] for i in self.out_indices]
        self.out_channels = [info['num_chs'] for info in self.feature_info]
        self._freeze_stages()

    @classmethod
    def _check_args(cls, widen_factor, out_indices, frozen_stages, ratio, dw_size, norm_cfg, act_cfg):
        if (isinstance(widen_factor, bool) or not isinstance(widen_factor, numbers.Real)
                or not widen_factor > 0 or not math.isfinite(widen_factor)):
            raise ValueError(f'widen_factor must be a positive number, got {widen_factor!r}')
        valid = f'unique, sorted ints in range(0, {cls.num_outputs})'
        if isinstance(out_indices, (str, bytes)) or not isinstance(out_indices, Sequence):
            raise TypeError(f'out_indices must be a sequence of {valid}, got {out_indices!r}')
        if len(out_indices) == 0:
            raise ValueError(f'out_indices must not be empty; allowed: {valid}')
        for index in out_indices:
            if isinstance(index, bool) or not isinstance(index, numbers.Integral):
                raise TypeError(f'out_indices must hold ints, got {out_indices!r}')
            if not 0 <= index < cls.num_outputs:
                raise ValueError(f'out_indices {tuple(out_indices)} has {index}; allowed: {valid}')
        if len(set(out_indices)) != len(out_indices):
            raise ValueError(f'out_indices {tuple(out_indices)} has duplicates; allowed: {valid}')
        if list(out_indices) != sorted(out_indices):
            raise ValueError(f'out_indices {tuple(out_indices)} is not sorted; allowed: {valid}')
        if (isinstance(frozen_stages, bool) or not isinstance(frozen_stages, numbers.Integral)
                or frozen_stages not in range(-1, cls.num_outputs)):
            raise ValueError(
                f'frozen_stages must be an int in range(-1, {cls.num_outputs}), got {frozen_stages!r}')
        _check_ratio_and_dw_size(ratio, dw_size)
        if not isinstance(norm_cfg, dict) or 'type' not in norm_cfg:
            raise TypeError(f'norm_cfg must be a dict with a "type" key, got {norm_cfg!r}')
        try:
            build_norm_layer(norm_cfg, 8)
        except KeyError as e:
            raise ValueError(f'unknown norm_cfg type {norm_cfg["type"]!r}: {e}') from None
        if not isinstance(act_cfg, dict) or 'type' not in act_cfg:
            raise TypeError(f'act_cfg must be a dict with a "type" key, got {act_cfg!r}')

    def _stage_modules(self, stage: int) -> List[nn.Module]:
        """Stage 0 is the stem; stages 1-5 are groups of ``self.blocks`` (none if not built)."""
        if stage == 0:
            return [self.stem]
        if stage > self.num_stages:
            return []
        return [self.blocks[g] for g in self.stage_groups[stage - 1]]

    def _freeze_stages(self):
        for stage in range(self.frozen_stages + 1):
            for module in self._stage_modules(stage):
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def init_weights(self):
        from mmghost.models.checkpoint import load_ghostnet_checkpoint
        init_cfg = self.init_cfg
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            # The checkpoint may use official/timm key names, so mmengine's generic PretrainedInit
            # (which only strips prefixes) cannot load it strictly; do it here.
            load_ghostnet_checkpoint(
                self, init_cfg['checkpoint'], prefix=init_cfg.get('prefix'), logger='current')
            self._is_init = True
            return
        super().init_weights()

    def _check_input(self, x):
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f'GhostNet expects a 4-D (N, 3, H, W) tensor, got {shape}')
        if x.shape[1] != 3:
            raise ValueError(f'GhostNet expects 3 input channels (N, 3, H, W), got shape {tuple(x.shape)}')

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if not torch.compiler.is_compiling():
            self._check_input(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        outs = []
        x = self.stem(x)
        if 0 in self.out_indices:
            outs.append(x)
        for stage, group_ids in enumerate(self.stage_groups, start=1):
            for g in group_ids:
                x = self.blocks[g](x)
            if stage in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def switch_to_deploy(self, channels_last: Optional[bool] = None):
        """Prepare for inference, in place: fold every norm layer into its conv, and use channels_last.

        Outputs stay equal to the eval-mode model (up to float rounding); the model keeps working in mmdet's
        test and inference pipelines. Only batch norm can be folded; calling this again changes nothing.

        Args:
            channels_last (bool, optional): Keep weights and activations in channels_last (NHWC) memory
                format; inputs are converted on the way in and the outputs are channels_last tensors. On CPU
                this halves GhostNet's latency (oneDNN's depthwise convs and the Ghost concatenations are much
                faster in NHWC); on an H100, timm's GhostNet was reported slower in channels_last bf16 (not
                measured by this project). None: only if the model is on the CPU.
        """
        if not self.deploy:
            fuse_conv_bn(self)
            self.deploy = True
            print_log('GhostNet: folded batch norms into convs (deploy mode)', logger='current')
        if channels_last is None:
            channels_last = next(self.parameters()).device.type == 'cpu'
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self.channels_last = channels_last
        return self


class GhostNetClassifier(nn.Module):
    """The paper's ImageNet network: :class:`GhostNet` trunk + global pool + 1x1 conv to 1280 + linear.

    Not needed for detection; it exists to check the paper's figures (5.2M params, 141M FLOPs at 1.0x) and to
    verify converted ImageNet checkpoints by their logits. Dropout is omitted (it is the identity in eval).

    Args:
        widen_factor (float): Width multiplier of the trunk. Default: 1.0.
        num_classes (int): Classes of the linear layer. Default: 1000.
        **kwargs: Other :class:`GhostNet` arguments (``out_indices`` is fixed to the final conv).
    """

    def __init__(self, widen_factor: float = 1.0, num_classes: int = 1000, **kwargs):
        super().__init__()
        self.backbone = GhostNet(widen_factor, out_indices=(5, ), **kwargs)
        self.conv_head = nn.Conv2d(self.backbone.out_channels[-1], 1280, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.backbone(x)[-1], 1)
        return self.classifier(self.act(self.conv_head(x)).flatten(1))

    def load_imagenet_checkpoint(self, checkpoint, prefix: Optional[str] = None):
        """Load an official/timm checkpoint: the trunk strictly, then its ``conv_head`` and ``classifier``."""
        from mmghost.models.checkpoint import load_ghostnet_checkpoint
        report = load_ghostnet_checkpoint(self.backbone, checkpoint, prefix=prefix)
        head = {k: v for k, v in report.dropped_tensors.items() if k.startswith(('conv_head.', 'classifier.'))}
        self.load_state_dict(head, strict=False)
        missing = {k for k in self.state_dict() if k.startswith(('conv_head.', 'classifier.'))} - set(head)
        if missing:
            raise ValueError(f'the checkpoint has no classification head: missing {sorted(missing)}')
        return report
