"""Building blocks the GhostNet family shares, named as in the official/timm checkpoints."""
from .conv_bn_act import ConvBnAct, conv_norm_act, downsample_shortcut
from .ghost_module import GhostModule, check_ratio_and_dw_size, concat_channels
from .squeeze_excite import SqueezeExcite
from .utils import frozen_norm_statistics, make_divisible, recompute_in_backward

__all__ = [
    'ConvBnAct', 'GhostModule', 'SqueezeExcite', 'check_ratio_and_dw_size', 'concat_channels', 'conv_norm_act',
    'downsample_shortcut', 'frozen_norm_statistics', 'make_divisible', 'recompute_in_backward'
]

# GhostNetV2 / V3 blocks.
from .dfc_attention import DFCAttention  # noqa: E402
from .ghost_module_v2 import GhostModuleV2  # noqa: E402
from .ghost_module_v3 import GhostModuleV3  # noqa: E402
from .reparam import ConvBN, build_rep_branches, forward_rep_branches, fuse_rep_branches  # noqa: E402

__all__ += [
    'DFCAttention', 'GhostModuleV2', 'GhostModuleV3', 'ConvBN', 'build_rep_branches', 'forward_rep_branches',
    'fuse_rep_branches'
]

# The Ghost module as a conv layer for any OpenMMLab model (conv_cfg=dict(type='GhostConv')).
from .ghost_conv import GhostConv  # noqa: E402

__all__ += ['GhostConv']

# RepGhostNet's blocks (the Ghost module with a re-parameterisable sum instead of the concatenation).
from .repghost_module import RepGhostBottleneck, RepGhostModule  # noqa: E402

__all__ += ['RepGhostBottleneck', 'RepGhostModule']
