"""``GhostConv``: the Ghost module as a drop-in convolution layer for any OpenMMLab model (``conv_cfg``).

The GhostNet paper (Sec. 3.1, Fig. 2b) proposes the Ghost module as "a plug-and-play component to upgrade existing
convolutional neural networks"; its Ghost-VGG-16 / Ghost-ResNet-56 / Ghost-ResNet-50 experiments replace every
conv of those networks with it. This is that replacement, with the semantics of the official
``ghostnet_pytorch/ghost_resnet.py`` ``GhostModule``: a pure conv replacement, no norm or activation inside (the
network's own norm and activation follow, as they followed the conv it replaces).

It is registered by name in mmengine's root ``MODELS`` registry: mmcv's ``build_conv_layer`` looks the type up in
the current scope's registry and then in its parents, so ``conv_cfg=dict(type='GhostConv', ratio=2, dw_size=3)``
is found from the mmdet and mmpretrain scopes, from a user's own registry, and with no default scope at all.
"""
import math
import numbers
import sys
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import kaiming_init
from mmengine.registry import MODELS as ROOT_MODELS

from mmghost.utils.safe_load import CheckpointError
from .ghost_module import concat_channels

_PADDING_MODES = ('zeros', 'reflect', 'replicate', 'circular')


_EFFICIENT_CONV_BN_EVAL = ('GhostConv: mmcv ConvModule(efficient_conv_bn_eval=True) cannot use a GhostConv (that '
                           'forward needs one conv weight); build it with efficient_conv_bn_eval=False, and fold '
                           'the norm for inference with mmghost.models.deploy_model')


def _refuse_efficient_conv_bn_eval() -> None:
    """ValueError if an mmcv ``ConvModule`` with ``efficient_conv_bn_eval=True`` is building this layer.

    ConvModule builds its conv first and turns the mode on afterwards (``turn_on_efficient_conv_bn_eval``); the
    layer cannot see its parent, so the flag is read from the ``ConvModule.__init__`` call that is building it
    (a few frames up: ``build_conv_layer``, the registry). Anywhere else this finds nothing and returns.
    """
    conv_module = sys.modules.get('mmcv.cnn.bricks.conv_module')
    if conv_module is None:  # mmcv's ConvModule never imported: it is not building us
        return
    code = conv_module.ConvModule.__init__.__code__
    frame = sys._getframe(2)
    for _ in range(12):
        if frame is None:
            return
        if frame.f_code is code:
            if frame.f_locals.get('efficient_conv_bn_eval'):
                raise ValueError(_EFFICIENT_CONV_BN_EVAL)
            return
        frame = frame.f_back


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _int_pair(name: str, value, minimum: int) -> Tuple[int, int]:
    """``value`` as an (h, w) pair of ints >= ``minimum``, or ValueError naming ``GhostConv`` and ``name``."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(_is_int(v) and v >= minimum for v in pair):
        raise ValueError(f'GhostConv: {name} must be an int >= {minimum} or a pair of them, got {value!r}')
    return int(pair[0]), int(pair[1])


@ROOT_MODELS.register_module()
class GhostConv(nn.Module):
    """The Ghost module as a convolution layer (GhostNet paper Sec. 3.1; official ``ghost_resnet.GhostModule``).

    For ``n = out_channels`` and ratio ``s``: a primary conv with this layer's kernel, stride, padding, dilation
    and groups makes ``m = ceil(n / s)`` intrinsic maps; a cheap ``dw_size x dw_size`` depthwise conv (stride 1,
    padding ``dw_size // 2``) makes ``(s - 1) * m`` ghost maps from them; the output is the intrinsic maps followed
    by the first ``n - m`` ghost maps. Parameters and FLOPs are about ``1 / s`` of the conv it replaces.

    It takes ``nn.Conv2d``'s constructor arguments, so ``build_conv_layer`` and mmcv's ``ConvModule`` build it
    wherever they build a conv, and it exposes the attributes they read (``in_channels``, ``out_channels``,
    ``kernel_size``, ``stride``, ``padding``, ``dilation``, ``groups``, ``transposed``, ``output_padding``).
    Its two convs are ``nn.Conv2d`` children (``primary_conv``, ``cheap_conv``), so a parent's ``init_cfg``
    with ``layer='Conv2d'`` (mmdet's ResNet, FPN, RetinaHead...) initializes them as it would initialize the conv
    this layer replaces. At construction both get what mmcv's ``ConvModule`` gives a plain conv (Kaiming normal,
    ``fan_out``, ReLU gain; zero bias); as ``nn.Conv2d`` it has no ``init_weights``, so mmengine's
    ``init_weights`` recursion never overrides a parent's ``init_cfg``.

    :meth:`fold_norm` folds a following batch norm into the two convs for deployment (see
    ``mmghost.models.fuse_ghost_conv_norm``).

    Differences from the official module, all outside its use in Ghost-ResNet: ``dilation`` and ``groups`` reach
    the primary conv (the official one drops them); ``bias=False`` really removes the biases (the official one
    keeps both sub-convs' biases and adds an unused one). The cheap conv always zero-pads, as in the official one;
    ``padding_mode`` applies to the primary conv. Not supported: transposed, 1-D/3-D convs, and mmcv
    ``ConvModule``'s ``efficient_conv_bn_eval`` (it needs a single conv weight): a ``ConvModule`` built with it
    is refused (ValueError), and turning it on later fails at the first forward with the same message.

    After :meth:`fold_norm` the layer is ``folded``: its state dict holds the norm inside (conv biases, and the
    ``primary_scale``/``primary_shift`` it could not absorb). Loading a folded layer's weights into an unfolded
    one, or the reverse, raises :class:`~mmghost.utils.CheckpointError` (also with ``strict=False``, which would
    otherwise compute wrong outputs silently); put the model in deploy mode first (``deploy_model``) to load
    deploy-mode weights.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels ``n``.
        kernel_size (int or tuple[int, int]): Kernel of the primary conv.
        stride (int or tuple[int, int]): Stride of the primary conv. Default: 1.
        padding (int, tuple[int, int] or str): Padding of the primary conv, as for ``nn.Conv2d``. Default: 0.
        dilation (int or tuple[int, int]): Dilation of the primary conv. Default: 1.
        groups (int): Groups of the primary conv; must divide ``in_channels`` and ``ceil(n / s)``. Default: 1.
        bias (bool): Give both convs a bias. Default: True.
        padding_mode (str): Padding mode of the primary conv, as for ``nn.Conv2d``. Default: ``'zeros'``.
        device, dtype: As for ``nn.Conv2d``.
        ratio (int): ``s`` in the paper, >= 2: every intrinsic map yields ``s - 1`` ghost maps. Default: 2.
        dw_size (int): ``d`` in the paper: odd kernel size of the cheap depthwise conv. Default: 3.
    """

    transposed = False  # read by mmcv's ConvModule

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: Union[int, Tuple[int, int]],
                 stride: Union[int, Tuple[int, int]] = 1,
                 padding: Union[int, Tuple[int, int], str] = 0,
                 dilation: Union[int, Tuple[int, int]] = 1,
                 groups: int = 1,
                 bias: bool = True,
                 padding_mode: str = 'zeros',
                 device=None,
                 dtype=None,
                 *,
                 ratio: int = 2,
                 dw_size: int = 3):
        super().__init__()
        _refuse_efficient_conv_bn_eval()
        for name, value in (('in_channels', in_channels), ('out_channels', out_channels)):
            if not _is_int(value) or value < 1:
                raise ValueError(f'GhostConv: {name} must be an int >= 1, got {value!r}')
        if not _is_int(ratio) or ratio < 2:
            raise ValueError(f'GhostConv: ratio (the Ghost ratio s) must be an int >= 2, got {ratio!r}')
        if not _is_int(dw_size) or dw_size < 1 or dw_size % 2 == 0:
            raise ValueError(f'GhostConv: dw_size (the cheap depthwise kernel d) must be an odd int >= 1, '
                             f'got {dw_size!r}')
        self.kernel_size = _int_pair('kernel_size', kernel_size, 1)
        self.stride = _int_pair('stride', stride, 1)
        self.dilation = _int_pair('dilation', dilation, 1)
        if isinstance(padding, str):
            if padding not in ('same', 'valid'):
                raise ValueError(f"GhostConv: padding must be an int, a pair of ints, 'same' or 'valid', "
                                 f'got {padding!r}')
            if padding == 'same' and self.stride != (1, 1):
                raise ValueError(f"GhostConv: padding 'same' needs stride 1 (as for nn.Conv2d), got stride "
                                 f'{stride!r}')
        else:
            padding = _int_pair('padding', padding, 0)
        if not isinstance(bias, bool):
            raise ValueError(f'GhostConv: bias must be True or False, got {bias!r}')
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f'GhostConv: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}')
        self.intrinsic_channels = math.ceil(out_channels / ratio)
        if not _is_int(groups) or groups < 1 or in_channels % groups or self.intrinsic_channels % groups:
            raise ValueError(f'GhostConv: groups must be an int >= 1 dividing in_channels ({in_channels}) and the '
                             f'primary conv\'s ceil(out_channels / ratio) = {self.intrinsic_channels} channels, '
                             f'got {groups!r}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.groups = groups
        self.padding_mode = padding_mode
        self.output_padding = (0, 0)
        self.ratio = ratio
        self.dw_size = dw_size
        self.ghost_channels = self.intrinsic_channels * (ratio - 1)  # made by the cheap conv; n - m of them kept
        factory = dict(device=device, dtype=dtype)
        self.primary_conv = nn.Conv2d(in_channels, self.intrinsic_channels, self.kernel_size, self.stride, padding,
                                      self.dilation, groups, bias, padding_mode, **factory)
        self.padding = self.primary_conv.padding
        self.cheap_conv = nn.Conv2d(self.intrinsic_channels, self.ghost_channels, dw_size, 1, dw_size // 2,
                                    groups=self.intrinsic_channels, bias=bias, **factory)
        # Set by fold_norm(): the per-channel scale/shift the primary conv could not absorb (see there).
        self.register_buffer('primary_scale', None)
        self.register_buffer('primary_shift', None)
        self.built_with_bias = bias
        self.folded = False  # set by fold_norm()
        self.reset_parameters()

    def reset_parameters(self):
        """What mmcv's ``ConvModule`` gives a plain conv: Kaiming normal (``fan_out``, ReLU gain), zero bias."""
        kaiming_init(self.primary_conv)
        kaiming_init(self.cheap_conv)

    @property
    def kept_ghost_channels(self) -> int:
        """``n - m``: the ghost maps in the output (the cheap conv's first ones)."""
        return self.out_channels - self.intrinsic_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intrinsic = self.primary_conv(x)
        ghosts = self.cheap_conv(intrinsic)
        if self.ghost_channels != self.kept_ghost_channels:  # static: no tracer warning
            ghosts = ghosts[:, :self.kept_ghost_channels]
        if self.primary_scale is not None:
            intrinsic = intrinsic * self.primary_scale
        if self.primary_shift is not None:
            intrinsic = intrinsic + self.primary_shift
        return concat_channels(intrinsic, ghosts)

    @torch.no_grad()
    def fold_norm(self, norm: nn.modules.batchnorm._BatchNorm):
        """Fold a batch norm applied to this layer's output (with its running statistics) into the layer.

        The norm is per-channel affine, ``z_c = a_c * y_c + t_c``. Intrinsic channel ``i`` (the primary conv's
        output) is scaled into the primary conv: its weight and bias times ``a_i``. The cheap conv reads that
        scaled map, so its filters for the ghosts of ``i`` are multiplied by ``a_g / a_i`` (``a_g``: the ghost
        channel's own norm scale) and its bias becomes ``a_g * b_g + t_g``. The intrinsic shifts ``t_i`` cannot
        go into the primary conv's bias: the cheap conv zero-pads its input, and a shifted input would change
        its border pixels. They stay as one per-channel add on the intrinsic maps (``primary_shift``), unless
        ``dw_size`` is 1 (no padding), where the cheap conv's bias compensates them exactly. A channel with
        ``a_i == 0`` (e.g. a zero-initialised residual norm) cannot be divided by; its scale stays in
        ``primary_scale`` too. Output equals ``norm(self(x))`` in eval mode up to float rounding.

        Args:
            norm (nn.modules.batchnorm._BatchNorm): A batch norm over ``out_channels`` channels that tracks
                running statistics.
        """
        if not isinstance(norm, nn.modules.batchnorm._BatchNorm) or norm.running_var is None:
            raise TypeError(f'GhostConv.fold_norm: only a batch norm with running statistics folds, '
                            f'got {type(norm).__name__}')
        if norm.num_features != self.out_channels:
            raise ValueError(f'GhostConv.fold_norm: the norm has {norm.num_features} channels, the layer '
                             f'{self.out_channels}')
        scale = torch.rsqrt(norm.running_var.double() + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight.double()
        shift = -norm.running_mean.double() * scale
        if norm.bias is not None:
            shift = shift + norm.bias.double()
        old_scale = (self.primary_scale.double().flatten() if self.primary_scale is not None else
                     torch.ones(self.intrinsic_channels, dtype=torch.float64, device=scale.device))
        old_shift = (self.primary_shift.double().flatten() if self.primary_shift is not None else
                     torch.zeros_like(old_scale))
        m, kept = self.intrinsic_channels, self.kept_ghost_channels
        # The intrinsic output is currently P(x) * old_scale + old_shift; it becomes (that) * a + t.
        a_i, t_i = scale[:m], shift[:m]
        new_scale, new_shift = old_scale * a_i, old_shift * a_i + t_i
        # The primary conv absorbs every scale the cheap conv can divide by again: its weights (whose output the
        # cheap conv reads) are multiplied by ``absorbed``; what it cannot absorb stays in ``primary_scale``.
        absorbed = torch.where(new_scale.abs() > 1e-12, new_scale, torch.ones_like(new_scale))
        primary = self.primary_conv
        w1 = primary.weight.double() * absorbed.view(-1, 1, 1, 1)
        b1 = (primary.bias.double() if primary.bias is not None else torch.zeros_like(absorbed)) * absorbed
        # Cheap conv: output channel j reads intrinsic channel j // (s - 1), now multiplied by ``absorbed``.
        cheap = self.cheap_conv
        source = torch.arange(self.ghost_channels, device=scale.device) // (self.ratio - 1)
        a_g = torch.ones(self.ghost_channels, dtype=torch.float64, device=scale.device)
        t_g = torch.zeros_like(a_g)
        a_g[:kept], t_g[:kept] = scale[m:], shift[m:]  # ghosts cut from the output keep their (unused) values
        w2 = cheap.weight.double() * (a_g / absorbed[source]).view(-1, 1, 1, 1)
        b2 = (cheap.bias.double() if cheap.bias is not None else torch.zeros_like(a_g)) * a_g + t_g
        residual_scale = new_scale / absorbed  # 1 where absorbed
        residual_shift = new_shift
        if self.dw_size == 1 and not self.built_with_bias and bool((residual_scale == 1).all()):
            # No padding: the shift goes into the primary bias and the cheap conv subtracts what it then reads.
            # (Only for a layer built without biases: the biases folding adds mark its weights as folded; one built
            # with them keeps ``primary_shift``, the mark that its state dict is a folded one.)
            b1 = b1 + residual_shift
            b2 = b2 - w2.flatten() * residual_shift[source]
            residual_shift = None
        self._set_conv(primary, w1, b1)
        self._set_conv(cheap, w2, b2)
        dtype = primary.weight.dtype
        self.primary_scale = (None if bool((residual_scale == 1).all()) else
                              residual_scale.to(dtype).view(1, -1, 1, 1))
        self.primary_shift = None if residual_shift is None else residual_shift.to(dtype).view(1, -1, 1, 1)
        self.folded = True

    def __setattr__(self, name, value):
        # mmcv's ConvModule in efficient_conv_bn_eval mode swaps its conv's forward for one that reads
        # ``conv.weight``, which a GhostConv does not have (the mode turned on after construction).
        if name == 'forward' and getattr(getattr(value, 'func', None), '__name__', '') == \
                'efficient_conv_bn_eval_forward':
            raise ValueError(_EFFICIENT_CONV_BN_EVAL)
        super().__setattr__(name, value)

    def _holds_folded_norm(self, state_dict: dict, prefix: str) -> bool:
        """Whether ``state_dict`` holds a folded GhostConv at ``prefix``: ``primary_shift``/``primary_scale``
        (which folding a layer built with biases always leaves), or conv biases in a layer built without them (a
        following norm's shift lives there after folding)."""
        return (any(prefix + key in state_dict for key in ('primary_scale', 'primary_shift'))
                or (not self.built_with_bias and prefix + 'primary_conv.bias' in state_dict))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        if prefix + 'primary_conv.weight' not in state_dict:  # not in this file: torch reports the missing keys
            return super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                                 unexpected_keys, error_msgs)
        theirs = self._holds_folded_norm(state_dict, prefix)
        if theirs and not self.folded:
            raise CheckpointError(
                f'GhostConv {prefix.rstrip(".") or "(root)"}: the weights are of a folded GhostConv (deploy mode, '
                'its norm folded in), this layer is not folded: load the checkpoint of the model before deploy '
                'mode, or put the model in deploy mode (mmghost.models.deploy_model) before loading')
        if self.folded and not theirs:
            raise CheckpointError(
                f'GhostConv {prefix.rstrip(".") or "(root)"}: this layer is folded (deploy mode) and the weights '
                'are of an unfolded GhostConv: load them before deploy_model, then put the model in deploy mode')
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @staticmethod
    def _set_conv(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor):
        conv.weight.copy_(weight)
        if conv.bias is None:
            conv.bias = nn.Parameter(bias.to(conv.weight), requires_grad=conv.weight.requires_grad)
        else:
            conv.bias.copy_(bias)

    def extra_repr(self) -> str:
        return f'ratio={self.ratio}, dw_size={self.dw_size}'
