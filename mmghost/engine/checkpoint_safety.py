"""Crash-safe checkpoints for mmengine 0.10.x, applied by ``import mmghost``.

Why: on this stack (mmengine 0.10.7, torch >= 2.6)

* ``--resume`` fails: mmengine calls ``torch.load`` without ``weights_only``; torch >= 2.6 defaults it to True
  and refuses the ``HistoryBuffer`` objects in the checkpoint's ``message_hub``.
* checkpoints are written in place (``open(path, 'wb')``), so a kill mid-write leaves a truncated file, and
  with ``max_keep_ckpts`` the previous checkpoint is deleted *before* the new one is written, so a kill at
  that moment leaves nothing valid to resume from.

What the patches do (each is small and keeps mmengine's behaviour otherwise):

1. Loading (``CheckpointLoader``): every scheme loads with ``weights_only=True`` and the allow-list of
   :func:`mmghost.utils.checkpoint_safe_globals` (exactly the types mmengine/mmdet checkpoints hold). A pickle
   that needs anything else is refused with a :class:`~mmghost.utils.CheckpointError`; nothing in it runs.
2. Saving (``save_checkpoint``): local files are written to a temp file in the same folder, flushed, fsynced and
   moved into place with ``os.replace`` (then the folder is fsynced): a checkpoint file is complete or absent.
3. ``CheckpointHook``: ``last_checkpoint`` is replaced atomically only after the new checkpoint is on disk, and
   old checkpoints (``max_keep_ckpts``, previous best) are deleted only after that. Stale temp files of a
   killed save are removed when training starts.
4. ``find_latest_checkpoint`` (auto resume): if ``last_checkpoint`` is missing or names a damaged file, resume
   falls back to the newest intact checkpoint in the work dir and logs a warning saying so.

All patches are applied once (importing twice patches once); :func:`apply` returns whether it did anything.
"""
import glob
import io
import logging
import os
import os.path as osp
import re
import tempfile
import time
import zipfile
from typing import Callable, List, Optional

import torch
from mmengine.logging import print_log

from mmghost.utils.errors import install_excepthook
from mmghost.utils.safe_load import CheckpointError, checkpoint_safe_globals, safe_torch_load

# Temp files of an in-progress save: ".<name>.<random>.mmghost-tmp" next to the final file.
TMP_SUFFIX = '.mmghost-tmp'
# Crash tests only: seconds to pause in the middle of writing a checkpoint, so that kills land mid-write.
WRITE_DELAY_ENV = 'MMGHOST_CKPT_WRITE_DELAY'
_MARK = '_mmghost_crash_safe'


# ----------------------------------------------------------------------------------------------- atomic writes
def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write ``path`` via ``write(file)`` into a temp file in the same folder, fsync, then ``os.replace``.

    Readers (and a resume after a crash) see either the old file or the complete new one, never a partial one.
    """
    path = osp.abspath(osp.expanduser(os.fspath(path)))
    folder = osp.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix=TMP_SUFFIX, dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; keep what open(path, 'wb') would give
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def atomic_torch_save(obj, path: str) -> None:
    """``torch.save(obj, path)``, atomically (see :func:`atomic_write`)."""
    delay = float(os.environ.get(WRITE_DELAY_ENV, '0') or 0)

    def write(f):
        if delay <= 0:
            torch.save(obj, f)
            return
        buffer = io.BytesIO()  # crash tests: write half, pause, write the rest
        torch.save(obj, buffer)
        data = buffer.getvalue()
        f.write(data[:len(data) // 2])
        f.flush()
        time.sleep(delay)
        f.write(data[len(data) // 2:])

    atomic_write(path, write)


def atomic_write_text(path: str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode('utf-8')))


def remove_stale_temp_files(folder: str) -> List[str]:
    """Delete temp files that a killed save left in ``folder``; return their paths."""
    removed = []
    for path in glob.glob(osp.join(glob.escape(folder), f'.*{TMP_SUFFIX}')):
        try:
            os.unlink(path)
            removed.append(path)
        except OSError:
            pass
    return removed


# --------------------------------------------------------------------------------------- checking checkpoints
def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` is not a complete checkpoint file, or None if it looks intact.

    Zip-format checkpoints (torch >= 1.6) are checked without unpickling: the central directory must be
    readable, every member's CRC must match and the pickle must be there. Legacy files are fully loaded.
    """
    if not osp.isfile(path):
        return 'file not found'
    if osp.getsize(path) == 0:
        return 'empty file'
    with open(path, 'rb') as f:
        starts_like_zip = f.read(4) == b'PK\x03\x04'
    if starts_like_zip and not zipfile.is_zipfile(path):
        return 'truncated: the zip directory at the end of the file is missing'
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                if not any(name.endswith('/data.pkl') or name == 'data.pkl' for name in z.namelist()):
                    return 'not a PyTorch checkpoint (no data.pkl inside)'
                bad = z.testzip()
                if bad is not None:
                    return f'corrupt member {bad}'
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            return f'damaged ({e})'
        return None
    try:
        safe_torch_load(path)
    except CheckpointError as e:
        return str(e)
    return None


def _step_of(path: str) -> int:
    numbers = re.findall(r'\d+', osp.basename(path))
    return int(numbers[-1]) if numbers else -1


def newest_intact_checkpoint(folder: str, exclude: Optional[str] = None) -> Optional[str]:
    """The newest intact ``*.pth`` directly in ``folder`` (by modification time, then step), other than
    ``exclude``. Files are checked newest first and only until one passes: each check reads the whole file."""
    paths = [p for p in glob.glob(osp.join(glob.escape(folder), '*.pth'))
             if osp.isfile(p) and (exclude is None or osp.abspath(p) != osp.abspath(exclude))]
    paths.sort(key=lambda p: (osp.getmtime(p), _step_of(p)), reverse=True)
    return next((p for p in paths if checkpoint_problem(p) is None), None)


def find_latest_checkpoint(path: str) -> Optional[str]:
    """mmengine's ``find_latest_checkpoint`` (what ``--resume`` without a path uses), with a fallback.

    Returns the file ``<path>/last_checkpoint`` names if it is intact; otherwise the newest intact checkpoint in
    ``path`` (with a warning naming the damaged file); None (train from scratch) when there is none.
    """
    save_file = osp.join(path, 'last_checkpoint')
    recorded = None
    if osp.exists(save_file):
        with open(save_file) as f:
            recorded = f.read().strip() or None
    if recorded is not None and '://' in recorded:  # remote storage: not ours to check
        return recorded
    if recorded is not None:
        problem = checkpoint_problem(recorded)
        if problem is None:
            return recorded
        reason = f'last_checkpoint names {recorded}, which is damaged ({problem})'
    elif osp.exists(save_file):
        reason = f'{save_file} is empty'
    else:
        reason = None
    fallback = newest_intact_checkpoint(path, exclude=recorded)
    if fallback is not None:
        reason = reason or f'no last_checkpoint file in {path}'
        print_log(f'{reason}; resuming from the newest intact checkpoint {fallback} instead.',
                  logger='current', level=logging.WARNING)
        return fallback
    if reason is None:
        print_log('Did not find last_checkpoint to be resumed.', logger='current')
    else:
        print_log(f'{reason}, and there is no intact checkpoint in {path}: training starts from scratch.',
                  logger='current', level=logging.WARNING)
    return None


# ------------------------------------------------------------------------------------------------ the patches
def _safe_load_from_local(filename, map_location):
    """mmengine's ``load_from_local`` with ``weights_only=True`` and the allow-list."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_torch_load(filename, map_location=map_location)


def _patch_loading(ckpt_mod) -> None:
    loader = ckpt_mod.CheckpointLoader
    loader.register_scheme(prefixes='', loader=_safe_load_from_local, force=True)
    original = loader.load_checkpoint.__func__

    def load_checkpoint(cls, filename, map_location=None, logger='current'):
        # Other schemes (http, open-mmlab://, ...) call torch.load without weights_only, i.e. True on
        # torch >= 2.6: give them the same allow-list.
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            try:
                return original(cls, filename, map_location, logger)
            except CheckpointError:
                raise
            except Exception as e:
                if 'Weights only load failed' in str(e):
                    raise CheckpointError(
                        f'refused to load {filename}: its pickle references code outside the allow-list of '
                        f'checkpoint types; nothing from it was executed ({str(e).splitlines()[0]})') from None
                raise

    load_checkpoint.__doc__ = original.__doc__
    loader.load_checkpoint = classmethod(load_checkpoint)


def _patch_saving(ckpt_mod, runner_mod) -> None:
    from mmengine.fileio import get_file_backend
    from mmengine.fileio.backends import LocalBackend
    original = ckpt_mod.save_checkpoint

    def save_checkpoint(checkpoint, filename, file_client_args=None, backend_args=None):
        local = (file_client_args is None and not str(filename).startswith('pavi://')
                 and isinstance(get_file_backend(filename, backend_args=backend_args), LocalBackend))
        if not local:
            return original(checkpoint, filename, file_client_args=file_client_args, backend_args=backend_args)
        atomic_torch_save(checkpoint, filename)

    save_checkpoint.__doc__ = (original.__doc__ or '') + '\n    mmghost: local files are written atomically.'
    ckpt_mod.save_checkpoint = save_checkpoint
    runner_mod.save_checkpoint = save_checkpoint  # the Runner imported the name
    import mmengine.runner
    if hasattr(mmengine.runner, 'save_checkpoint'):  # CheckpointHook's publishing imports it from here
        mmengine.runner.save_checkpoint = save_checkpoint


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


def _patch_checkpoint_hook() -> None:
    from mmengine.dist import is_main_process
    from mmengine.hooks import CheckpointHook

    def _save_checkpoint_with_step(self, runner, step, meta):
        """mmengine 0.10.7's method, reordered: save, then update last_checkpoint, then delete old files."""
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

        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)

        if not is_main_process():
            return
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old_step in outdated:  # only now that the new checkpoint is safely on disk
            ckpt_path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old_step))
            if self.file_backend.isfile(ckpt_path):
                self.file_backend.remove(ckpt_path)
            elif self.file_backend.isdir(ckpt_path):
                self.file_backend.rmtree(ckpt_path)

    original_best = CheckpointHook._save_best_checkpoint

    def _save_best_checkpoint(self, runner, metrics):
        """mmengine's method, with the previous best checkpoint deleted after the new one is saved."""
        backend = getattr(self, 'file_backend', None)
        if backend is None:
            return original_best(self, runner, metrics)
        deferred = _DeferredRemovals(backend)
        self.file_backend = deferred
        try:
            original_best(self, runner, metrics)
        finally:
            self.file_backend = backend
        deferred.flush()

    original_before_train = CheckpointHook.before_train

    def before_train(self, runner):
        original_before_train(self, runner)
        if is_main_process() and osp.isdir(str(self.out_dir)):
            for path in remove_stale_temp_files(str(self.out_dir)):
                runner.logger.info(f'Removed {path}, left by a checkpoint save that was interrupted.')

    CheckpointHook._save_checkpoint_with_step = _save_checkpoint_with_step
    CheckpointHook._save_best_checkpoint = _save_best_checkpoint
    CheckpointHook.before_train = before_train


def apply() -> bool:
    """Apply the patches (idempotent). Returns True if they were applied by this call."""
    import mmengine.runner
    import mmengine.runner.checkpoint as ckpt_mod
    import mmengine.runner.runner as runner_mod
    install_excepthook()
    if getattr(ckpt_mod, _MARK, False):
        return False
    _patch_loading(ckpt_mod)
    _patch_saving(ckpt_mod, runner_mod)
    _patch_checkpoint_hook()
    ckpt_mod.find_latest_checkpoint = find_latest_checkpoint
    runner_mod.find_latest_checkpoint = find_latest_checkpoint
    mmengine.runner.find_latest_checkpoint = find_latest_checkpoint  # used by _flexible_runner and strategies
    try:
        import mmengine.runner._flexible_runner as flexible
        flexible.find_latest_checkpoint = find_latest_checkpoint
    except ImportError:
        pass
    setattr(ckpt_mod, _MARK, True)
    return True


def is_applied() -> bool:
    import mmengine.runner.checkpoint as ckpt_mod
    return bool(getattr(ckpt_mod, _MARK, False))
