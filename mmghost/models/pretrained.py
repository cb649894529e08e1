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

* every file is read by :func:`mmghost.utils.checkpoint_reader.read_checkpoint`, mmghost's one reader: the
  name is resolved as mmengine resolves it (model-zoo names and URLs downloaded to torch hub's cache, rank 0
  first), then read by a restricted unpickler (tensors, mmengine's ``HistoryBuffer`` and numpy values; any other
  global is refused before it is resolved) or by safetensors (timm's Hugging Face weights); a refused file
  raises :class:`~mmghost.utils.CheckpointError`, one line naming the file; a scheme another library registered
  a loader for is refused rather than read unrestricted;
* a file whose weights sit under ``model``/``state_dict_ema``/... instead of ``state_dict`` is unwrapped
  (mmengine would load nothing from it);
* mmengine gives only the type named ``'Pretrained'`` its place after the children's own ``init_weights`` (so
  that the loaded weights are not overwritten); :class:`SafePretrainedInit` takes the same place itself.

The GhostNet backbones' own key handling (mmghost 0.1 names, a whole detector's or classifier's ``backbone.*``,
V3's two branch-norm namings, the width check) happens in their ``_load_from_state_dict``, as for every loader.
"""
from typing import Any, Optional, Tuple

from mmengine.logging import print_log
from mmengine.model import BaseModule, is_model_wrapper
from mmengine.model.weight_init import PretrainedInit, update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS

from mmghost.utils.checkpoint_reader import is_state_dict, read_checkpoint
from mmghost.utils.safe_load import CheckpointError
from .weights import WRAPPER_KEYS

__all__ = ['SafePretrainedInit', 'reads_pretrained_weights', 'state_dict_of']

NAME = 'SafePretrained'


# ----------------------------------------------------------------------------------------------- initializer
def state_dict_of(checkpoint: Any, filename: str) -> Tuple[dict, Optional[str]]:
    """mmengine's choice (``checkpoint['state_dict']`` if there, else the checkpoint), and when neither holds
    weights, the first of the usual other wrappers (``model``, ``state_dict_ema``, ...) that does; also the
    wrapper key used (None: the checkpoint itself)."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{NAME}: no state_dict found in checkpoint file {filename} '
                              f'(it holds a {type(checkpoint).__name__})')
    if 'state_dict' in checkpoint:
        return checkpoint['state_dict'], 'state_dict'
    if not is_state_dict(checkpoint):
        for key in WRAPPER_KEYS:
            if is_state_dict(checkpoint.get(key)):
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
    :func:`mmghost.utils.checkpoint_reader.read_checkpoint`; see the module docstring for what differs. Config
    name: ``SafePretrained``.

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
            checkpoint = read_checkpoint(self.checkpoint, map_location=self.map_location)
            state_dict, key = state_dict_of(checkpoint, self.checkpoint)
            if key not in (None, 'state_dict'):
                print_log(f'{NAME}: using the weights under {key!r} of {self.checkpoint}', logger='current')
            _load_checkpoint_to_model(module, {'state_dict': state_dict}, strict=False, logger='current')
        else:
            print_log(f'load {self.prefix} in model from: {self.checkpoint}', logger='current')
            checkpoint = read_checkpoint(self.checkpoint, map_location=self.map_location)
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
