"""Checkpoint files for :class:`AtomicCheckpointHook` and :class:`MMGhostRunner`: atomic writes, integrity and
training-state checks, the resume fallback, and safe loading. Nothing here changes mmengine or torch.

* Writing: a checkpoint goes to a temp file next to the final one (``.<name>.<pid>.mmghost-tmp``), is fsynced and
  moved into place with ``os.replace`` (then the folder is fsynced): a checkpoint file is complete or absent.
* Resuming without a path (``--resume``): the file ``last_checkpoint`` names if it is intact and holds a
  training state; otherwise the newest file named by the checkpoint hook's ``filename_tmpl`` in its ``out_dir``
  that is intact and holds a training state (``meta``, ``state_dict``, ``message_hub``). Other ``*.pth`` files
  in the work dir (converted weights, published or best checkpoints) are never picked.
* Loading: :func:`load_checkpoint_file` is mmghost's one reader,
  :func:`mmghost.utils.checkpoint_reader.read_checkpoint` (local files, storage backends and model-zoo names
  read by a restricted unpickler: nothing in the file runs), unless ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``.
"""
import glob
import io
import logging
import os
import os.path as osp
import pickle
import re
import zipfile
from typing import Any, Callable, List, Optional, Tuple

import torch
from mmengine.logging import print_log

from mmghost.utils.checkpoint_reader import read_checkpoint, read_top_level_keys
from mmghost.utils.safe_load import CheckpointError

# Temp files of an in-progress save: ".<name>.<pid>.mmghost-tmp" next to the final file.
TMP_SUFFIX = '.mmghost-tmp'
# What mmengine's Runner.save_checkpoint always writes; a file without them cannot be resumed from.
TRAINING_STATE_KEYS = ('meta', 'state_dict', 'message_hub')


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


def temp_name(filename: str) -> str:
    """The temp file name a save of ``filename`` (a name or relative path) writes first."""
    folder, base = osp.split(filename)
    return osp.join(folder, f'.{base}.{os.getpid()}{TMP_SUFFIX}')


def publish(tmp: str, path: str) -> None:
    """Make the fully written ``tmp`` durable and move it to ``path`` in one step (``os.replace``)."""
    with open(tmp, 'rb+') as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(osp.dirname(osp.abspath(path)))


def atomic_write(path: str, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write ``path`` via ``write(file)`` into a temp file in the same folder, then :func:`publish` it.

    Readers (and a resume after a crash) see either the old file or the complete new one, never a partial one;
    a failed write removes its temp file and leaves the old file as it was.
    """
    path = osp.abspath(osp.expanduser(os.fspath(path)))
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, 'wb') as f:
            write(f)
        publish(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)``, atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


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
        read_checkpoint(path)
    except CheckpointError as e:
        return str(e)
    return None


def training_state_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be resumed from (not intact, or no training state), or None if it can."""
    problem = checkpoint_problem(path)
    if problem is not None:
        return problem
    try:
        if zipfile.is_zipfile(path):
            keys = read_top_level_keys(path)
        else:
            obj = read_checkpoint(path)
            keys = set(obj) if isinstance(obj, dict) else None
    except (pickle.UnpicklingError, CheckpointError, ValueError, EOFError) as e:
        return f'unreadable ({e})'
    missing = [k for k in TRAINING_STATE_KEYS if keys is None or k not in keys]
    if missing:
        return f'not a training checkpoint (no {", ".join(missing)}): weights only?'
    return None


def checkpoints_by_template(folder: str, filename_tmpl: str) -> List[Tuple[int, str]]:
    """``[(step, path), ...]`` of the files in ``folder`` named by ``filename_tmpl`` (``'epoch_{}.pth'``), newest
    step first (ties: newest modification time first)."""
    parts = re.split(r'\{[^{}]*\}', filename_tmpl)
    if len(parts) != 2:  # not a one-placeholder template: nothing can be matched safely
        return []
    sub, base = osp.split(parts[0])
    pattern = re.compile(re.escape(base) + r'(\d+)' + re.escape(parts[1]) + r'\Z')
    root = osp.join(folder, sub)
    found = []
    for name in os.listdir(root) if osp.isdir(root) else []:
        match = pattern.match(name)
        path = osp.join(root, name)
        if match and osp.isfile(path):
            found.append((int(match.group(1)), osp.getmtime(path), path))
    return [(step, path) for step, _, path in sorted(found, reverse=True)]


def find_resumable_checkpoint(work_dir: str, filename_tmpl: Optional[str] = None,
                              out_dir: Optional[str] = None) -> Optional[str]:
    """What ``--resume`` without a path resumes from (mmengine's ``find_latest_checkpoint`` + a fallback).

    Args:
        work_dir (str): The run's work dir (holds ``last_checkpoint``).
        filename_tmpl (str, optional): The checkpoint hook's ``filename_tmpl``; None: no fallback search.
        out_dir (str, optional): The folder the hook writes to (after mmengine appends the work dir's name to
            a configured ``out_dir``); None: ``work_dir``. Remote folders are not searched.

    Returns:
        The path ``last_checkpoint`` names if it is intact and holds a training state; otherwise the newest file
        named by ``filename_tmpl`` in ``out_dir`` that is (with a warning saying why); None to train from scratch.
    """
    save_file = osp.join(work_dir, 'last_checkpoint')
    recorded = None
    if osp.exists(save_file):
        with open(save_file) as f:
            recorded = f.read().strip() or None
    if recorded is not None and '://' in recorded:  # remote storage: not ours to check
        return recorded
    if recorded is not None:
        problem = training_state_problem(recorded)
        if problem is None:
            return recorded
        reason = f'last_checkpoint names {recorded}, which cannot be resumed from ({problem})'
    elif osp.exists(save_file):
        reason = f'{save_file} is empty'
    else:
        reason = None
    folder = out_dir or work_dir
    fallback = None
    if filename_tmpl and '://' not in folder:
        for _, path in checkpoints_by_template(folder, filename_tmpl):
            if recorded is not None and osp.abspath(path) == osp.abspath(recorded):
                continue
            problem = training_state_problem(path)
            if problem is None:
                fallback = path
                break
            print_log(f'Not resuming from {path}: {problem}.', logger='current', level=logging.WARNING)
    if fallback is not None:
        reason = reason or f'no last_checkpoint file in {work_dir}'
        print_log(f'{reason}; resuming from the newest training checkpoint {fallback} instead.',
                  logger='current', level=logging.WARNING)
        return fallback
    if reason is None:
        print_log('Did not find last_checkpoint to be resumed.', logger='current')
    else:
        print_log(f'{reason}, and no other training checkpoint named {filename_tmpl!r} is in {folder}: training '
                  'starts from scratch.', logger='current', level=logging.WARNING)
    return None


# ------------------------------------------------------------------------------------------------------ loading
# The engine's name for mmghost's one reader (mmghost.utils.checkpoint_reader), kept for the tools and users.
load_checkpoint_file = read_checkpoint


def load_detector_checkpoint(model: torch.nn.Module, filename: str, map_location: Any = 'cpu',
                             strict: bool = False, revise_keys=((r'^module\.', ''), )) -> dict:
    """mmengine's ``load_checkpoint(model, filename)`` reading the file with mmghost's one reader.

    For tools that load a detector checkpoint outside a runner (inference, export). Returns the checkpoint.
    """
    from mmengine.runner.checkpoint import _load_checkpoint_to_model
    checkpoint = read_checkpoint(filename, map_location=map_location)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{filename} holds a {type(checkpoint).__name__}, not a checkpoint dict')
    return _load_checkpoint_to_model(model, checkpoint, strict, revise_keys=list(revise_keys))
