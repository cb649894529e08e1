"""The GhostNet ImageNet head for mmpretrain: pooled features -> 1x1 conv to 1280 -> ReLU -> dropout -> linear.

Used by the ImageNet configs (``configs/imagenet/``), which import this module through ``custom_imports``;
``import mmghost`` never imports it, so mmghost keeps working without mmpretrain (which needs torchvision).
Importing it without mmpretrain raises an ImportError that says so.

The parameters are named like the official and timm heads (``conv_head`` with its 4-D weight, ``classifier``),
so ``ImageClassifier`` checkpoints map onto :class:`~mmghost.models.GhostNetClassifier` by dropping the
``backbone.``/``head.`` prefixes, and the parameter count equals ``GhostNetClassifier``'s.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer

try:
    from mmpretrain.models.heads import ClsHead
    from mmpretrain.registry import MODELS
except ImportError as e:  # mmpretrain (and torchvision, which it needs) are optional
    raise ImportError('mmghost.models.heads registers a head into mmpretrain: pip install mmpretrain '
                      f'(which needs torchvision) to use the ImageNet configs ({e})') from e


@MODELS.register_module()
class GhostNetClsHead(ClsHead):
    """GhostNet's classification head (paper Table 1: ``AvgPool -> 1x1 conv 1280 -> FC``), after the
    official code: 1x1 conv with bias, activation, dropout, linear.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Channels of the pooled features (``960 * widen_factor`` rounded, e.g. 1056 at 1.1).
        mid_channels (int): Channels of ``conv_head``. Default: 1280.
        dropout_rate (float): Dropout probability before the classifier (training only). Default: 0.2.
        act_cfg (dict): Activation after ``conv_head``. Default: ``dict(type='ReLU')``.
        **kwargs: ``loss``, ``topk``, ``cal_acc``, ``init_cfg`` of mmpretrain's ``ClsHead``.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 mid_channels: int = 1280,
                 dropout_rate: float = 0.2,
                 act_cfg: dict = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None,
                 **kwargs):
        super().__init__(init_cfg=init_cfg, **kwargs)
        for name, value in (('num_classes', num_classes), ('in_channels', in_channels),
                            ('mid_channels', mid_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be a positive int, got {value!r}')
        if not 0 <= dropout_rate < 1:
            raise ValueError(f'dropout_rate must be in [0, 1), got {dropout_rate!r}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        # A 1x1 conv (not a Linear) so that the weight has the official 4-D shape.
        self.conv_head = nn.Conv2d(in_channels, mid_channels, 1, bias=True)
        self.act2 = build_activation_layer(dict(act_cfg))
        self.dropout = nn.Dropout(dropout_rate)
        self.classifier = nn.Linear(mid_channels, num_classes)

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """The 1280-d features before dropout and the classifier, from the pooled last feature map."""
        x = feats[-1]
        if x.dim() == 2:  # GlobalAveragePooling flattens
            x = x[:, :, None, None]
        elif x.shape[-2:] != (1, 1):  # no neck: pool here, as the official model does
            x = x.mean((2, 3), keepdim=True)
        return self.act2(self.conv_head(x)).flatten(1)

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.dropout(self.pre_logits(feats)))
