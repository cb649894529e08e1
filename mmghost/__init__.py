"""mmghost: GhostNet (CVPR 2020) as an MMDetection 3.x backbone plugin.

``import mmghost`` (or ``custom_imports = dict(imports=['mmghost'])`` in a config) registers mmghost's classes
into mmdet's registries (and ``MMGhostRunner`` into mmengine's ``RUNNERS``) and does nothing else: no function,
class or hook of torch, mmengine, mmcv or mmdet is replaced, so a config that does not name mmghost's classes runs
exactly as without it. Crash-safe checkpoints and safe resume are opt-in (``runner_type='MMGhostRunner'``,
``default_hooks.checkpoint.type='AtomicCheckpointHook'``; see ``mmghost.engine``). It imports no compiled
``mmcv.ops``, so the backbone works with a plain mmcv install.

``mmghost.deploy`` (the ONNX Runtime detector for models exported by ``tools/deploy.py``) is not imported here and
needs no torch: on a machine where torch is not installed, it is all this package offers.
"""
from importlib.util import find_spec

from .version import __version__

if find_spec('torch') is not None:
    from . import engine, models  # noqa: F401,E402  registers GhostNet and the engine helpers
    from .models import GhostBottleneck, GhostModule, GhostNet, GhostNetV2, GhostNetV3, RepGhostNet  # noqa: E402

    __all__ = ['__version__', 'GhostNet', 'GhostNetV2', 'GhostNetV3', 'RepGhostNet', 'GhostModule',
               'GhostBottleneck']
else:
    # A deployment machine without PyTorch: only the ONNX Runtime detector (mmghost.deploy) is usable there.
    # Whether torch is *installed* decides, not whether it imports: a broken torch install still fails loudly.
    __all__ = ['__version__']

    def __getattr__(name):
        # AttributeError (not ImportError) so that hasattr() and friends keep working.
        raise AttributeError(f'mmghost.{name} is not available: it needs PyTorch, which is not installed here; '
                             'without it only the ONNX Runtime detector in mmghost.deploy is available')
