"""The GhostNet family: shared layers, backbones (registered in mmdet's MODELS), ImageNet classifiers, weights."""
from .backbones import GhostBottleneck, GhostNet, GhostNetBase
from .classifiers import (GhostNetClassifier, GhostNetV2Classifier, GhostNetV3Classifier, ImageNetClassifierMixin,
                          classifier_class)
from .layers import GhostModule, SqueezeExcite, make_divisible

__all__ = [
    'GhostNet', 'GhostNetBase', 'GhostNetClassifier', 'ImageNetClassifierMixin', 'classifier_class', 'GhostModule',
    'GhostBottleneck', 'SqueezeExcite', 'make_divisible', 'GhostNetV2Classifier', 'GhostNetV3Classifier'
]
from .backbones import GhostNetV2, GhostNetV3  # noqa: E402

__all__ += ['GhostNetV2', 'GhostNetV3']
