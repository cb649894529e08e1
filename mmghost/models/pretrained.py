"""``SafePretrained``: mmengine's ``Pretrained`` initializer, reading the file without running anything in it.

mmengine 0.10.7's ``PretrainedInit`` reads weights with a plain ``torch.load``:

* a local file (``load_from_local``): ``torch.load(filename, map_location)``, no ``weights_only`` argument, so
  torch's default decides: restricted (weights-only) on torch >= 2.6, full ``pickle`` on torch < 2.6 (the
  torch 2.1 stack): a crafted file runs code when the model's ``init_weights()`` is called;
* ``http(s)://``, ``torchvision://``, ``modelzoo://``, ``mmcls://`` and ``open-mmlab://`` names of URLs:
  downloaded by ``torch.hub.load_state_dict_from_url``, which passes ``weights_only=False`` explicitly, so
  the download is fully unpickled on every torch version, 2.13 included.

:class:`SafePretrainedInit` (``init_cfg=dict(type='SafePretrained', checkpoint=..., prefix=..., map_location=...)``,
registered by name in mmengine's root ``WEIGHT_INITIALIZERS``; it replaces nothing) takes the same arguments and
does what ``PretrainedInit`` does, with these differences:

* every file is read by :func:`mmghost.utils.safe_torch_load` (a restricted unpickler: tensors, mmengine's
  ``HistoryBuffer`` and numpy values; any other global is refused before it is resolved), or by safetensors;
  a refused file raises :class:`~mmghost.utils.CheckpointError`, one line naming the file;
* model-zoo names resolve and download as mmengine does (its URL tables, torch hub's cache, rank 0 first), then
  the downloaded file is read safely; a scheme mmengine reads with a loader this module does not know (one
  another library registered) is refused rather than read unrestricted;
* ``.safetensors`` files (timm's Hugging Face weights) are read too, and a file whose weights sit under
  ``model``/``state_dict_ema``/... instead of ``state_dict`` is unwrapped (mmengine would load nothing from it);
* mmengine gives only the type named ``'Pretrained'`` its place after the children's own ``init_weights`` (so
  that the loaded weights are not overwritten); :class:`SafePretrainedInit` takes the same place itself.

The GhostNet backbones' own key handling (mmghost 0.1 names, a whole detector's or classifier's ``backbone.*``,
V3's two branch-norm namings, the width check) happens in their ``_load_from_state_dict``, as for every loader.
"""
import io
import logging
import os
import os.path as osp
import zipfile
from collections import OrderedDict
from typing import Any, Optional, Tuple
from urllib.parse import urlparse

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule, is_model_wrapper
from mmengine.model.weight_init import PretrainedInit, update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS

from mmghost.utils.safe_load import CheckpointError, safe_torch_load
from .weights import WRAPPER_KEYS, _is_safetensors_file

__all__ = ['SafePretrainedInit', 'read_pretrained', 'reads_pretrained_weights']

NAME = 'SafePretrained'


# ------------------------------------------------------------------------------------------------ reading bytes
def _device(map_location: Any) -> str:
    """safetensors' ``device`` for a ``torch.load`` ``map_location`` (callables and dicts: the CPU)."""
    if isinstance(map_location, (str, torch.device)):
        return str(map_location)
    return 'cpu'


def _read_local(path: str, map_location: Any, name: Optional[str] = None) -> Any:
    """A local file: safetensors by content or name, anything else through the restricted unpickler."""
    name = name or path
    if not osp.isfile(path):
        raise CheckpointError(f'{NAME}: checkpoint file not found: {name}')
    if path.endswith('.safetensors') or _is_safetensors_file(path):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(f'{NAME}: {name} is a safetensors file: pip install safetensors') from None
        try:
            return load_file(path, device=_device(map_location))
        except Exception as e:
            raise CheckpointError(f'{NAME}: cannot read safetensors file {name}: {_first_line(e)}') from None
    return _safe(lambda: safe_torch_load(path, map_location=map_location), name)


def _read_bytes(data: bytes, map_location: Any, name: str) -> Any:
    """A file read by one of mmengine's storage backends (s3/petrel)."""
    if data[8:9] == b'{' and 0 < int.from_bytes(data[:8], 'little') <= len(data) - 8:  # safetensors' header
        try:
            from safetensors.torch import load
        except ImportError:
            raise CheckpointError(f'{NAME}: {name} is a safetensors file: pip install safetensors') from None
        try:
            tensors = load(data)
        except Exception as e:
            raise CheckpointError(f'{NAME}: cannot read safetensors file {name}: {_first_line(e)}') from None
        return OrderedDict((k, v.to(_device(map_location))) for k, v in tensors.items())
    stream = io.BytesIO(data)
    stream.name = name
    return _safe(lambda: safe_torch_load(stream, map_location=map_location), name)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f'{type(error).__name__}: {lines[0] if lines else ""}'


def _safe(read, name: str) -> Any:
    try:
        return read()
    except CheckpointError as e:
        text = str(e)
        raise CheckpointError(f'{NAME}: {text}' if name in text else f'{NAME}: {name}: {text}') from None


def _is_legacy_zip(path: str) -> bool:
    """torch.hub's test for a hand-zipped legacy checkpoint: a zip of one file (torch's own zip files hold
    a folder of several members)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        infolist = z.infolist()
    return len(infolist) == 1 and not infolist[0].is_dir()


# ------------------------------------------------------------------------------------- model-zoo names and URLs
def download_to_cache(url: str, model_dir: Optional[str] = None, progress: bool = os.isatty(0)) -> str:
    """The local copy of ``url`` in torch hub's cache, downloaded if absent, as
    ``torch.hub.load_state_dict_from_url`` (what mmengine's ``load_url`` is) does, without loading it.

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
    name = f'{url} (downloaded to {path})'
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
    model_urls = get_external_models()
    prefix_str = 'open-mmlab://' if filename.startswith('open-mmlab://') else 'openmmlab://'
    model_name = filename[len(prefix_str):]
    deprecated_urls = get_deprecated_model_names()
    if model_name in deprecated_urls:
        print_log(f'{prefix_str}{model_name} is deprecated in favor of {prefix_str}{deprecated_urls[model_name]}',
                  logger='current', level=logging.WARNING)
        model_name = deprecated_urls[model_name]
    model_url = model_urls[model_name]
    if model_url.startswith(('http://', 'https://')):
        return _read_url(model_url, map_location)
    return _read_local(osp.join(_get_mmengine_home(), model_url), map_location)


def _read_torchvision(filename: str, map_location: Any) -> Any:
    from mmengine.runner.checkpoint import get_torchvision_models
    model_urls = get_torchvision_models()
    if filename.startswith('modelzoo://'):
        print_log('The URL scheme of "modelzoo://" is deprecated, please use "torchvision://" instead',
                  logger='current', level=logging.WARNING)
        model_name = filename[len('modelzoo://'):]
    else:
        model_name = filename[len('torchvision://'):]
    return _read_url(model_urls[model_name], map_location)


def _read_mmcls(filename: str, map_location: Any) -> Any:
    from mmengine.runner.checkpoint import _process_mmcls_checkpoint, get_mmcls_models
    checkpoint = _read_url(get_mmcls_models()[filename[len('mmcls://'):]], map_location)
    return _process_mmcls_checkpoint(checkpoint)


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


def _read_ceph(filename: str, map_location: Any) -> Any:
    from mmengine.fileio import get_file_backend
    file_backend = get_file_backend(filename, backend_args={'backend': 'petrel'})
    return _read_bytes(file_backend.get(filename), map_location, filename)


def _readers() -> dict:
    """mmengine's loader of each scheme -> ours, which resolves the name the same way and reads safely."""
    from mmengine.runner import checkpoint as ckpt
    return {
        ckpt.load_from_local: lambda f, m: _read_local(osp.expanduser(f), m, name=f),
        ckpt.load_from_http: _read_url,
        ckpt.load_from_torchvision: _read_torchvision,
        ckpt.load_from_openmmlab: _read_openmmlab,
        ckpt.load_from_mmcls: _read_mmcls,
        ckpt.load_from_pavi: _read_pavi,
        ckpt.load_from_ceph: _read_ceph,
    }


def read_pretrained(filename: str, map_location: Any = 'cpu') -> Any:
    """What mmengine's ``_load_checkpoint(filename, map_location)`` returns, read without running the file.

    The scheme is matched by mmengine's own ``CheckpointLoader`` (so a path means what it means to mmengine);
    its name is then resolved and downloaded as mmengine does, and the bytes are read by
    :func:`mmghost.utils.safe_torch_load` or safetensors.

    Raises:
        CheckpointError: the file is missing, unreadable, or references code (nothing from it has run), or
            its scheme is read by a loader that is not mmengine's own.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    filename = str(filename)
    loader = CheckpointLoader._get_checkpoint_loader(filename)
    reader = _readers().get(loader)
    if reader is None:
        where = f'{getattr(loader, "__module__", "?")}.{getattr(loader, "__name__", loader)}'
        raise CheckpointError(
            f'{NAME}: cannot read {filename} safely: mmengine reads its scheme with {where}, which '
            f'{NAME} does not know; download the file and give its local path')
    print_log(f'Loads checkpoint by {loader.__name__[10:]} backend from path: {filename} '
              '(restricted unpickler: nothing in the file runs)', logger='current')
    return reader(filename, map_location)


# ----------------------------------------------------------------------------------------------- initializer
def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def state_dict_of(checkpoint: Any, filename: str) -> Tuple[dict, Optional[str]]:
    """mmengine's choice (``checkpoint['state_dict']`` if there, else the checkpoint), and when neither holds
    weights, the first of the usual other wrappers (``model``, ``state_dict_ema``, ...) that does; also the
    wrapper key used (None: the checkpoint itself)."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{NAME}: no state_dict found in checkpoint file {filename} '
                              f'(it holds a {type(checkpoint).__name__})')
    if 'state_dict' in checkpoint:
        return checkpoint['state_dict'], 'state_dict'
    if not _is_state_dict(checkpoint):
        for key in WRAPPER_KEYS:
            if _is_state_dict(checkpoint.get(key)):
                return checkpoint[key], key
    return checkpoint, None


def reads_pretrained_weights(init_cfg) -> bool:
    """Whether ``init_cfg`` (a dict or a list of dicts) loads weights with ``Pretrained`` or ``SafePretrained``.

    For ``init_weights`` overrides that skip their own initialisation (e.g. zero-init of residual norms) when
    weights are loaded: mmengine's and mmpretrain's check ``init_cfg['type'] == 'Pretrained'`` only.
    """
    cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg]
    return any(isinstance(cfg, dict) and cfg.get('type') in ('Pretrained', PretrainedInit, NAME, SafePretrainedInit)
               for cfg in cfgs)


def _init_cfg_types(module) -> list:
    cfgs = module.init_cfg if isinstance(module.init_cfg, list) else [module.init_cfg]
    return [cfg.get('type') if isinstance(cfg, dict) else None for cfg in cfgs]


class SafePretrainedInit(PretrainedInit):
    """Initialize a module with pretrained weights, reading the file without running code from it.

    mmengine's ``PretrainedInit`` (same arguments, logs and ``prefix`` handling), reading with
    :func:`read_pretrained`; see the module docstring for what differs. Config name: ``SafePretrained``.

    Args:
        checkpoint (str): The weights: a local ``.pth``/``.pth.tar``/``.bin``/``.safetensors`` file, a URL or a
            model-zoo name (``open-mmlab://``, ``torchvision://``, ``mmcls://``, ...) that mmengine resolves.
        prefix (str, optional): Load only the weights under this prefix of the file, without it (e.g.
            ``'backbone.'`` to take a detector's backbone). Defaults to None (the whole file).
        map_location (str): Where to map the tensors. Defaults to ``'cpu'``.
    """

    def __call__(self, module):
        from mmengine.runner.checkpoint import _load_checkpoint_to_model, load_state_dict
        if self._called_by_init_weights(module):
            self._init_children_first(module)
        if self.prefix is None:
            print_log(f'load model from: {self.checkpoint}', logger='current')
            checkpoint = read_pretrained(self.checkpoint, map_location=self.map_location)
            state_dict, key = state_dict_of(checkpoint, self.checkpoint)
            if key not in (None, 'state_dict'):
                print_log(f'{NAME}: using the weights under {key!r} of {self.checkpoint}', logger='current')
            _load_checkpoint_to_model(module, {'state_dict': state_dict}, strict=False, logger='current')
        else:
            print_log(f'load {self.prefix} in model from: {self.checkpoint}', logger='current')
            checkpoint = read_pretrained(self.checkpoint, map_location=self.map_location)
            state_dict, _ = state_dict_of(checkpoint, self.checkpoint)
            prefix = self.prefix if self.prefix.endswith('.') else self.prefix + '.'
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
            if not state_dict:
                raise CheckpointError(f'{NAME}: {prefix} is not in the pretrained model {self.checkpoint}')
            load_state_dict(module, state_dict, strict=False, logger='current')
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    def _called_by_init_weights(self, module) -> bool:
        """Whether ``module.init_weights()`` is applying ``module``'s own ``init_cfg`` (not an ``override``):
        it has not finished (``is_init`` False) and the initialisation record of a running ``init_weights``
        exists (mmengine deletes it at the end)."""
        return (isinstance(module, BaseModule) and not module.is_init and hasattr(module, '_params_init_info')
                and not getattr(self, 'wholemodule', False)
                and any(t in (NAME, SafePretrainedInit) for t in _init_cfg_types(module)))

    def _init_children_first(self, module) -> None:
        """Give this initializer the place mmengine gives ``'Pretrained'``: after the children's own
        ``init_weights``.

        mmengine's ``BaseModule.init_weights`` applies the other ``init_cfg`` entries, then calls each child's
        ``init_weights``, then the entries of type ``'Pretrained'``, so that loaded weights win (mmengine issue
        691). It recognises that type by name only, so ``SafePretrained`` would run before the children and a
        child that initialises itself would overwrite the loaded weights. Here the children's ``init_weights``
        run now, exactly as ``init_weights`` would run them next, and are marked initialised (``is_init``, the
        attribute mmengine checks) so that it does not run them again.
        """
        types = _init_cfg_types(module)
        mine = max(i for i, t in enumerate(types) if t in (NAME, SafePretrainedInit))
        later = [t for t in types[mine + 1:] if t not in ('Pretrained', PretrainedInit, NAME, SafePretrainedInit)]
        if later:
            raise ValueError(
                f'{type(module).__name__}.init_cfg lists {NAME} before {later}: mmengine applies those after it, '
                f'and they would overwrite the loaded weights; put {NAME} last in init_cfg')
        for m in module.children():
            if is_model_wrapper(m) and not hasattr(m, 'init_weights'):
                m = m.module
            if hasattr(m, 'init_weights') and not getattr(m, 'is_init', False):
                m.init_weights()
                update_init_info(m, init_info=f'Initialized by user-defined `init_weights` in {m.__class__.__name__} ')
                if not isinstance(m, BaseModule):  # BaseModule.init_weights sets it itself
                    m.is_init = True


WEIGHT_INITIALIZERS.register_module(name=NAME, module=SafePretrainedInit)
