"""Reading checkpoint files without running code from them, thread-safely, on torch 2.1 to 2.13.

torch >= 2.6 loads with ``weights_only=True`` by default and refuses mmengine checkpoints (their
``message_hub`` holds ``HistoryBuffer`` objects and numpy values); torch 2.1 loads everything with plain
``pickle``, so a crafted checkpoint runs code. The allow-list that newer torch offers for this
(``torch.serialization.add_safe_globals`` / the ``safe_globals`` context) is one process-wide set: editing it
per load makes concurrent loads in other threads refuse good files, and leaving the context drops entries other
code added meanwhile. So mmghost never touches it. Instead every file is unpickled by a
:class:`pickle.Unpickler` whose ``find_class`` resolves only an allow-list (the Python documentation's
"restricting globals"), passed to ``torch.load`` as ``pickle_module``:

* the globals torch's own ``weights_only`` loader accepts on the running version (tensors, storages, dtypes,
  ``OrderedDict``, torch's rebuild functions), read from torch, plus every torch dtype and ``torch.device``;
* globals the user allowed with ``torch.serialization.add_safe_globals`` (read, never written);
* :func:`checkpoint_safe_globals`: mmengine's ``HistoryBuffer``, numpy arrays/scalars/dtypes, and ``getattr``
  restricted to ``HistoryBuffer``'s statistics methods.

Any other global makes the load fail before it is resolved, so nothing named in the file is imported or called.
The unpickler is built per call and reads shared state only, so concurrent loads cannot interfere, and it works
the same on every torch version (torch 2.1 has no allow-list API at all).
"""
import functools
import io
import os
import pickle
import types
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from typing import Any, Dict, List, Union

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
    """The classes and functions an mmengine/mmdet training checkpoint needs beyond torch's own types.

    In ``torch.serialization.add_safe_globals`` format (an object, or ``(object, 'module.name')``). Found with
    ``torch.serialization.get_unsafe_globals_in_checkpoint`` on checkpoints of real training runs:
    ``mmengine.logging.history_buffer.HistoryBuffer``, ``builtins.getattr`` (only as
    :func:`_history_buffer_getattr`) and numpy's ``_reconstruct``/``scalar``/``ndarray``/``dtype`` (+ dtype
    classes) for the logged values in ``message_hub``.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')] + _numpy_globals()


def _full_name(entry: Any) -> tuple:
    if isinstance(entry, tuple):
        return entry[1], entry[0]
    return f'{entry.__module__}.{entry.__qualname__}', entry


@functools.lru_cache(maxsize=1)
def _static_allowed_globals() -> Dict[str, Any]:
    """torch's weights_only globals of this torch version + all dtypes + ours (they do not change at run time)."""
    from torch import _weights_only_unpickler
    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    allowed.update({str(t): t for t in vars(torch).values() if isinstance(t, torch.dtype)})
    allowed.update({'torch.device': torch.device, '_codecs.encode': __import__('codecs').encode,
                    'builtins.set': set, 'builtins.frozenset': frozenset, 'builtins.bytearray': bytearray,
                    'builtins.complex': complex})
    allowed.update(dict(_full_name(entry) for entry in checkpoint_safe_globals()))
    return allowed


def allowed_globals() -> Dict[str, Any]:
    """``{'module.name': object}`` that a checkpoint may reference: see the module docstring."""
    from torch import _weights_only_unpickler
    user = getattr(_weights_only_unpickler, '_get_user_allowed_globals', None)  # torch >= 2.4; read only
    allowed = dict(user()) if user is not None else {}
    allowed.update(_static_allowed_globals())
    return allowed


def global_name(module: str, name: str) -> str:
    """``'module.name'`` of a global a pickle names, with Python 2 names mapped to Python 3's.

    torch saves with pickle protocol 2, for which Python writes Python 2 names (``__builtin__.getattr``); the
    stock ``find_class`` maps them back, as torch's ``weights_only`` loader does.
    """
    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    elif module in IMPORT_MAPPING:
        module = IMPORT_MAPPING[module]
    return f'{module}.{name}'


def restricted_pickle_module() -> types.ModuleType:
    """A ``pickle_module`` for ``torch.load(..., weights_only=False)`` that resolves only :func:`allowed_globals`.

    torch subclasses its ``Unpickler`` (to map storages, whose names it resolves itself) and calls its ``load``
    for the legacy format; everything else it looks up in the file goes through ``find_class`` here.
    """
    allowed = allowed_globals()

    class Unpickler(pickle.Unpickler):

        def find_class(self, module: str, name: str) -> Any:
            full = global_name(module, name)
            try:
                return allowed[full]
            except KeyError:
                raise pickle.UnpicklingError(
                    f'Unsupported global: GLOBAL {full} is not in the allow-list of checkpoint types') from None

    module = types.ModuleType('mmghost_restricted_pickle')
    module.Unpickler = Unpickler
    module.load = lambda file, **kwargs: Unpickler(file, **kwargs).load()
    module.UnpicklingError = pickle.UnpicklingError
    return module


def env_flag(name: str) -> bool:
    return os.environ.get(name, '0').lower() in ('1', 'y', 'yes', 'true')  # torch's reading of these variables


def safe_torch_load(source: Union[str, os.PathLike, io.IOBase], map_location: Any = 'cpu') -> Any:
    """``torch.load`` that resolves only :func:`allowed_globals`; nothing in the file is executed.

    ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` (torch's switch to its own loader) is honoured: torch's
    ``weights_only=True`` loader is used then, with its own allow-list.

    Raises:
        CheckpointError: the file is missing, truncated/corrupt, or its pickle needs a global outside the
            allow-list (nothing from it is executed).
    """
    name = source if isinstance(source, (str, os.PathLike)) else getattr(source, 'name', '<stream>')
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise CheckpointError(f'checkpoint file not found: {name}')
    try:
        if env_flag('TORCH_FORCE_WEIGHTS_ONLY_LOAD'):
            return torch.load(source, map_location=map_location, weights_only=True)
        return torch.load(source, map_location=map_location, weights_only=False,
                          pickle_module=restricted_pickle_module())
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        text = str(e)
        if 'Weights only load failed' in text or 'Unsupported global' in text or 'GLOBAL' in text \
                or 'is not allowed in a checkpoint' in text:
            first = next((line for line in text.splitlines() if 'Unsupported' in line or 'GLOBAL' in line
                          or 'not allowed' in line), text.splitlines()[0] if text else '')
            raise CheckpointError(
                f'refused to load {name}: its pickle references code outside the allow-list of '
                f'checkpoint types ({first.strip()}). Nothing from it was executed. Only plain state dicts '
                f'and mmengine/mmdet checkpoints are accepted; re-save the weights as a state dict '
                f'(torch.save(model.state_dict(), path)) if you trust the file.') from None
        raise CheckpointError(
            f'cannot read checkpoint {name}: the file is truncated or not a PyTorch checkpoint '
            f'({type(e).__name__}: {text.splitlines()[0] if text else ""})') from None
