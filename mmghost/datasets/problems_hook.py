"""``DataProblemsHook``: the main process reports the data problems dataloader workers met.

A :class:`~mmghost.datasets.SafeCocoDataset` prints a problem where it meets it; in a dataloader worker that is
another process, whose record of it the main process never sees. The dataset passes such problems on
(:class:`~mmghost.datasets.safe_coco.WorkerReports`); this hook collects them in the main process at the end of
every training epoch (and every ``interval`` iterations if set), prints one line with what is new, and so
keeps ``dataset.problems`` of the main process complete::

    default_hooks = dict(data_problems=dict(type='DataProblemsHook'))
"""
import logging
from typing import Iterator

from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmghost.registry import HOOKS
from .safe_coco import SafeCocoDataset, summarize


def safe_coco_datasets(dataset) -> Iterator[SafeCocoDataset]:
    """The :class:`SafeCocoDataset` s in ``dataset``, looking inside mmengine/mmdet dataset wrappers."""
    if isinstance(dataset, SafeCocoDataset):
        yield dataset
        return
    inner = getattr(dataset, 'dataset', None)
    if inner is not None:
        yield from safe_coco_datasets(inner)
    for inner in getattr(dataset, 'datasets', None) or []:
        yield from safe_coco_datasets(inner)


@HOOKS.register_module()
class DataProblemsHook(Hook):
    """Collect and print, in the main process, the problems training dataloader workers met.

    Args:
        interval (int): Also report every ``interval`` training iterations; 0 (default): at the end of each
            training epoch only (for an iteration-based loop: at the end of training).
    """
    priority = 'LOW'

    def __init__(self, interval: int = 0):
        if interval < 0:
            raise ValueError(f'interval must be >= 0, got {interval}')
        self.interval = interval

    def _report(self, runner, when: str) -> None:
        for dataset in safe_coco_datasets(runner.train_dataloader.dataset):
            new = dataset.collect_worker_problems()
            if new:
                print_log(f'{type(dataset).__name__}: dataloader workers met {len(new)} new data problem(s) '
                          f'{when}: {summarize(new)}; {summarize(dataset.problems)} in all so far in '
                          f'{dataset.ann_file}.', logger='current', level=logging.WARNING)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.interval and self.every_n_train_iters(runner, self.interval):
            self._report(runner, f'by iteration {runner.iter + 1}')

    def after_train_epoch(self, runner) -> None:
        self._report(runner, f'in epoch {runner.epoch}')
