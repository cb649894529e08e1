from .errors import DataError, UserFacingError, exit_on_user_error
from .safe_load import CheckpointError, checkpoint_safe_globals, safe_torch_load

__all__ = ['CheckpointError', 'DataError', 'UserFacingError', 'checkpoint_safe_globals', 'exit_on_user_error',
           'safe_torch_load']
