from .errors import DataError, UserFacingError, install_excepthook
from .safe_load import CheckpointError, checkpoint_safe_globals, safe_torch_load

__all__ = ['CheckpointError', 'DataError', 'UserFacingError', 'checkpoint_safe_globals', 'install_excepthook',
           'safe_torch_load']
