from .safe_load import CheckpointError, checkpoint_safe_globals, safe_torch_load

__all__ = ['CheckpointError', 'checkpoint_safe_globals', 'safe_torch_load']
