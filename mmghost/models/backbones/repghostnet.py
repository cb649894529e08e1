"""RepGhostNet backbone for MMDetection.

Paper: "RepGhost: A Hardware-Efficient Ghost Module via Re-parameterization", Chengpeng Chen, Zichao Guo, Haien
Zeng, Pengfei Xiong, Jian Dong. 2022. https://arxiv.org/abs/2211.06088

RepGhostNet is GhostNet with the Ghost module's concatenation replaced by an addition that re-parameterisation
folds into the depthwise conv (:class:`~mmghost.models.layers.RepGhostModule`), and with half the expansion
channels (the sum keeps all of them). At inference no concatenation and no layout reorder is left.

Module names follow the official implementation (ChengpengChen/RepGhost ``model/repghost.py``), which timm's
``repghost.py`` repeats key for key, so official files (``state_dict_ema`` wrapper, ``module.`` prefixes) and timm's
``repghostnet_*`` weights load through ``init_cfg=dict(type='SafePretrained', checkpoint=PATH)``. Official
deploy-form files (``cheap_operation`` one conv with bias, no ``fusion_bn``) load into
``RepGhostNet(reparameterized=True)``.

Reading order: :data:`RepGhostNet.arch_setting`, :class:`RepGhostNet`; the blocks are in
:mod:`mmghost.models.layers.repghost_module`, the shared trunk in :mod:`mmghost.models.backbones.base`.
"""
import re
from typing import Optional, Sequence

import torch.nn as nn

from mmghost.registry import MODELS
from mmghost.utils.safe_load import CheckpointError
from ..layers import RepGhostBottleneck, RepGhostModule
from .base import GhostNetBase

# Keys that tell the two forms of RepGhost weights apart (relative to the trunk).
TRAINING_FORM_KEY = re.compile(r'\.fusion_bn\.0\.')
REPARAMETERIZED_FORM_KEY = re.compile(r'\.cheap_operation\.(weight|bias)$')
PRIMARY_NORM_KEY = re.compile(r'\.primary_conv\.1\.running_mean$')


@MODELS.register_module()
class RepGhostNet(GhostNetBase):
    """RepGhostNet backbone.

    Outputs 0-5 (stem, strides 4/8/16/32, final 1x1 conv), freezing, deploy mode and loading are those of
    :class:`~mmghost.models.backbones.base.GhostNetBase`; the output channels equal GhostNet's at every width
    (16, 24, 40, 112, 160, 960 at 1.0x). Published ImageNet weights (official and timm ``repghostnet_*``):
    widths 0.5, 0.58, 0.8, 1.0, 1.11, 1.3, 1.5, 2.0.

    Train in the training form (every RepGhost module with its ``fusion_bn`` branch). :meth:`switch_to_deploy`
    first folds each branch into its depthwise conv (:meth:`reparameterize`, the official ``switch_to_deploy``),
    then, as for every family member, folds the remaining batch norms into their convs and switches to
    channels_last on the CPU. Deployed outputs equal eval outputs up to float rounding.

    Args:
        widen_factor (float): Width multiplier; every channel count is ``make_divisible(c * widen_factor, 4)``.
            Default: 1.0.
        out_indices (Sequence[int]): Output indices (0-5), sorted, unique. Default: (1, 2, 3, 4).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and stages 1..k. Default: -1.
        dw_size (int): Kernel of every RepGhost module's depthwise (cheap) conv. Default: 3. (RepGhost has no
            Ghost ratio: the cheap conv makes as many maps as the primary conv, and they are added.)
        reparameterized (bool): Build every RepGhost module already folded (official ``deploy=True``): the form
            of official deploy-form weights, for inference. Default: False (the training form).
        conv_cfg (dict, optional): Config of the conv layers. Default: None.
        norm_cfg (dict): Config of the norm layers (batch norms can be folded). Default:
            ``dict(type='BN', requires_grad=True)``.
        act_cfg (dict): Activation. Default: ``dict(type='ReLU')``.
        norm_eval (bool): Keep norm layers in eval mode during training. Default: False.
        with_cp (bool): Gradient checkpointing of every group of bottlenecks. Default: False.
        memory_efficient (bool): Recompute every RepGhost module's cheap operation and sum in backward instead
            of storing them (same results, gradients and statistics). Default: True.
        init_cfg (dict or list[dict], optional): Initialization config, e.g. ``dict(type='SafePretrained',
            checkpoint='repghostnet_1_11x_43M_75.1.pth.tar')`` (official or timm weights; a detector
            checkpoint with ``prefix='backbone.'``). Default: None.
    """

    # The architecture table of the official implementation (its ``cfgs``): kernel size, expansion channels,
    # output channels, SE ratio, stride per bottleneck; each inner list is one group (``blocks.N``). GhostNet's
    # table with half the expansion channels.
    arch_setting = [
        # stage 1: stride 2 -> 4
        [[[3, 8, 16, 0, 1]],
         [[3, 24, 24, 0, 2]],
         [[3, 36, 24, 0, 1]]],
        # stage 2: stride 4 -> 8
        [[[5, 36, 40, 0.25, 2]],
         [[5, 60, 40, 0.25, 1]]],
        # stage 3: stride 8 -> 16
        [[[3, 120, 80, 0, 2]],
         [[3, 100, 80, 0, 1],
          [3, 120, 80, 0, 1],
          [3, 120, 80, 0, 1],
          [3, 240, 112, 0.25, 1],
          [3, 336, 112, 0.25, 1]]],
        # stage 4: stride 16 -> 32
        [[[5, 336, 160, 0.25, 2]],
         [[5, 480, 160, 0, 1],
          [5, 480, 160, 0.25, 1],
          [5, 480, 160, 0, 1],
          [5, 480, 160, 0.25, 1]]],
    ]
    # The official code and timm compute the final conv's width as ``make_divisible(480 * width * 2, 4)`` (last
    # expansion, doubled); doubling is exact in binary floating point, so that is ``make_divisible(960 * width,
    # 4)`` at every width, the base's rule.
    final_channels = 960
    #: The widths with published weights, tried first when telling which width a file holds.
    weights_widen_factors = (0.5, 0.58, 0.8, 1.0, 1.11, 1.3, 1.5, 2.0)

    def __init__(self,
                 widen_factor: float = 1.0,
                 out_indices: Sequence[int] = (1, 2, 3, 4),
                 frozen_stages: int = -1,
                 dw_size: int = 3,
                 reparameterized: bool = False,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 act_cfg: dict = dict(type='ReLU'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 memory_efficient: bool = True,
                 init_cfg=None):
        if not isinstance(reparameterized, bool):
            raise ValueError(f'reparameterized must be a bool, got {reparameterized!r}')
        # Read by build_block() while the base builds the trunk.
        self.reparameterized = reparameterized
        super().__init__(widen_factor=widen_factor, out_indices=out_indices, frozen_stages=frozen_stages,
                         dw_size=dw_size, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg, norm_eval=norm_eval,
                         with_cp=with_cp, memory_efficient=memory_efficient, init_cfg=init_cfg)
        self.ratio = None  # no Ghost ratio (see dw_size)

    def build_block(self, index, in_channels, mid_channels, out_channels, kernel_size, stride,
                    se_ratio) -> nn.Module:
        return RepGhostBottleneck(
            in_channels, mid_channels, out_channels, kernel_size=kernel_size, stride=stride, se_ratio=se_ratio,
            dw_size=self.dw_size, reparameterized=self.reparameterized, conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg, act_cfg=self.act_cfg, memory_efficient=self.blocks_memory_efficient)

    def reparameterize(self) -> None:
        """Fold every RepGhost module's ``fusion_bn`` into its depthwise conv (the official deploy form; first
        step of :meth:`switch_to_deploy`). The other batch norms stay until :meth:`switch_to_deploy` folds them."""
        for module in self.modules():
            if isinstance(module, RepGhostModule):
                module.reparameterize()
        self.reparameterized = True

    def adapt_state_dict(self, state_dict, prefix):
        """Refuse, in one line that says what to do, weights of the other form than the model's.

        Training-form weights have ``fusion_bn.0.*`` and ``cheap_operation.0/1.*``; re-parameterised (official
        deploy-form) weights ``cheap_operation.weight``/``.bias`` and no ``fusion_bn``. Loaded into a model of the
        other form, torch would report every such key missing or unexpected, and mmengine's ``init_cfg`` loading
        (strict=False) would only log that and leave those tensors random.
        """
        keys = ['.' + k[len(prefix):] for k in state_dict if k.startswith(prefix)]
        training_form = any(TRAINING_FORM_KEY.search(k) for k in keys)
        reparameterized_form = any(REPARAMETERIZED_FORM_KEY.search(k) for k in keys)
        name = type(self).__name__
        if self.deploy and any(PRIMARY_NORM_KEY.search(k) for k in keys):
            raise CheckpointError(
                f'{name}: the model\'s batch norms are already folded (switch_to_deploy()) and the weights have '
                'them: load the weights first, then call switch_to_deploy()')
        if training_form and self.reparameterized:
            raise CheckpointError(
                f'{name}: training-form weights (fusion_bn, cheap_operation.0/1) for a re-parameterised model: '
                f'build it with reparameterized=False, load them, then call switch_to_deploy()')
        if reparameterized_form and not self.reparameterized:
            raise CheckpointError(
                f'{name}: re-parameterised (official deploy-form) weights (cheap_operation.weight/bias, no '
                f'fusion_bn) for a training-form model: build it with reparameterized=True to load them '
                '(inference only; training needs training-form weights)')
