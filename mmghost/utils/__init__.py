from importlib.util import find_spec

from .errors import DataError, UserFacingError, exit_on_user_error

__all__ = ['DataError', 'UserFacingError', 'exit_on_user_error']
if find_spec('torch') is not None:  # errors.py alone serves the torch-free runtime (tools/infer_onnx.py)
    from .safe_load import CheckpointError, checkpoint_safe_globals, safe_torch_load
    # mmghost's one reader of checkpoint files (paths, storage backends, model-zoo names): every load uses it.
    from .checkpoint_reader import read_checkpoint
    __all__ += ['CheckpointError', 'checkpoint_safe_globals', 'read_checkpoint', 'safe_torch_load']
