"""``AtomicCheckpointHook``: mmengine's ``CheckpointHook`` whose checkpoints survive a kill at any moment.

mmengine 0.10.7's hook writes checkpoints in place (a kill mid-write leaves a truncated file), and with
``max_keep_ckpts`` it deletes the oldest checkpoint *before* writing the new one (a kill then can leave nothing
to resume from); ``last_checkpoint`` is rewritten in place too. This subclass keeps everything else and changes
the order and the way files are written:

1. the checkpoint is written to a temp file next to the final one, fsynced and moved into place
   (:func:`~mmghost.engine.checkpoint_io.publish`), so a checkpoint file is either complete or absent;
2. ``last_checkpoint`` is replaced (atomically) only after that;
3. old checkpoints (``max_keep_ckpts``) and the previous best checkpoint are deleted only after that;
4. temp files of a killed save are removed when training starts;
5. ``published_keys`` checkpoints are read with the safe loader and written atomically too.

Remote ``out_dir`` s (object stores, whose uploads are atomic already) are written by mmengine as before,
in the same save-then-publish-then-delete order.

A checkpoint here is one file that the main process writes: what ``Runner`` and ``FlexibleRunner``'s
``SingleDeviceStrategy``/``DDPStrategy`` (and ``FSDPStrategy`` with a full state dict) save. ``FlexibleRunner``
with DeepSpeed, ColossalAI or sharded FSDP saves a folder that every rank writes into; making that atomic needs a
temp name all ranks agree on, a barrier and one rename, which is not done here (it could not be tested without
those libraries and GPUs): the hook refuses such a runner before training starts (use mmengine's
``CheckpointHook`` there). Use it in a config::

    default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1))

(a config based on ours that sets ``default_hooks = dict(checkpoint=dict(interval=2))`` keeps the type: mmengine
merges dicts.)
"""
import hashlib
import os.path as osp
import pickle
from typing import Optional

from mmengine.dist import is_main_process, master_only
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook

from mmghost.registry import HOOKS
from .checkpoint_io import (atomic_torch_save, atomic_write_text, load_checkpoint_file, publish,
                            remove_stale_temp_files, temp_name)


class _DeferredRemovals:
    """A file backend whose ``remove``/``rmtree`` wait until :meth:`flush` (after the new file is saved)."""

    def __init__(self, backend):
        self._backend = backend
        self._pending = []

    def remove(self, path):
        self._pending.append(('remove', path))

    def rmtree(self, path):
        self._pending.append(('rmtree', path))

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def flush(self):
        for method, path in self._pending:
            getattr(self._backend, method)(path)
        self._pending.clear()


class _AtomicSaves:
    """The runner as mmengine's hook code sees it, with ``save_checkpoint`` routed through the hook."""

    def __init__(self, hook, runner):
        self._hook = hook
        self._runner = runner

    def save_checkpoint(self, out_dir, filename, file_client_args=None, *args, backend_args=None, **kwargs):
        self._hook._save(self._runner, filename, **kwargs)

    def __getattr__(self, name):
        return getattr(self._runner, name)


def _folder_checkpoint_strategy(runner) -> Optional[str]:
    """The name of ``runner``'s strategy if its checkpoints are folders (or not known to be one file written by
    the main process), else None. Only ``FlexibleRunner`` has a strategy; ``Runner`` always saves one file."""
    strategy = getattr(runner, 'strategy', None)
    if strategy is None:
        return None
    from mmengine._strategy import SingleDeviceStrategy  # DDPStrategy and FSDPStrategy derive from it
    full_state_dict = getattr(strategy, '_is_full_state_dict', lambda: True)  # FSDP: one file with a full one
    if isinstance(strategy, SingleDeviceStrategy) and full_state_dict():
        return None
    return type(strategy).__name__


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic writes and deletions after the new checkpoint is on disk.

    Takes exactly ``CheckpointHook``'s arguments; see the module docstring for what differs.
    """

    def _is_local(self) -> bool:
        backend = getattr(self, 'file_backend', None)
        backend = getattr(backend, '_backend', backend)  # inside _save_best_checkpoint: the deferring wrapper
        return (self.file_client_args is None and isinstance(backend, LocalBackend)
                and not str(self.out_dir).startswith('pavi://'))

    def before_train(self, runner) -> None:
        strategy = _folder_checkpoint_strategy(runner)
        if strategy is not None:
            raise ValueError(f'AtomicCheckpointHook writes each checkpoint as one file and renames it into place, '
                             f'but with {type(runner).__name__} and {strategy} a checkpoint is a folder that every '
                             "rank writes into, which it cannot make atomic: use mmengine's CheckpointHook "
                             "(default_hooks.checkpoint.type='CheckpointHook') with this strategy.")
        super().before_train(runner)
        if not is_main_process():
            return
        folders = {runner.work_dir}  # last_checkpoint's temp file
        if self._is_local():
            folders.add(str(self.out_dir))
        for folder in sorted(folders):
            for path in remove_stale_temp_files(folder) if osp.isdir(folder) else []:
                runner.logger.info(f'Removed {path}, left by a checkpoint save that was interrupted.')

    def _save(self, runner, filename: str, **kwargs) -> None:
        """``runner.save_checkpoint(self.out_dir, filename, ...)``; a local file appears complete or not at all."""
        if not self._is_local():
            runner.save_checkpoint(self.out_dir, filename, self.file_client_args, backend_args=self.backend_args,
                                   **kwargs)
            return
        tmp = temp_name(filename)
        runner.save_checkpoint(self.out_dir, tmp, backend_args=self.backend_args, **kwargs)
        if is_main_process():  # Runner.save_checkpoint writes on the main process only
            if osp.isdir(osp.join(self.out_dir, tmp)):  # a runner before_train did not recognise
                raise ValueError(f'AtomicCheckpointHook: {type(runner).__name__} saved the checkpoint '
                                 f'{osp.join(self.out_dir, tmp)} as a folder; it writes one file per checkpoint: '
                                 "use mmengine's CheckpointHook with this runner.")
            publish(osp.join(self.out_dir, tmp), osp.join(self.out_dir, filename))

    def _save_checkpoint_with_step(self, runner, step, meta):
        """mmengine 0.10.7's method, reordered: save, then update last_checkpoint, then delete old files."""
        runner = getattr(runner, '_runner', runner)  # called back from _save_best_checkpoint's wrapper
        outdated = []
        if self.max_keep_ckpts > 0:
            if not (len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step):
                if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                    outdated.append(self.keep_ckpt_ids.popleft())
                self.keep_ckpt_ids.append(step)
                runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        self._save(runner, ckpt_filename, save_optimizer=self.save_optimizer,
                   save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                   **self.args)

        if not is_main_process():
            return
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old_step in outdated:  # only now that the new checkpoint is safely on disk
            ckpt_path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old_step))
            if self.file_backend.isfile(ckpt_path):
                self.file_backend.remove(ckpt_path)
            elif self.file_backend.isdir(ckpt_path):  # deepspeed checkpoints are folders
                self.file_backend.rmtree(ckpt_path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """mmengine's method, saving atomically and deleting the previous best after the new one is saved."""
        backend = getattr(self, 'file_backend', None)
        if backend is None or not self.save_best:
            return super()._save_best_checkpoint(runner, metrics)
        deferred = _DeferredRemovals(backend)
        self.file_backend = deferred
        try:
            super()._save_best_checkpoint(_AtomicSaves(self, runner), metrics)
        finally:
            self.file_backend = backend
        deferred.flush()

    @master_only
    def _publish_model(self, runner, ckpt_path: str) -> None:
        """mmengine's method, reading with the safe loader and writing the published file atomically."""
        from mmengine.logging import print_log
        from mmengine.runner import save_checkpoint
        checkpoint = load_checkpoint_file(ckpt_path, backend_args=self.backend_args)
        removed_keys = [key for key in list(checkpoint) if key not in self.published_keys]
        for key in removed_keys:
            checkpoint.pop(key)
        if removed_keys:
            print_log(f'Key {removed_keys} will be removed because they are not found in published_keys. If you '
                      f'want to keep them, please set `{removed_keys}` in published_keys', logger='current')
        sha = hashlib.sha256(pickle.dumps(checkpoint)).hexdigest()
        final_path = osp.splitext(ckpt_path)[0] + f'-{sha[:8]}.pth'
        if self._is_local():
            atomic_torch_save(checkpoint, final_path)
        else:
            save_checkpoint(checkpoint, final_path, backend_args=self.backend_args)
        print_log(f'The checkpoint ({ckpt_path}) is published to {final_path}.', logger='current')
