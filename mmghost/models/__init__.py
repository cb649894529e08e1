"""The GhostNet family: shared layers, backbones (registered in mmdet's MODELS), ImageNet classifiers, weights."""
from .backbones import GhostBottleneck, GhostNet, GhostNetBase
from .classifiers import (GhostNetClassifier, GhostNetV2Classifier, GhostNetV3Classifier, ImageNetClassifierMixin,
                          classifier_class)
from .layers import GhostModule, SqueezeExcite, make_divisible

__all__ = [
    'GhostNet', 'GhostNetBase', 'GhostNetClassifier', 'ImageNetClassifierMixin', 'classifier_class', 'GhostModule',
    'GhostBottleneck', 'SqueezeExcite', 'make_divisible', 'GhostNetV2Classifier', 'GhostNetV3Classifier'
]
from .backbones import GhostNetV2, GhostNetV3, RepGhostNet  # noqa: E402
from .classifiers import RepGhostNetClassifier  # noqa: E402

__all__ += ['GhostNetV2', 'GhostNetV3', 'RepGhostNet', 'RepGhostNetClassifier']
# SafePretrained: mmengine's Pretrained initializer reading files without running them (root WEIGHT_INITIALIZERS).
from .pretrained import SafePretrainedInit  # noqa: E402

__all__ += ['SafePretrainedInit']
# PlainStem: a backbone with conv_cfg everywhere but its stem (the paper's Ghost-ResNet-50), root MODELS.
from .plain_stem import plain_stem  # noqa: E402

__all__ += ['plain_stem']

# The Ghost module in any OpenMMLab model: the conv layer, its deploy fold, He et al.'s CIFAR ResNet. GhostRPNHead
# (an RPN head that takes a conv_cfg) is in mmghost.models.dense_heads, imported by the configs that use it: mmdet's
# dense heads import mmcv's compiled ops, which `import mmghost` does not need.
from .backbones import CifarResNet  # noqa: E402
from .fold import deploy_model, fuse_ghost_conv_norm  # noqa: E402
from .layers import GhostConv  # noqa: E402

__all__ += ['CifarResNet', 'GhostConv', 'deploy_model', 'fuse_ghost_conv_norm']
