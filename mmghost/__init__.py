"""mmghost: GhostNet (CVPR 2020) as an MMDetection 3.x backbone plugin.

``import mmghost`` (or ``custom_imports = dict(imports=['mmghost'])`` in a config) registers mmghost's classes
into mmdet's registries (and ``MMGhostRunner`` into mmengine's ``RUNNERS``) and does nothing else: no function,
class or hook of torch, mmengine, mmcv or mmdet is replaced, so a config that does not name mmghost's classes runs
exactly as without it. Crash-safe checkpoints and safe resume are opt-in (``runner_type='MMGhostRunner'``,
``default_hooks.checkpoint.type='AtomicCheckpointHook'``; see ``mmghost.engine``). It imports no compiled
``mmcv.ops``, so the backbone works with a plain mmcv install.
"""
from .version import __version__
from . import engine, models  # noqa: F401,E402  registers GhostNet and the engine helpers
from .models import GhostBottleneck, GhostModule, GhostNet, GhostNetV2, GhostNetV3  # noqa: E402

__all__ = ['__version__', 'GhostNet', 'GhostNetV2', 'GhostNetV3', 'GhostModule', 'GhostBottleneck']
