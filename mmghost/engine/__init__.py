from . import checkpoint_safety
from .config import build_detector, build_runner, finish_distributed, load_config
from .hooks import BackboneDeployHook
from .model_wrappers import CPUAwareDistributedDataParallel

# Safe resume (weights_only=True + allow-list), atomic checkpoints, fallback to the newest intact checkpoint.
checkpoint_safety.apply()

__all__ = [
    'load_config', 'build_detector', 'build_runner', 'finish_distributed', 'BackboneDeployHook', 'CPUAwareDistributedDataParallel',
    'checkpoint_safety'
]
