from .ghostnet import (GhostBottleneck, GhostModule, GhostNet, GhostNetClassifier, SqueezeExcite,
                       make_divisible)

__all__ = ['GhostNet', 'GhostNetClassifier', 'GhostModule', 'GhostBottleneck', 'SqueezeExcite', 'make_divisible']
