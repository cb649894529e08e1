"""mmghost: GhostNet (CVPR 2020) as an MMDetection 3.x backbone plugin.

``import mmghost`` (or ``custom_imports = dict(imports=['mmghost'])`` in a config) registers everything into
mmdet's registries. It imports no compiled ``mmcv.ops``, so the backbone works with a plain mmcv install.
"""
from .version import __version__
from . import engine, models  # noqa: F401,E402  registers GhostNet and the engine helpers
from .models import GhostBottleneck, GhostModule, GhostNet  # noqa: E402

__all__ = ['__version__', 'GhostNet', 'GhostModule', 'GhostBottleneck']
