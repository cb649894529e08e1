from .base import GhostNetBase
from .ghostnet import GhostBottleneck, GhostNet

__all__ = ['GhostNetBase', 'GhostNet', 'GhostBottleneck']
from .ghostnetv2 import GhostBottleneckV2, GhostNetV2  # noqa: E402
from .ghostnetv3 import GhostBottleneckV3, GhostNetV3  # noqa: E402

__all__ += ['GhostNetV2', 'GhostBottleneckV2', 'GhostNetV3', 'GhostBottleneckV3']
from .cifar_resnet import CifarResNet  # noqa: E402

__all__ += ['CifarResNet']
from .repghostnet import RepGhostNet  # noqa: E402

__all__ += ['RepGhostNet']
