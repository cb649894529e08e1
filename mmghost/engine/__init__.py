"""Opt-in additions to mmengine for mmghost's configs and tools; importing this module changes nothing else.

* :class:`AtomicCheckpointHook` (``default_hooks.checkpoint``): checkpoints that survive a kill at any moment;
* :class:`MMGhostRunner` (``runner_type``): safe checkpoint loading, resume only from training checkpoints,
  mmcv ops in float32 under fp16/bf16 autocast;
* :func:`mmcv_ops_in_float32`: that last fix as a context manager;
* :func:`load_checkpoint_file`, :func:`load_detector_checkpoint`: safe checkpoint reading for tools;
* the tools' glue: :func:`load_config`, :func:`build_runner`, :func:`build_detector`, :func:`init_detector`,
  :func:`finish_distributed`;
  :class:`BackboneDeployHook`, :class:`CPUAwareDistributedDataParallel`.
"""
from .checkpoint_hook import AtomicCheckpointHook
from .checkpoint_io import find_resumable_checkpoint, load_checkpoint_file, load_detector_checkpoint
from .config import build_detector, build_runner, finish_distributed, init_detector, load_config
from .hooks import BackboneDeployHook
from .low_precision import mmcv_ops_in_float32
from .model_wrappers import CPUAwareDistributedDataParallel
from .runner import MMGhostRunner

__all__ = [
    'AtomicCheckpointHook', 'BackboneDeployHook', 'CPUAwareDistributedDataParallel', 'MMGhostRunner',
    'build_detector', 'build_runner', 'find_resumable_checkpoint', 'finish_distributed', 'init_detector',
    'load_checkpoint_file',
    'load_config', 'load_detector_checkpoint', 'mmcv_ops_in_float32'
]
