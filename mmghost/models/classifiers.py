"""The family's ImageNet networks: a backbone trunk + global pool + 1x1 conv to 1280 + activation + linear.

Not needed for detection; they exist to check the papers' figures (GhostNet-1.0x: 5.2M params, 141M FLOPs) and
to check weights by their logits. Their state-dict keys are those of the official/timm classifiers (``conv_stem``,
``bn1``, ``blocks.N.M...``, ``conv_head``, ``classifier``), so an official or timm file loads with plain
``load_state_dict(strict=True)``; so does an mmpretrain ``ImageClassifier`` checkpoint (``backbone.*``,
``head.conv_head.*``, ``head.classifier.*``; see ``GhostNetBase._unwrap_model_prefix``). Dropout is omitted (it
is the identity in eval).

A classifier for another family member is one line: ``class GhostNetV2Classifier(ImageNetClassifierMixin,
GhostNetV2): pass``; :func:`classifier_class` makes one for any registered family backbone.
"""
from typing import Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer

from mmghost.registry import MODELS
from .backbones import GhostNet, GhostNetBase, GhostNetV2, GhostNetV3, RepGhostNet


# backbone class -> its classifier class (defined below or made by classifier_class()).
_CLASSIFIERS = {}


class ImageNetClassifierMixin:
    """Turns a :class:`~mmghost.models.backbones.base.GhostNetBase` backbone into the ImageNet network.

    The trunk is built up to the final 1x1 conv (``out_indices=(5, )``); ``conv_head``, ``act2`` and
    ``classifier`` follow, named as in the official and timm models.

    Args:
        widen_factor (float): Width multiplier of the trunk. Default: 1.0.
        num_classes (int): Classes of the linear layer. Default: 1000.
        head_channels (int): Channels of ``conv_head``. Default: 1280.
        **kwargs: Other arguments of the backbone (``out_indices`` is fixed to the final conv).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Remember the classifier of each backbone class, for classifier_class().
        backbone = next((c for c in cls.__mro__[1:]
                         if issubclass(c, GhostNetBase) and not issubclass(c, ImageNetClassifierMixin)), None)
        if backbone is not None:
            _CLASSIFIERS.setdefault(backbone, cls)

    def __init__(self, widen_factor: float = 1.0, num_classes: int = 1000, head_channels: int = 1280, **kwargs):
        if 'out_indices' in kwargs:
            raise TypeError(f'{type(self).__name__} has no out_indices: it runs the whole trunk')
        super().__init__(widen_factor=widen_factor, out_indices=(5, ), **kwargs)
        self.num_classes = num_classes
        self.conv_head = nn.Conv2d(self.out_channels[-1], head_channels, 1, bias=True)
        self.act2 = build_activation_layer(dict(self.act_cfg))
        self.classifier = nn.Linear(head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = super().forward(x)[-1]
        x = F.adaptive_avg_pool2d(features, 1)
        return self.classifier(self.act2(self.conv_head(x)).flatten(1))


class GhostNetClassifier(ImageNetClassifierMixin, GhostNet):
    """GhostNet (V1) ImageNet network (timm ``ghostnet_050/100/130``; official ``state_dict_73.98.pth``)."""


class GhostNetV2Classifier(ImageNetClassifierMixin, GhostNetV2):
    """GhostNetV2 ImageNet network (timm ``ghostnetv2_100/130/160``; official ``ck_ghostnetv2_10.pth.tar``...)."""


class GhostNetV3Classifier(ImageNetClassifierMixin, GhostNetV3):
    """GhostNetV3 ImageNet network (timm ``ghostnetv3_100``; official ``ghostnetv3-1.0.pth.tar``)."""


class RepGhostNetClassifier(ImageNetClassifierMixin, RepGhostNet):
    """RepGhostNet ImageNet network (timm ``repghostnet_050`` ... ``repghostnet_200``; official
    ``repghostnet_1_0x_...pth.tar``; ``reparameterized=True`` for the official deploy-form files)."""


def classifier_class(backbone: Union[str, type]) -> type:
    """The ImageNet classifier class of a family backbone (a class or its type name in mmdet's registry)."""
    cls = MODELS.get(backbone) if isinstance(backbone, str) else backbone
    if not (isinstance(cls, type) and issubclass(cls, GhostNetBase)):
        raise ValueError(f'{backbone!r} is not a GhostNet-family backbone (a GhostNetBase subclass)')
    if cls not in _CLASSIFIERS:  # the class registers itself (__init_subclass__)
        type(f'{cls.__name__}Classifier', (ImageNetClassifierMixin, cls),
             dict(__doc__=f'{cls.__name__} ImageNet network.', __module__=__name__))
    return _CLASSIFIERS[cls]

