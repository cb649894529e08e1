from .config import build_runner, load_config
from .hooks import BackboneDeployHook
from .model_wrappers import CPUAwareDistributedDataParallel

__all__ = ['load_config', 'build_runner', 'BackboneDeployHook', 'CPUAwareDistributedDataParallel']
