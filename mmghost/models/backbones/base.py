"""What every GhostNet backbone shares: the trunk built from an architecture table, its taps and its modes.

A family member (:class:`~mmghost.models.backbones.GhostNet`, ``GhostNetV2``, ``GhostNetV3``) subclasses
:class:`GhostNetBase`, sets :attr:`~GhostNetBase.arch_setting` and implements
:meth:`~GhostNetBase.build_block`; everything else is here, once.

The trunk has the official/timm module names, so their ImageNet weights load as they are with
``init_cfg=dict(type='SafePretrained', checkpoint=PATH)`` (mmengine's ``Pretrained`` reading the file without
running code from it; :mod:`mmghost.models.pretrained`), mmengine's ``Pretrained`` or ``load_state_dict``:
``conv_stem``, ``bn1``, ``act1``, then ``blocks.N.M`` (group N of the table, bottleneck M), then the final 1x1
conv ``blocks.9.0`` (``conv``, ``bn1``, ``act1``).
"""
import math
import numbers
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer, build_conv_layer, build_norm_layer
from mmcv.cnn.utils import fuse_conv_bn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init, kaiming_init
from torch.nn.modules.batchnorm import _BatchNorm

from mmghost.utils.compat import is_compiling
from ..layers import ConvBnAct, SqueezeExcite, check_ratio_and_dw_size, make_divisible, recompute_in_backward
from ..weights import shape_mismatch_error

# Strides of outputs 0-5: stem, stages 1-4, final 1x1 conv.
OUTPUT_STRIDES = (2, 4, 8, 16, 32, 32)


def default_channels_last(device) -> bool:
    """The memory layout :meth:`GhostNetBase.switch_to_deploy` uses when none is given: channels_last (NHWC) on
    the CPU, NCHW on every other device.

    A fixed rule rather than a measurement, so that every rank of a distributed job and every run of a
    deployment gets the same layout (a timing taken at start-up can differ between them). CPU: channels_last
    halves GhostNet's latency (oneDNN's depthwise convs and the Ghost concatenations are much faster in NHWC;
    ``benchmarks/benchmark.py`` rows ``mmghost-deploy`` vs ``mmghost-deploy-nchw``). CUDA: NCHW, the layout the
    paper configs train in; GhostNet is dominated by depthwise convs, whose cuDNN NHWC kernels are not reliably
    faster (timm's GhostNet was reported slower in channels_last bf16 on an H100). Measure your device with
    ``python tools/deploy_layout.py --device cuda`` and pass ``channels_last=True`` where it reports NHWC faster.
    """
    return torch.device(device).type == 'cpu'


class GhostNetBase(BaseModule):
    """Base of the GhostNet backbones: stem, ``blocks`` from :attr:`arch_setting`, final 1x1 conv, taps.

    Outputs, selected by ``out_indices`` (each the deepest feature at its stride):

    ===== ======= ====================================== =====================
    index stride  where                                  channels at widen 1.0
    ===== ======= ====================================== =====================
    0     2       stem (``conv_stem``, ``bn1``, ``act1``) 16
    1     4       end of stage 1 (``blocks.0-2``)        24
    2     8       end of stage 2 (``blocks.3-4``)        40
    3     16      end of stage 3 (``blocks.5-6``)        112
    4     32      end of stage 4 (``blocks.7-8``)        160
    5     32      final 1x1 conv (``blocks.9``)          960
    ===== ======= ====================================== =====================

    Every channel count is ``make_divisible(c * widen_factor, 4)``. :attr:`out_channels` lists the channels of
    the selected outputs and :attr:`feature_info` describes them (channels, stride, module). Stages deeper
    than the deepest output are not built: their parameters would get no gradient (which breaks
    DistributedDataParallel) and their compute would be wasted.

    Subclasses set :attr:`arch_setting` and implement :meth:`build_block`; they may override
    :meth:`build_final_conv`, :meth:`reparameterize` (called first by :meth:`switch_to_deploy`) and
    :meth:`adapt_state_dict` (key renames applied to weights before they are loaded).

    Args:
        widen_factor (float): Width multiplier alpha. Default: 1.0.
        out_indices (Sequence[int]): Output indices (0-5, see above), sorted, unique. Default: (1, 2, 3, 4).
        frozen_stages (int): Stages to freeze (weights and norm statistics): -1 freezes nothing, 0 the stem,
            k the stem and stages 1..k (5 = everything). Default: -1.
        conv_cfg (dict, optional): Config of the conv layers. Default: None.
        norm_cfg (dict): Config of the norm layers. Default: ``dict(type='BN', requires_grad=True)``.
        act_cfg (dict): Activation. Default: ``dict(type='ReLU')``.
        norm_eval (bool): Keep norm layers in eval mode (frozen statistics) during training. Default: False.
        with_cp (bool): Gradient checkpointing of every group of bottlenecks (``blocks.N``): recomputed in
            backward instead of stored, with the batch-norm statistics updated once per step. Default: False.
        memory_efficient (bool): In training, recompute the cheap operations of the Ghost modules in backward
            instead of storing them (about a quarter less activation memory, same results). Default: True.
        init_cfg (dict or list[dict], optional): Initialization config; ``dict(type='SafePretrained',
            checkpoint=PATH[, prefix='backbone.'])`` loads official/timm weights and detector checkpoints
            (see :mod:`mmghost.models.pretrained`). Default: None.
        ratio (int): Ghost ratio ``s`` of every Ghost module (used by :meth:`build_block`). Default: 2.
        dw_size (int): Cheap-operation kernel ``d`` of every Ghost module. Default: 3.
    """

    #: The architecture table: stages 1-4, each a list of groups (``blocks.N``), each a list of bottleneck
    #: rows ``[kernel_size, expansion channels, output channels, SE ratio, stride]`` (the official ``cfgs``).
    arch_setting: List[List[List[list]]] = []
    #: Channels of the stem and of the final 1x1 conv (before ``widen_factor``).
    stem_channels = 16
    final_channels = 960
    num_outputs = 6
    #: The smallest Ghost ratio the blocks support (GhostNetV3: 2).
    min_ratio = 1

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
        self._check_args(widen_factor, out_indices, frozen_stages, norm_cfg, act_cfg)
        check_ratio_and_dw_size(ratio, dw_size)
        if ratio < self.min_ratio:
            raise ValueError(f'{type(self).__name__} needs ratio >= {self.min_ratio}, got {ratio!r}')
        self.widen_factor = widen_factor
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.memory_efficient = memory_efficient
        # Whole-group recomputation (with_cp) already keeps nothing inside the blocks.
        self.blocks_memory_efficient = memory_efficient and not with_cp
        self.ratio = ratio
        self.dw_size = dw_size
        self.deploy = False
        self.channels_last = False  # set by switch_to_deploy()
        self.num_stages = self.out_indices[-1]  # stages 1..num_stages are built (5: the final conv)

        stem_channels = self.width(self.stem_channels)
        self.conv_stem = build_conv_layer(conv_cfg, 3, stem_channels, 3, stride=2, padding=1, bias=False)
        self.bn1 = build_norm_layer(norm_cfg, stem_channels)[1]
        self.act1 = build_activation_layer(act_cfg)

        channels = [stem_channels]
        groups = []  # one nn.Sequential per group of the table, then one for the final 1x1 conv
        group_ends = []  # one past the last group of each stage, stages 1-5
        in_channels = stem_channels
        index = 0  # running bottleneck index over the whole table (V2/V3 change blocks from index 2 on)
        for stage, stage_setting in enumerate(self.arch_setting, start=1):
            for group in stage_setting:
                layers = []
                for kernel_size, exp, out, se_ratio, stride in group:
                    if stage <= self.num_stages:
                        layers.append(self.build_block(index, in_channels, self.width(exp), self.width(out),
                                                       kernel_size, stride, se_ratio))
                    in_channels = self.width(out)
                    index += 1
                groups.append(nn.Sequential(*layers))
            group_ends.append(len(groups))
            channels.append(in_channels)
        final_channels = self.width(self.final_channels)
        groups.append(nn.Sequential(self.build_final_conv(in_channels, final_channels)) if self.num_stages == 5
                      else nn.Sequential())
        group_ends.append(len(groups))
        channels.append(final_channels)
        num_built = group_ends[self.num_stages - 1] if self.num_stages > 0 else 0
        # One Sequential of groups, so state-dict keys keep the official ``blocks.N.M`` numbering.
        self.blocks = nn.Sequential(*groups[:num_built])
        starts = [0] + group_ends[:-1]
        #: ``stage_groups[i]``: the indices into :attr:`blocks` that make stage ``i + 1`` (built stages only).
        self.stage_groups: List[Tuple[int, ...]] = [
            tuple(range(start, end)) for start, end in zip(starts, group_ends)][:self.num_stages]
        modules = ['act1'] + [f'blocks.{end - 1}' for end in group_ends]
        #: Channels, stride and module of all six outputs, built or not.
        self.all_feature_info = [
            dict(num_chs=c, reduction=s, module=m, index=i)
            for i, (c, s, m) in enumerate(zip(channels, OUTPUT_STRIDES, modules))
        ]
        self.feature_info = [self.all_feature_info[i] for i in self.out_indices]
        self.out_channels = [info['num_chs'] for info in self.feature_info]
        self._init_like_conv_module()
        self._freeze_stages()

    # ---- what subclasses provide ----

    def build_block(self, index: int, in_channels: int, mid_channels: int, out_channels: int, kernel_size: int,
                    stride: int, se_ratio: float) -> nn.Module:
        """One bottleneck of the table (``blocks.N.M``), already at the model's width.

        Args:
            index: Running index of the bottleneck in the table (0-15), e.g. for V2's "DFC from block 2 on".
            in_channels, mid_channels, out_channels: Input, expansion and output channels.
            kernel_size: Kernel of the depthwise convs; stride: 1 or 2; se_ratio: 0 for no SE.

        Use :attr:`conv_cfg`, :attr:`norm_cfg`, :attr:`act_cfg`, :attr:`blocks_memory_efficient`,
        :attr:`ratio` and :attr:`dw_size`. Gradient checkpointing (``with_cp``) is done by the trunk, not by
        the block.
        """
        raise NotImplementedError

    def build_final_conv(self, in_channels: int, out_channels: int) -> nn.Module:
        """The final 1x1 conv (``blocks.9.0``): conv ``conv``, norm ``bn1``, activation ``act1``."""
        return ConvBnAct(in_channels, out_channels, 1, conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                         act_cfg=self.act_cfg)

    def reparameterize(self) -> None:
        """Fold re-parameterisation branches into single convs (V3); the first step of :meth:`switch_to_deploy`.

        Nothing to do for backbones without such branches.
        """

    def adapt_state_dict(self, state_dict: Dict[str, torch.Tensor], prefix: str) -> None:
        """Rename, in place, keys of weights about to be loaded (keys under ``prefix``) to this model's names.

        Called for every load (``init_cfg``, ``load_state_dict``, mmengine's ``load_checkpoint``) before the
        shapes are checked. Default: nothing.
        """

    # ---- construction helpers ----

    def _init_like_conv_module(self):
        """Initialise as mmghost 0.1 did: its conv-norm layers were mmcv ``ConvModule``s, which initialise at
        construction (conv: Kaiming normal, fan_out, ReLU gain, zero bias; norm: weight 1, bias 0). Training
        from scratch keeps that behaviour; the SE convs keep PyTorch's default, as before. Pretrained weights
        (``init_cfg``) replace all of it."""
        se_convs = {id(c) for m in self.modules() if isinstance(m, SqueezeExcite) for c in m.modules()}
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and id(m) not in se_convs:
                kaiming_init(m, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, (_BatchNorm, nn.GroupNorm)) and m.weight is not None:
                constant_init(m, 1, bias=0)

    def width(self, channels: float) -> int:
        """``channels`` of the architecture table at this model's width."""
        return make_divisible(channels * self.widen_factor, 4)

    @classmethod
    def width_signature(cls, widen_factor: float) -> Dict[str, Tuple[int, ...]]:
        """Shapes of a few state-dict keys that depend only on the width (not on ratio, version or mode).

        Stem conv, every bottleneck's shortcut 1x1 conv (present where the shape changes) and the final conv;
        used to tell which width a set of weights has.
        """
        def width(c):
            return make_divisible(c * widen_factor, 4)

        prev = width(cls.stem_channels)
        shapes = {'conv_stem.weight': (prev, 3, 3, 3)}
        g = 0
        for stage_setting in cls.arch_setting:
            for group in stage_setting:
                for m, (_, _, out, _, stride) in enumerate(group):
                    if stride != 1 or width(out) != prev:
                        shapes[f'blocks.{g}.{m}.shortcut.2.weight'] = (width(out), prev, 1, 1)
                    prev = width(out)
                g += 1
        shapes[f'blocks.{g}.0.conv.weight'] = (width(cls.final_channels), prev, 1, 1)
        return shapes

    @classmethod
    def _check_args(cls, widen_factor, out_indices, frozen_stages, norm_cfg, act_cfg):
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
        if not isinstance(norm_cfg, dict) or 'type' not in norm_cfg:
            raise TypeError(f'norm_cfg must be a dict with a "type" key, got {norm_cfg!r}')
        try:
            build_norm_layer(norm_cfg, 8)
        except KeyError as e:
            raise ValueError(f'unknown norm_cfg type {norm_cfg["type"]!r}: {e}') from None
        if not isinstance(act_cfg, dict) or 'type' not in act_cfg:
            raise TypeError(f'act_cfg must be a dict with a "type" key, got {act_cfg!r}')

    # ---- stages ----

    def stage_module_names(self, stage: int) -> List[str]:
        """Names of the modules of ``stage``: 0 the stem, 1-5 groups of :attr:`blocks` (none if not built)."""
        if stage == 0:
            return ['conv_stem', 'bn1', 'act1']
        if stage > self.num_stages:
            return []
        return [f'blocks.{g}' for g in self.stage_groups[stage - 1]]

    def stage_modules(self, stage: int) -> List[nn.Module]:
        """The modules of ``stage`` (see :meth:`stage_module_names`)."""
        return [self.get_submodule(name) for name in self.stage_module_names(stage)]

    def _freeze_stages(self):
        for stage in range(self.frozen_stages + 1):
            for module in self.stage_modules(stage):
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ---- forward ----

    def forward_taps(self, x: torch.Tensor, indices: Optional[Iterable[int]] = None) -> List[torch.Tensor]:
        """Run the stem and the stages up to the deepest of ``indices``; return the outputs at ``indices``.

        The one place the stages are run: :meth:`forward` uses it with :attr:`out_indices`, and the tools
        (FLOPs per stage, feature pictures) with every built output.

        Args:
            x: ``(N, 3, H, W)`` input (not checked here; :meth:`forward` checks it).
            indices: Output indices, sorted, each at most :attr:`num_stages`. Default: :attr:`out_indices`.
        """
        indices = self.out_indices if indices is None else tuple(indices)
        form = getattr(self, 'deploy_form', None)  # mmghost.models.deploy_forms (set by deploy_model)
        if form is not None and indices == form.out_indices:
            return list(form(x))
        if indices and indices[-1] > self.num_stages:
            raise ValueError(f'output {indices[-1]} is not built (out_indices {self.out_indices} build stages up '
                             f'to {self.num_stages})')
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.act1(self.bn1(self.conv_stem(x)))
        outs = [x] if 0 in indices else []
        for stage, group_ids in enumerate(self.stage_groups[:max(indices, default=0)], 1):  # no start=: dynamo 2.1
            for g in group_ids:
                group = self.blocks[g]
                if self.with_cp and self.training and x.requires_grad and not is_compiling():
                    x = recompute_in_backward(group, group, x)
                else:
                    x = group(x)
            if stage in indices:
                outs.append(x)
        return outs

    def _check_input(self, x):
        name = type(self).__name__
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f'{name} expects a 4-D (N, 3, H, W) tensor, got {shape}')
        if x.shape[1] != 3:
            raise ValueError(f'{name} expects 3 input channels (N, 3, H, W), got shape {tuple(x.shape)}')

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if not (is_compiling() or torch.jit.is_tracing()):  # shapes are symbolic there (ONNX export)
            self._check_input(x)
        return tuple(self.forward_taps(x))

    # ---- deployment ----

    def switch_to_deploy(self, channels_last: Optional[bool] = None):
        """Prepare for inference, in place: :meth:`reparameterize`, fold every norm layer into its conv, and
        use channels_last.

        Outputs stay equal to the eval-mode model (up to float rounding); the model keeps working in mmdet's
        test and inference pipelines. Only batch norm can be folded; calling this again changes nothing.

        Args:
            channels_last (bool, optional): Keep weights and activations in channels_last (NHWC) memory
                format; inputs are converted on the way in and the outputs are channels_last tensors. None:
                the fixed rule of :func:`default_channels_last` (channels_last on the CPU, NCHW elsewhere), the
                same on every rank and in every run; ``tools/deploy_layout.py`` measures both layouts on a
                device for whoever wants to pass the faster one explicitly.
        """
        if not self.deploy:
            self.reparameterize()
            fuse_conv_bn(self)
            self._activations_in_place()
            self.deploy = True
            print_log(f'{type(self).__name__}: folded batch norms into convs (deploy mode)', logger='current')
        if channels_last is None:
            channels_last = default_channels_last(next(self.parameters()).device)
        if channels_last and getattr(self, 'deploy_form', None) is not None:
            del self.deploy_form  # the graph forms are for NCHW (mmghost.models.deploy_forms)
        self.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self.channels_last = channels_last
        return self

    def _activations_in_place(self):
        """Deploy mode: let every activation that directly follows a (folded) conv in a conv-norm-act unit
        (an ``nn.Sequential``, :class:`~mmghost.models.layers.ConvBnAct`, the stem) overwrite its input.

        Outside deploy mode nothing runs in place (issue 11: forward hooks must see the values modules
        returned). In deploy mode the norms are gone and the conv's output feeds only the activation; running it
        in place saves a fresh allocation per conv: measured 19% less CPU latency (GhostNet-1.1x, 800x1344,
        channels_last, 1 thread). The cost: a forward hook on such a conv (or on the identity left where its norm
        was) sees the activated values, as with mmcv's ``ConvModule``; hooks on Ghost modules, blocks and stages
        are unaffected.
        """
        units = [(self, ['conv_stem', 'bn1', 'act1'])]
        units += [(m, list(m._modules)) for m in self.modules() if isinstance(m, (nn.Sequential, ConvBnAct))]
        for unit, names in units:
            fresh = False  # the running tensor was made by a conv of this unit (not the unit's input)
            for name in names:
                child = unit._modules.get(name)
                if isinstance(child, nn.Conv2d):
                    fresh = True
                elif isinstance(child, (nn.Identity, _BatchNorm)):
                    pass  # a folded norm passes the conv's output on
                elif fresh and isinstance(getattr(child, 'inplace', None), bool):
                    child.inplace = True
                else:
                    fresh = False

    # ---- loading weights ----

    def _unwrap_model_prefix(self, state_dict, prefix):
        """Weights of a whole model (an mmdet detector, an mmpretrain ``ImageClassifier``) loaded into this
        backbone or classifier without ``prefix='backbone.'``: when none of this model's keys is there but a
        stem is under ``backbone.``, use the ``backbone.*`` keys, and mmpretrain's ``head.conv_head.*`` /
        ``head.classifier.*`` for the ImageNet head (in place; other keys stay and are reported unexpected)."""
        if any(prefix + k in state_dict for k in ('conv_stem.weight', 'stem.conv.weight')):
            return
        inner = prefix + 'backbone.'
        if not any(inner + k in state_dict for k in ('conv_stem.weight', 'stem.conv.weight')):
            return
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix):]
            if rest.startswith('backbone.'):
                state_dict[prefix + rest[len('backbone.'):]] = state_dict.pop(key)
            elif rest.startswith(('head.conv_head.', 'head.classifier.')):
                state_dict[prefix + rest[len('head.'):]] = state_dict.pop(key)
        print_log(f'{type(self).__name__}: the weights are a whole model\'s; using its backbone.* (and an ImageNet '
                  'head\'s head.conv_head.*/head.classifier.*) tensors', logger='current')

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # Runs before the children load (torch's and mmengine's loaders), so renames reach them. A shape that
        # does not fit is refused here with the widths named: torch would raise a bare "size mismatch", and
        # mmengine's init_cfg loading (strict=False) would only log it and leave those tensors random.
        self._unwrap_model_prefix(state_dict, prefix)
        self.adapt_state_dict(state_dict, prefix)
        own = self.state_dict()
        mismatched = [(k, tuple(state_dict[prefix + k].shape), tuple(v.shape)) for k, v in own.items()
                      if isinstance(state_dict.get(prefix + k), torch.Tensor)
                      and tuple(state_dict[prefix + k].shape) != tuple(v.shape)]
        if mismatched:
            weights = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
            raise shape_mismatch_error(type(self), self.widen_factor, mismatched, weights)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
