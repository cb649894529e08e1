"""Config handling shared by tools/train.py, tools/test.py and the demo, as mmdet 3.3's tools do it."""
import os.path as osp
import tempfile
import warnings
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..configs import resolve_base
from .checkpoint_io import load_detector_checkpoint
from .runner import MMGhostRunner
from .tensorboard import apply_tensorboard_flag


def read_config(config: str) -> Config:
    """mmengine's ``Config.fromfile(config)``, where ``_base_`` may also name one of mmghost's configs as
    ``'mmghost::NAME'`` (see :mod:`mmghost.configs`).

    mmengine 0.10 resolves ``pkg::`` only for the packages in its own table, and before ``custom_imports`` runs, so
    these names are resolved here first, for this one load: files that name them are read from rewritten copies
    (:func:`mmghost.configs.resolve_base`) and nothing of mmengine is changed. The Config keeps ``config`` as its
    filename; a config without ``mmghost::`` in its chain is read exactly as by ``Config.fromfile``.
    """
    with tempfile.TemporaryDirectory(prefix='mmghost_config_') as tmp:
        resolved = resolve_base(config, tmp)
        cfg = Config.fromfile(resolved)
    if resolved == config:
        return cfg
    return Config(cfg.to_dict(), cfg_text=cfg.text, filename=config, env_variables=cfg.env_variables)


def load_config(config: str,
                cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None,
                launcher: str = 'none') -> Config:
    """Load ``config`` (:func:`read_config`: ``_base_`` may name ``mmghost::NAME``), merge ``--cfg-options``,
    apply the ``tensorboard`` flag and set ``work_dir`` (CLI > config > ./work_dirs/<name>).

    Without CUDA a distributed launch uses gloo and a DDP wrapper that accepts CPU modules.
    """
    cfg = read_config(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    apply_tensorboard_flag(cfg)  # `tensorboard = True` in a config or --cfg-options adds TensorBoard logging
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    if launcher != 'none' and not torch.cuda.is_available():
        env_cfg = dict(cfg.get('env_cfg', {}))
        cfg.env_cfg = dict(env_cfg, dist_cfg=dict(env_cfg.get('dist_cfg', {}), backend='gloo'))
        wrapper = cfg.get('model_wrapper_cfg') or {}
        if wrapper.get('type', 'MMDistributedDataParallel') == 'MMDistributedDataParallel':
            cfg.model_wrapper_cfg = dict(
                wrapper, type='CPUAwareDistributedDataParallel',
                find_unused_parameters=cfg.get('find_unused_parameters', False))
    return cfg


def build_detector(cfg: Config) -> torch.nn.Module:
    """The config's model with random weights, for tools that measure or export it.

    The default scope is set, the backbone's ``init_cfg`` is dropped (an ImageNet file the config names need
    not exist) and ``init_weights`` is not called; load a checkpoint afterwards if needed.
    """
    from mmengine.registry import init_default_scope

    from mmdet.registry import MODELS
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    if 'backbone' in cfg.model:
        cfg.model.backbone.init_cfg = None
    return MODELS.build(cfg.model)


def init_detector(cfg: Config, checkpoint: str, device: str = 'cpu', strict: bool = False) -> torch.nn.Module:
    """mmdet's ``init_detector(cfg, checkpoint)`` in eval mode, with the checkpoint read by mmghost's safe loader.

    mmdet's loads it with a bare ``torch.load``: torch >= 2.6 refuses the training state in our checkpoints, and
    older torch would run whatever code a crafted file holds. ``dataset_meta`` comes from the checkpoint as in
    mmdet; ``strict`` as in mmengine's ``load_checkpoint``.
    """
    from mmdet.apis import init_detector as mmdet_init_detector
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "checkpoint is None, use COCO classes by default": set from it below
        model = mmdet_init_detector(cfg, None, device='cpu')
    palette = model.dataset_meta.get('palette')  # init_detector's: the config's test dataset, else 'random'
    meta = load_detector_checkpoint(model, checkpoint, strict=strict).get('meta', {}).get('dataset_meta')
    if meta:
        model.dataset_meta = {k.lower(): v for k, v in meta.items()}
        if palette != 'random' or 'palette' not in model.dataset_meta:  # init_detector's priority
            model.dataset_meta['palette'] = palette
    return model.to(device).eval()


def build_runner(cfg: Config) -> Runner:
    """The runner a config names with ``runner_type``; :class:`~mmghost.engine.MMGhostRunner` (safe checkpoint
    loading and resume) when it names none."""
    if cfg.get('launcher', 'none') == 'pytorch' and not torch.cuda.is_available():
        # mmengine's init_dist calls torch.cuda.set_device, which a CPU build of torch lacks; a process group
        # that already exists makes the runner skip it.
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group(backend='gloo')
    if 'runner_type' not in cfg:
        return MMGhostRunner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def finish_distributed() -> None:
    """Tear down the process group at the end of a distributed run.

    Left alone, gloo's threads can still be running while the interpreter exits, and the process then aborts
    ("terminate called without an active exception") after a successful run. The barrier lets every rank
    finish its last collective and checkpoint first.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
