"""Loading checkpoints with ``torch.load(weights_only=True)`` kept on.

torch >= 2.6 defaults ``weights_only`` to True, and mmengine 0.10.7 never passes it, so resuming from an
mmengine checkpoint fails on its ``message_hub`` (``HistoryBuffer`` objects holding numpy arrays). Rather than
turning the safety off, we allow-list exactly the types mmengine/mmdet checkpoints contain; any other global in
a pickle is refused by torch before anything in it runs.
"""
import io
import os
import pickle
from typing import Any, List, Union

import numpy as np
import torch

from .errors import UserFacingError


class CheckpointError(UserFacingError, ValueError):
    """A checkpoint file that cannot be used; the message says why and what to do."""


def _numpy_globals() -> List[Any]:
    # numpy arrays and scalars pickle through these reconstructors; dtypes through their classes. numpy 2 moved
    # numpy.core to numpy._core, so both names are accepted (a checkpoint may come from either version).
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    aliases = [(fn, f'{module}.{fn.__name__}') for fn in (_reconstruct, scalar)
               for module in ('numpy.core.multiarray', 'numpy._core.multiarray')]
    dtype_classes = [type(np.dtype(t)) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
        np.float16, np.float32, np.float64, np.str_, np.object_)]
    return aliases + [np.ndarray, np.dtype] + dtype_classes


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """The only ``getattr`` a checkpoint may do: fetch a statistics method of mmengine's ``HistoryBuffer``.

    mmengine checkpoints pickle ``HistoryBuffer``'s statistics methods (``min``, ``max``, ``current``, ``mean``
    and any registered with ``HistoryBuffer.register_statistics``) as ``getattr(HistoryBuffer, name)``. A plain
    ``builtins.getattr`` in the allow-list would let a pickle reach any attribute of any allowed object.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed = {'min', 'max', 'current', 'mean'} | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and isinstance(name, str) and name in allowed and not name.startswith('_'):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({getattr(obj, "__name__", type(obj).__name__)}, {name!r}) is not allowed in a checkpoint')


def checkpoint_safe_globals() -> List[Any]:
    """The classes and functions an mmengine/mmdet training checkpoint may reference, and nothing more.

    Found with ``torch.serialization.get_unsafe_globals_in_checkpoint`` on checkpoints of real training runs:
    ``mmengine.logging.history_buffer.HistoryBuffer``, ``builtins.getattr`` (only as
    :func:`_history_buffer_getattr`) and numpy's ``_reconstruct``/``scalar``/``ndarray``/``dtype`` (+ dtype
    classes) for the logged values in ``message_hub``. Tensors, OrderedDicts and builtins are allowed by torch.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')] + _numpy_globals()


def safe_torch_load(source: Union[str, os.PathLike, io.IOBase], map_location: Any = 'cpu') -> Any:
    """``torch.load`` with ``weights_only=True`` and the mmengine allow-list.

    Raises:
        CheckpointError: the file is missing, truncated/corrupt, or its pickle needs a global outside the
            allow-list (nothing from it is executed).
    """
    name = source if isinstance(source, (str, os.PathLike)) else getattr(source, 'name', '<stream>')
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise CheckpointError(f'checkpoint file not found: {name}')
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(source, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        text = str(e)
        if 'Weights only load failed' in text or 'Unsupported global' in text or 'GLOBAL' in text:
            first = next((line for line in text.splitlines() if 'Unsupported' in line or 'GLOBAL' in line),
                         text.splitlines()[0] if text else '')
            raise CheckpointError(
                f'refused to load {name}: its pickle references code outside the allow-list of '
                f'checkpoint types ({first.strip()}). Nothing from it was executed. Only plain state dicts '
                f'and mmengine/mmdet checkpoints are accepted; re-save the weights as a state dict '
                f'(torch.save(model.state_dict(), path)) if you trust the file.') from None
        raise CheckpointError(
            f'cannot read checkpoint {name}: the file is truncated or not a PyTorch checkpoint '
            f'({type(e).__name__}: {text.splitlines()[0] if text else ""})') from None

