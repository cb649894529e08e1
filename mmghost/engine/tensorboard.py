"""Opt-in TensorBoard logging: ``tensorboard = True`` in a config, or ``--cfg-options tensorboard=True``.

The flag appends ``dict(type='TensorboardVisBackend')`` to ``visualizer.vis_backends``; mmengine then writes
TensorBoard event files to ``WORK_DIR/<timestamp>/vis_data/`` next to the JSON scalars (which stay: the local
backend is kept, and tools/plot_log.py reads it). ``tensorboard`` is an optional dependency
(``pip install tensorboard``: it does not depend on torch); asking for it without the package fails at once
with that hint instead of after the model is built.
"""
from mmengine.config import Config

BACKEND = 'TensorboardVisBackend'
FLAG = 'tensorboard'


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


def apply_tensorboard_flag(cfg: Config) -> Config:
    """Add the TensorBoard backend to ``cfg.visualizer`` when ``cfg.tensorboard`` is true; no-op otherwise."""
    if not cfg.get(FLAG, False):
        return cfg
    if not tensorboard_available():
        raise ImportError(f'{FLAG}=True needs the optional tensorboard package: pip install tensorboard')
    visualizer = cfg.get('visualizer')
    if visualizer is None:
        raise ValueError(f'{FLAG}=True needs a `visualizer` in the config (mmdet\'s default_runtime has one)')
    backends = [dict(b) for b in (visualizer.get('vis_backends') or [])]
    if not any(b.get('type') == BACKEND for b in backends):
        backends.append(dict(type=BACKEND))
    cfg.visualizer.vis_backends = backends
    return cfg
