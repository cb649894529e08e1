from importlib.util import find_spec

from .errors import DataError, UserFacingError, exit_on_user_error

__all__ = ['DataError', 'UserFacingError', 'exit_on_user_error']
if find_spec('torch') is not None:  # errors.py alone serves the torch-free runtime (tools/infer_onnx.py)
    from .safe_load import CheckpointError, checkpoint_safe_globals, safe_torch_load
    __all__ += ['CheckpointError', 'checkpoint_safe_globals', 'safe_torch_load']
