"""Dense heads that mmdet builds without a ``conv_cfg``, with one added (so ``GhostConv`` can go in)."""
from typing import Optional

import torch.nn as nn
from mmcv.cnn import ConvModule, build_conv_layer
from mmdet.models.dense_heads import RPNHead

from mmghost.registry import MODELS


@MODELS.register_module()
class GhostRPNHead(RPNHead):
    """mmdet's ``RPNHead`` with a ``conv_cfg`` for its shared conv(s) ``rpn_conv``.

    mmdet 3.3's ``RPNHead`` builds ``rpn_conv`` as a plain ``nn.Conv2d`` (or, with ``num_convs > 1``, plain
    ``ConvModule``s) and takes no ``conv_cfg``. With ``conv_cfg=None`` this head is ``RPNHead``: same modules,
    same state-dict keys, same outputs. With ``conv_cfg=dict(type='GhostConv', ...)`` the 3x3 ``rpn_conv`` is a
    Ghost module; the 1x1 predictors ``rpn_cls``/``rpn_reg`` stay plain convs, as ``RetinaHead``'s do.

    Args:
        in_channels (int): Input channels.
        conv_cfg (dict, optional): Config of the ``rpn_conv`` layer(s). Default: None (``nn.Conv2d``).
        **kwargs: ``RPNHead``'s arguments (``feat_channels``, ``num_convs``, ``anchor_generator``...).
    """

    def __init__(self, in_channels: int, conv_cfg: Optional[dict] = None, **kwargs):
        self.conv_cfg = conv_cfg  # read by _init_layers(), which the parent's __init__ calls
        super().__init__(in_channels, **kwargs)

    def _init_layers(self):
        """``RPNHead._init_layers`` with ``conv_cfg`` passed to every ``rpn_conv``."""
        if self.num_convs > 1:
            self.rpn_conv = nn.Sequential(*[
                # inplace=False as in RPNHead: forward_single applies F.relu after the last one.
                ConvModule(self.in_channels if i == 0 else self.feat_channels, self.feat_channels, 3, padding=1,
                           conv_cfg=self.conv_cfg, inplace=False) for i in range(self.num_convs)
            ])
        else:
            self.rpn_conv = build_conv_layer(self.conv_cfg, self.in_channels, self.feat_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(self.feat_channels, self.num_base_priors * self.cls_out_channels, 1)
        self.rpn_reg = nn.Conv2d(self.feat_channels, self.num_base_priors * self.bbox_coder.encode_size, 1)
