"""The one reader of files that hold tensors: ImageNet weights, detector checkpoints, training checkpoints.

Every load in mmghost and its tools goes through :func:`read_checkpoint` (``SafePretrained``, a runner's
``load_from`` and resume, ``tools/test.py``, ``infer.py``, ``deploy.py``, ``export_onnx.py``,
``convert_weights.py``, ``widen_weights.py``). It resolves a name to bytes as mmengine's ``_load_checkpoint`` does
and reads the bytes itself, never with a plain ``torch.load``:

* where the bytes come from: the scheme is matched by mmengine's own ``CheckpointLoader`` (so a name means what it
  means to mmengine). Local paths (``~`` expanded, ``file://``) are read in place. Model-zoo names and URLs
  (``open-mmlab://``/``openmmlab://``, ``torchvision://``/``modelzoo://``, ``mmcls://``, ``http(s)://``) resolve
  through mmengine's URL tables and are downloaded as torch hub does, to ``<torch hub dir>/checkpoints/<file name
  of the URL>`` (``$TORCH_HOME/hub/checkpoints/``; local rank 0 first), and that cached file is read like a local
  one: mmengine hands them to ``torch.hub.load_state_dict_from_url``, which unpickles with ``weights_only=False``
  on every torch version. Storage-backend URIs (``s3://``, ``petrel://``, ...) are fetched as bytes by
  ``mmengine.fileio``. A scheme that another library registered with a loader of its own is refused.
* how the bytes are read: a safetensors file (recognised by its header, whatever its name) by safetensors;
  anything else by :func:`mmghost.utils.safe_load.safe_torch_load`, a restricted unpickler (tensors, mmengine's
  ``HistoryBuffer``, numpy values): a file that references other code is refused and nothing in it runs.
* ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (torch's own switch) is the only way out: pickles are then unpickled
  without restriction, as mmengine and torch would; the reader says so once.

Adapting a layout (official/timm names, EMA or ``model`` wrappers, ``module.`` and ``backbone.`` prefixes) is the
models' business (:mod:`mmghost.models.weights`, the backbones' ``_load_from_state_dict``); :func:`is_state_dict`
is the one test for "this dict is the weights".
"""
import io
import logging
import os
import os.path as osp
import pickle
import zipfile
from collections import OrderedDict
from typing import Any, Optional, Union
from urllib.parse import urlparse

import torch
from mmengine.logging import print_log

from .safe_load import CheckpointError, allowed_globals, env_flag, global_name, safe_torch_load

__all__ = ['NO_WEIGHTS_ONLY_ENV', 'read_checkpoint', 'is_state_dict', 'is_safetensors', 'read_top_level_keys',
           'download_to_cache']

NO_WEIGHTS_ONLY_ENV = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'


# ------------------------------------------------------------------------------------------------ recognising
def is_state_dict(obj: Any) -> bool:
    """Whether ``obj`` is the weights themselves: a non-empty dict of name -> tensor (no wrapper around it)."""
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def is_safetensors(head: bytes, size: int) -> bool:
    """Whether a file of ``size`` bytes starting with ``head`` (its first 9 bytes or more) is a safetensors file:
    its JSON header's length (8 bytes, little endian), then the ``{``. Downloads often get renamed, so the
    content decides, not the name."""
    return len(head) >= 9 and head[8:9] == b'{' and 0 < int.from_bytes(head[:8], 'little') <= size - 8


def _is_safetensors_file(path: str) -> bool:
    with open(path, 'rb') as f:
        head = f.read(9)
    return path.endswith('.safetensors') or is_safetensors(head, osp.getsize(path))


# --------------------------------------------------------------------------------------------- reading bytes
_said = set()


def _say_once(key: str, message: str, level: int = logging.INFO) -> None:
    if key not in _said:
        _said.add(key)
        print_log(message, logger='current', level=level)


def _device(map_location: Any) -> str:
    """safetensors' ``device`` for a ``torch.load`` ``map_location`` (callables and dicts: the CPU)."""
    return str(map_location) if isinstance(map_location, (str, torch.device)) else 'cpu'


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f'{type(error).__name__}: {lines[0] if lines else ""}'


def _unpickle(source: Union[str, io.BytesIO], map_location: Any, name: str) -> Any:
    """The pickle step: restricted, unless the user set :data:`NO_WEIGHTS_ONLY_ENV`."""
    if env_flag(NO_WEIGHTS_ONLY_ENV):
        _say_once('unrestricted', f'{NO_WEIGHTS_ONLY_ENV}=1: checkpoints are unpickled without restriction; code '
                  'inside a crafted file would run.', logging.WARNING)
        try:
            return torch.load(source, map_location=map_location, weights_only=False)
        except Exception as e:  # noqa: BLE001  torch raises many kinds for a bad file
            raise CheckpointError(f'cannot read checkpoint {name}: {_first_line(e)}') from None
    _say_once('restricted', 'Checkpoints are read with a restricted unpickler (tensors, mmengine HistoryBuffer, '
              f'numpy values; a file referencing other code is refused and nothing in it runs); {NO_WEIGHTS_ONLY_ENV}'
              '=1 reads them unrestricted.')
    try:
        return safe_torch_load(source, map_location=map_location)
    except CheckpointError as e:
        text = str(e)
        raise CheckpointError(text if name in text else f'{name}: {text}') from None


def _read_local(path: str, map_location: Any, name: Optional[str] = None) -> Any:
    """A local file: safetensors by content or name, anything else through :func:`_unpickle`."""
    name = name or path
    if not osp.isfile(path):
        raise CheckpointError(f'checkpoint file not found: {name}')
    if _is_safetensors_file(path):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(f'{name} is a safetensors file: pip install safetensors') from None
        try:
            return load_file(path, device=_device(map_location))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f'cannot read safetensors file {name}: {_first_line(e)}') from None
    return _unpickle(path, map_location, name)


def _read_bytes(data: bytes, map_location: Any, name: str) -> Any:
    """The bytes of a file fetched by one of mmengine's storage backends."""
    if is_safetensors(data[:9], len(data)):
        try:
            from safetensors.torch import load
        except ImportError:
            raise CheckpointError(f'{name} is a safetensors file: pip install safetensors') from None
        try:
            tensors = load(data)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f'cannot read safetensors file {name}: {_first_line(e)}') from None
        return OrderedDict((k, v.to(_device(map_location))) for k, v in tensors.items())
    stream = io.BytesIO(data)
    stream.name = name
    return _unpickle(stream, map_location, name)


def _not_a_tensor(*args, **kwargs) -> None:
    return None


def read_top_level_keys(path: str) -> Optional[set]:
    """The keys of the dict a local zip-format checkpoint holds, read from its pickle without loading a tensor.

    Tensors are stubbed out (their storages are never read); every other global goes through the allow-list
    of a real read, so this runs nothing from the file either. None if the file holds no dict.
    """
    allowed = allowed_globals()

    class KeysOnly(pickle.Unpickler):

        def find_class(self, module, name):
            full = global_name(module, name)
            if full not in allowed:
                raise pickle.UnpicklingError(f'Unsupported global: GLOBAL {full}')
            if full.startswith(('torch._utils._rebuild', 'torch._tensor._rebuild')) or \
                    full == 'torch.nn.parameter.Parameter':
                return _not_a_tensor
            return allowed[full]

        def persistent_load(self, pid):
            return None

    with zipfile.ZipFile(path) as z:
        member = next(n for n in z.namelist() if n.endswith('data.pkl'))
        data = z.read(member)
    obj = KeysOnly(io.BytesIO(data), encoding='utf-8').load()
    return set(obj) if isinstance(obj, dict) else None


# ------------------------------------------------------------------------------------- model-zoo names and URLs
def download_to_cache(url: str, model_dir: Optional[str] = None, progress: bool = os.isatty(0)) -> str:
    """The local copy of ``url`` in torch hub's cache, downloaded if absent, as
    ``torch.hub.load_state_dict_from_url`` (mmengine's ``load_url``) does, without loading it.

    Same cache (``<torch.hub.get_dir()>/checkpoints/<file name of the URL>``), same download function, no hash
    check (mmengine passes none).
    """
    from torch import hub
    if model_dir is None:
        model_dir = osp.join(hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached_file = osp.join(model_dir, osp.basename(urlparse(url).path))
    if not osp.exists(cached_file):
        print_log(f'Downloading: "{url}" to {cached_file}', logger='current')
        hub.download_url_to_file(url, cached_file, None, progress=progress)
    return cached_file


def _is_legacy_zip(path: str) -> bool:
    """torch hub's test for a hand-zipped legacy checkpoint: a zip of one file (torch's own zip files hold a
    folder of several members)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        infolist = z.infolist()
    return len(infolist) == 1 and not infolist[0].is_dir()


def _read_url(url: str, map_location: Any) -> Any:
    """mmengine's ``load_from_http``: local rank 0 downloads first, the others wait at a barrier, then every rank
    reads the cached file (here: safely)."""
    from mmengine.dist import get_dist_info
    rank, world_size = get_dist_info()
    path = None
    if rank == 0:
        path = download_to_cache(url)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            path = download_to_cache(url)
    name = f'{url} (cached as {path})'
    if _is_legacy_zip(path):
        # torch hub's "legacy zip" (one torch < 1.6 file zipped by hand): torch hub extracts it into the cache
        # and loads the member; so do we, reading the member safely.
        with zipfile.ZipFile(path) as z:
            member = z.infolist()[0].filename
            z.extractall(osp.dirname(path))
        path = osp.join(osp.dirname(path), member)
    return _read_local(path, map_location, name=name)


def _read_openmmlab(filename: str, map_location: Any) -> Any:
    from mmengine.runner.checkpoint import _get_mmengine_home, get_deprecated_model_names, get_external_models
    prefix = 'open-mmlab://' if filename.startswith('open-mmlab://') else 'openmmlab://'
    model_name = filename[len(prefix):]
    deprecated = get_deprecated_model_names()
    if model_name in deprecated:
        print_log(f'{prefix}{model_name} is deprecated in favor of {prefix}{deprecated[model_name]}',
                  logger='current', level=logging.WARNING)
        model_name = deprecated[model_name]
    model_urls = get_external_models()
    if model_name not in model_urls:
        raise CheckpointError(f'{filename}: mmengine knows no model named {model_name!r} (its open-mmlab table)')
    model_url = model_urls[model_name]
    if model_url.startswith(('http://', 'https://')):
        return _read_url(model_url, map_location)
    return _read_local(osp.join(_get_mmengine_home(), model_url), map_location, name=filename)


def _read_torchvision(filename: str, map_location: Any) -> Any:
    from mmengine.runner.checkpoint import get_torchvision_models
    if filename.startswith('modelzoo://'):
        print_log('The URL scheme of "modelzoo://" is deprecated, please use "torchvision://" instead',
                  logger='current', level=logging.WARNING)
    model_name = filename.split('://', 1)[1]
    model_urls = get_torchvision_models()
    if model_name not in model_urls:
        raise CheckpointError(f'{filename}: mmengine knows no torchvision model named {model_name!r}')
    return _read_url(model_urls[model_name], map_location)


def _read_mmcls(filename: str, map_location: Any) -> Any:
    from mmengine.runner.checkpoint import _process_mmcls_checkpoint, get_mmcls_models
    model_name = filename[len('mmcls://'):]
    model_urls = get_mmcls_models()
    if model_name not in model_urls:
        raise CheckpointError(f'{filename}: mmengine knows no mmcls model named {model_name!r}')
    return _process_mmcls_checkpoint(_read_url(model_urls[model_name], map_location))


def _read_pavi(filename: str, map_location: Any) -> Any:
    from tempfile import TemporaryDirectory
    try:
        from pavi import modelcloud
    except ImportError:
        raise ImportError('Please install pavi to load checkpoint from modelcloud.') from None
    model = modelcloud.get(filename[len('pavi://'):])
    with TemporaryDirectory() as tmp_dir:
        downloaded_file = osp.join(tmp_dir, model.name)
        model.download(downloaded_file)
        return _read_local(downloaded_file, map_location, name=filename)


def _read_storage(filename: str, map_location: Any, backend_args: Optional[dict]) -> Any:
    """A URI one of mmengine's file backends serves (``s3://``, ``petrel://``, ...): its bytes."""
    from mmengine import fileio
    try:
        data = fileio.get_file_backend(filename, backend_args=backend_args).get(filename)
    except FileNotFoundError:
        raise CheckpointError(f'checkpoint file not found: {filename}') from None
    return _read_bytes(data, map_location, filename)


def _readers() -> dict:
    """mmengine's loader of each scheme -> ours, which resolves the name the same way and reads safely."""
    from mmengine.runner import checkpoint as ckpt
    return {
        ckpt.load_from_http: _read_url,
        ckpt.load_from_torchvision: _read_torchvision,
        ckpt.load_from_openmmlab: _read_openmmlab,
        ckpt.load_from_mmcls: _read_mmcls,
        ckpt.load_from_pavi: _read_pavi,
    }


def read_checkpoint(filename: Union[str, os.PathLike], map_location: Any = 'cpu',
                    backend_args: Optional[dict] = None) -> Any:
    """What mmengine's ``_load_checkpoint(filename, map_location)`` returns, read without running the file.

    Args:
        filename (str | PathLike): A local path, a URL, a model-zoo name (``open-mmlab://resnet50_v1c``, ...) or
            a URI of an mmengine storage backend; see the module docstring for how each is resolved.
        map_location: As in ``torch.load``. Default: ``'cpu'``.
        backend_args (dict, optional): Arguments of the mmengine file backend, for storage-backend URIs.

    Raises:
        CheckpointError: the file is missing, truncated, not a checkpoint, or references code (nothing from it
            has run), or its scheme is read by a loader that is not mmengine's own.
    """
    from mmengine.runner.checkpoint import CheckpointLoader, load_from_ceph, load_from_local
    filename = os.fspath(filename)
    if filename.startswith('file://'):
        filename = filename[len('file://'):]
    loader = CheckpointLoader._get_checkpoint_loader(filename)
    print_log(f'Loads checkpoint by {loader.__name__[10:]} backend from path: {filename}', logger='current')
    if loader is load_from_local:
        if '://' in filename:  # a storage backend mmengine's CheckpointLoader has no scheme for
            return _read_storage(filename, map_location, backend_args)
        return _read_local(osp.expanduser(filename), map_location, name=filename)
    if loader is load_from_ceph:  # s3://, petrel://: mmengine's load_from_ceph uses the petrel backend
        return _read_storage(filename, map_location, backend_args or {'backend': 'petrel'})
    reader = _readers().get(loader)
    if reader is not None:
        return reader(filename, map_location)
    where = f'{getattr(loader, "__module__", "?")}.{getattr(loader, "__name__", loader)}'
    if env_flag(NO_WEIGHTS_ONLY_ENV):
        return loader(filename, map_location)
    raise CheckpointError(f'cannot read {filename} safely: mmengine reads its scheme with {where}, which mmghost '
                          f'does not know; download the file and give its local path ({NO_WEIGHTS_ONLY_ENV}=1 '
                          'hands it to that loader unrestricted)')
