"""Small helpers the GhostNet family's blocks share: channel rounding and batch-norm-safe recomputation."""
from contextlib import contextmanager
from typing import Callable

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from torch.nn.modules.batchnorm import _BatchNorm


def make_divisible(value: float, divisor: int = 4, min_ratio: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never losing more than 10%.

    Same rule as ``_make_divisible`` in the official GhostNet code and as mmdet's ``make_divisible``; kept here
    because importing ``mmdet.models.layers`` pulls in ``mmcv.ops`` (compiled ops), which a backbone-only
    install must not need.
    """
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < min_ratio * value:
        new_value += divisor
    return new_value


@contextmanager
def frozen_norm_statistics(module: nn.Module):
    """Run batch norms of ``module`` in training mode without moving their running statistics or counters.

    Momentum 0 keeps ``running_mean``/``running_var`` exactly (``1 * running + 0 * batch``) while the batch is
    still normalised with its own statistics, as in the first forward pass; ``num_batches_tracked`` is restored.
    """
    saved = [(m, m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
             for m in module.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
    try:
        for m, _, _ in saved:
            m.momentum = 0.0
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def recompute_in_backward(function: Callable[..., torch.Tensor], module: nn.Module, *args) -> torch.Tensor:
    """``function(*args)`` under gradient checkpointing, recomputed in backward instead of kept in memory.

    ``torch.utils.checkpoint`` runs ``function`` a second time in the backward pass; a plain checkpoint would
    update the running statistics of every batch norm in it twice per step (``num_batches_tracked`` 2 after
    one step). Here the recomputation runs with the statistics of ``module``'s batch norms frozen, so results,
    gradients and statistics equal those of an unchecked forward.

    Args:
        function: What to run; ``module`` or one of its methods.
        module: The module that owns the batch norms ``function`` uses.
        *args: Inputs of ``function``.
    """
    recomputing = False  # the first call is the forward pass, any later one a recomputation in backward

    def run(*inputs):
        nonlocal recomputing
        if not recomputing:
            recomputing = True
            return function(*inputs)
        with frozen_norm_statistics(module):
            return function(*inputs)

    return cp.checkpoint(run, *args, use_reentrant=False)
