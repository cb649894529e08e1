"""RepGhostNet's Ghost module and bottleneck: the Ghost module's concatenation replaced by a re-parameterisable sum.

Paper: "RepGhost: A Hardware-Efficient Ghost Module via Re-parameterization", Chengpeng Chen, Zichao Guo, Haien
Zeng, Pengfei Xiong, Jian Dong. 2022. https://arxiv.org/abs/2211.06088. Official code: ChengpengChen/RepGhost
``model/repghost.py``; timm's ``repghost.py`` has the same modules and keys.

The Ghost module (GhostNet) concatenates the primary conv's maps with their cheap depthwise "ghosts"; RepGhost
adds them instead (Sec. 3.2): the depthwise conv makes as many maps as the primary conv, and the identity
branch next to it (a batch norm, ``fusion_bn``) is linear in eval mode, so :meth:`RepGhostModule.reparameterize`
folds it into the depthwise conv's kernel (Sec. 3.3). No concatenation is left at inference.
"""
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer, build_conv_layer, build_norm_layer
from mmengine.model import BaseModule

from mmghost.utils.compat import is_compiling
from .conv_bn_act import conv_norm_act, downsample_shortcut
from .ghost_module import check_ratio_and_dw_size
from .reparam import fold_norm, identity_kernel
from .squeeze_excite import SqueezeExcite
from .utils import recompute_in_backward


class RepGhostModule(BaseModule):
    """RepGhost module (paper Fig. 2c/d): ``act(cheap(primary(x)) + fusion_bn(primary(x)))``.

    ``primary_conv`` is a conv + norm (+ activation) to ``out_channels``; ``cheap_operation`` a depthwise
    ``dw_size`` conv + norm on the same ``out_channels``; ``fusion_bn`` a norm on the identity (the
    re-parameterisation branch, official ``reparam_bn``); ``relu`` the activation after the sum (identity for a
    linear module). Names, order and keys (``primary_conv.0/1``, ``cheap_operation.0/1``, ``fusion_bn.0``) are
    the official/timm ones.

    :meth:`reparameterize` folds ``fusion_bn`` and the depthwise conv's norm into one depthwise conv with bias:
    ``cheap_operation`` becomes a plain ``nn.Conv2d`` (keys ``cheap_operation.weight``/``.bias``) and
    ``fusion_bn`` goes, the official deploy form (``deploy=True`` / ``switch_to_deploy()`` there).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels (of the primary conv and of the cheap operation alike).
        kernel_size (int): Kernel size of the primary conv. Default: 1.
        stride (int): Stride of the primary conv. Default: 1.
        dw_size (int): Kernel of the cheap depthwise conv (odd). Default: 3.
        reparameterized (bool): Build the folded (official deploy) form directly, e.g. to load such weights.
            Default: False.
        conv_cfg (dict, optional): Config of the conv layers. Default: None (``nn.Conv2d``).
        norm_cfg (dict): Config of the norm layers (batch norms fold). Default: ``dict(type='BN')``.
        act_cfg (dict, optional): Activation after the primary conv and after the sum; None for a linear module.
            Default: ReLU.
        memory_efficient (bool): In training, recompute the cheap operation and the sum in backward instead of
            keeping their activations; results, gradients and statistics unchanged. Default: False.
        init_cfg (dict or list[dict], optional): Initialization config. Default: None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 1,
                 stride: int = 1,
                 dw_size: int = 3,
                 reparameterized: bool = False,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 memory_efficient: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg)
        check_ratio_and_dw_size(1, dw_size)  # RepGhost has no Ghost ratio; only dw_size is checked
        self.out_channels = out_channels
        self.memory_efficient = memory_efficient
        self.reparameterized = reparameterized
        self.primary_conv = conv_norm_act(in_channels, out_channels, kernel_size, stride, kernel_size // 2,
                                          conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        if reparameterized:
            self.cheap_operation = build_conv_layer(conv_cfg, out_channels, out_channels, dw_size, stride=1,
                                                    padding=dw_size // 2, groups=out_channels, bias=True)
        else:
            self.fusion_bn = nn.Sequential(build_norm_layer(norm_cfg, out_channels)[1])
            # No activation here: it follows the sum.
            self.cheap_operation = nn.Sequential(
                build_conv_layer(conv_cfg, out_channels, out_channels, dw_size, stride=1, padding=dw_size // 2,
                                 groups=out_channels, bias=False),
                build_norm_layer(norm_cfg, out_channels)[1])
        # Not in place: the sum may be held by a forward hook on the cheap operation's output.
        self.relu = build_activation_layer(act_cfg) if act_cfg is not None else nn.Identity()

    def _cheap(self, intrinsic: torch.Tensor) -> torch.Tensor:
        out = self.cheap_operation(intrinsic)
        if not self.reparameterized:
            out = out + self.fusion_bn(intrinsic)
        return self.relu(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intrinsic = self.primary_conv(x)
        # Under torch.compile the partitioner already chooses what to recompute.
        if (self.memory_efficient and self.training and torch.is_grad_enabled() and intrinsic.requires_grad
                and not is_compiling()):
            return recompute_in_backward(self._cheap, self, intrinsic)
        return self._cheap(intrinsic)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold ``fusion_bn`` and the cheap operation's norm into one depthwise conv with bias, in place.

        The identity branch is a depthwise conv whose kernel is 1 at the centre (padding ``dw_size // 2``), so
        its folded norm adds to the depthwise kernel (the official ``switch_to_deploy``, for any ``dw_size``).
        Outputs equal eval mode's up to float rounding; calling it again changes nothing.

        Raises:
            NotImplementedError: If a norm is not a batch norm or the depthwise conv not a plain ``nn.Conv2d``.
        """
        if self.reparameterized:
            return
        conv, norm = self.cheap_operation
        if type(conv) is not nn.Conv2d:
            raise NotImplementedError(f'only a plain nn.Conv2d cheap operation folds, got {type(conv).__name__}')
        weight, bias = fold_norm(conv.weight, norm)
        identity_weight, identity_bias = fold_norm(
            identity_kernel(conv.in_channels, conv.groups, conv.kernel_size, conv.weight), self.fusion_bn[0])
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                          padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                          bias=True).to(device=weight.device, dtype=weight.dtype)
        fused.weight.copy_(weight + identity_weight)
        fused.bias.copy_(bias + identity_bias)
        self.cheap_operation = fused  # keeps its place among the children (before ``relu``)
        del self.fusion_bn
        self.reparameterized = True


class RepGhostBottleneck(BaseModule):
    """RepGhost bottleneck (paper Fig. 3): RepGhost expand -> [depthwise stride] -> [SE] -> RepGhost project.

    Structure and names of the official/timm ``RepGhostBottleneck``: ``ghost1`` (with activation),
    ``conv_dw``/``bn_dw`` on stride-2 blocks, ``se`` (``conv_reduce``/``conv_expand``, hard-sigmoid gate),
    ``ghost2`` (linear), ``shortcut`` (identity, or depthwise conv + norm + 1x1 conv + norm where the shape
    changes). No activation after the addition.

    Args:
        in_channels (int): Input channels.
        mid_channels (int): Expansion channels.
        out_channels (int): Output channels.
        kernel_size (int): Kernel of the depthwise convs (stride path and shortcut). Default: 3.
        stride (int): 1 or 2. Default: 1.
        se_ratio (float): SE squeeze ratio; 0 disables SE. Default: 0.
        dw_size (int): Cheap-operation kernel of both RepGhost modules. Default: 3.
        reparameterized (bool): Build both modules folded (see :class:`RepGhostModule`). Default: False.
        conv_cfg (dict, optional): Config of the conv layers. Default: None.
        norm_cfg (dict): Config of the norm layers. Default: ``dict(type='BN')``.
        act_cfg (dict): Activation of ``ghost1`` and of the SE squeeze. Default: ReLU.
        memory_efficient (bool): Recompute the modules' cheap operations in backward. Default: False.
        init_cfg (dict or list[dict], optional): Initialization config. Default: None.
    """

    def __init__(self,
                 in_channels: int,
                 mid_channels: int,
                 out_channels: int,
                 kernel_size: int = 3,
                 stride: int = 1,
                 se_ratio: float = 0.,
                 dw_size: int = 3,
                 reparameterized: bool = False,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 memory_efficient: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg)
        if stride not in (1, 2):
            raise ValueError(f'RepGhostBottleneck stride must be 1 or 2, got {stride!r}')
        self.stride = stride
        ghost_kwargs = dict(dw_size=dw_size, reparameterized=reparameterized, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                            memory_efficient=memory_efficient)
        self.ghost1 = RepGhostModule(in_channels, mid_channels, act_cfg=act_cfg, **ghost_kwargs)
        if stride > 1:
            self.conv_dw = build_conv_layer(conv_cfg, mid_channels, mid_channels, kernel_size, stride=stride,
                                            padding=(kernel_size - 1) // 2, groups=mid_channels, bias=False)
            self.bn_dw = build_norm_layer(norm_cfg, mid_channels)[1]
        self.se = SqueezeExcite(mid_channels, se_ratio, act_cfg) if se_ratio and se_ratio > 0 else None
        self.ghost2 = RepGhostModule(mid_channels, out_channels, act_cfg=None, **ghost_kwargs)
        self.shortcut = downsample_shortcut(in_channels, out_channels, kernel_size, stride, conv_cfg, norm_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost1(x)
        if self.stride > 1:
            out = self.bn_dw(self.conv_dw(out))
        if self.se is not None:
            out = self.se(out)
        out = self.ghost2(out)
        # Not in place: ghost2's output may be held by a forward hook.
        return out + self.shortcut(x)
