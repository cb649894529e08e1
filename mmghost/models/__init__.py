from .backbones import (GhostBottleneck, GhostModule, GhostNet, GhostNetClassifier, SqueezeExcite,
                        make_divisible)
from .checkpoint import load_ghostnet_checkpoint

__all__ = [
    'GhostNet', 'GhostNetClassifier', 'GhostModule', 'GhostBottleneck', 'SqueezeExcite', 'make_divisible',
    'load_ghostnet_checkpoint'
]
