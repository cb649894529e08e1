"""``MMGhostRunner``: mmengine's ``Runner`` that reads checkpoints safely and resumes only from training ones.

What it changes, and nothing else:

* ``load_checkpoint`` (used by ``load_from`` and by ``resume``) reads the file with mmghost's one reader,
  :func:`mmghost.utils.checkpoint_reader.read_checkpoint`: local files, storage backends and model-zoo names
  (``open-mmlab://...``, resolved to torch hub's cache) through a restricted unpickler (tensors, mmengine
  ``HistoryBuffer``, numpy values) instead of ``torch.load``. On torch >= 2.6 mmengine 0.10.7 cannot resume at
  all (``Weights only load failed ... HistoryBuffer``); on torch < 2.6, and for model-zoo names on every torch,
  it unpickles whatever a file contains. ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` reads files unrestricted.
* ``load_or_resume`` with ``resume=True`` and no ``load_from``: the file ``last_checkpoint`` names if it is intact
  and holds a training state, otherwise the newest file named by the checkpoint hook's ``filename_tmpl`` in its
  ``out_dir`` that does (:func:`~mmghost.engine.checkpoint_io.find_resumable_checkpoint`); mmengine takes
  ``last_checkpoint`` blindly and otherwise starts from scratch. In a distributed run only rank 0 searches, and
  every rank resumes from the path it broadcasts (mmengine lets every rank choose for itself, and ranks that see
  different files then resume from different steps). Each rank then reads that path itself; the ranks tell each
  other whether they could, and if one could not (the work dir is not on storage every rank sees), every rank
  stops with a :class:`~mmghost.utils.CheckpointError` naming the ranks, the path and what to do, instead of
  the others training on alone or waiting forever.
* ``train``/``val``/``test`` run inside :func:`~mmghost.engine.low_precision.mmcv_ops_in_float32`: under
  fp16/bf16 autocast mmcv 2.1's NMS/RoIAlign (CPU) and NMS/RoIAlign/sigmoid focal loss (CUDA bf16) would fail.

Use it in a config (registered in mmengine's root ``RUNNERS``, so mmdet's own ``tools/train.py`` finds it
too)::

    runner_type = 'MMGhostRunner'

mmghost's ``tools/train.py`` and ``tools/test.py`` use it for every config that names no other runner.
"""
import os.path as osp

from mmengine.dist import all_gather_object, broadcast_object_list, get_world_size, is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from mmghost.registry import RUNNERS
from mmghost.utils.safe_load import CheckpointError
from .checkpoint_io import find_resumable_checkpoint, load_checkpoint_file
from .low_precision import mmcv_ops_in_float32


@RUNNERS.register_module()
class MMGhostRunner(Runner):
    """mmengine's ``Runner`` with safe checkpoint loading and a resume that only takes training checkpoints.

    Takes exactly ``Runner``'s arguments; see the module docstring for what differs.
    """

    def load_checkpoint(self, filename: str, map_location='cpu', strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]):  # noqa: B006  mmengine's signature
        """mmengine 0.10.7's ``Runner.load_checkpoint``, reading the file with the safe loader."""
        from mmengine.runner.checkpoint import _load_checkpoint_to_model
        checkpoint = load_checkpoint_file(filename, map_location=map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        checkpoint = _load_checkpoint_to_model(model, checkpoint, strict, revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def _checkpoint_files(self):
        """``(filename_tmpl, folder)`` of the checkpoint hook's files, or ``(None, None)`` without one.

        The folder is where ``CheckpointHook.before_train`` (not run yet when resuming) will write: a
        configured ``out_dir`` gets the work dir's name appended.
        """
        hook = next((h for h in self.hooks if isinstance(h, CheckpointHook)), None)
        if hook is None:
            return None, None
        out_dir = hook.out_dir
        if out_dir is None or out_dir == self.work_dir:
            return hook.filename_tmpl, self.work_dir
        return hook.filename_tmpl, osp.join(str(out_dir), osp.basename(self.work_dir.rstrip(osp.sep)))

    def _resumable_checkpoint(self):
        """What ``--resume`` resumes from: :func:`find_resumable_checkpoint` on rank 0, broadcast to every rank.

        Each rank searching for itself can pick different files (one sees a checkpoint or ``last_checkpoint`` the
        others do not yet), and ranks that resume from different steps run out of step. Without a process group
        the broadcast does nothing. An error on rank 0 is broadcast too, so that the other ranks fail with it
        instead of waiting for a choice that never comes.
        """
        choice, error = [None, None], None  # choice: [path or None, rank 0's error as text]
        if is_main_process():
            try:
                choice[0] = find_resumable_checkpoint(self.work_dir, *self._checkpoint_files())
            except Exception as e:  # noqa: BLE001  re-raised below, after the other ranks got it
                choice[1] = f'{type(e).__name__}: {e}'
                error = e
        broadcast_object_list(choice, src=0)
        if choice[1] is not None:
            if error is not None:
                raise error
            raise RuntimeError(f'rank 0 could not choose a checkpoint to resume from: {choice[1]}')
        return choice[0]

    def _resume_on_every_rank(self, filename: str, chosen_by_rank_0: bool) -> None:
        """``resume(filename)`` on this rank; in a distributed run the ranks then exchange whether they could read
        the file (``all_gather_object``), and if any could not, every rank raises one
        :class:`~mmghost.utils.CheckpointError` that names the ranks, the path and what to do. Without a
        process group this is ``resume(filename)``."""
        error = None
        try:
            self.resume(filename)
        except CheckpointError as e:
            if get_world_size() == 1:
                raise
            error = e
        if get_world_size() == 1:
            return
        errors = all_gather_object(None if error is None else str(error))
        failed = [(rank, text) for rank, text in enumerate(errors) if text is not None]
        if not failed:
            return
        ranks = ', '.join(str(rank) for rank, _ in failed)
        whose = 'rank 0 chose to resume from' if chosen_by_rank_0 else 'load_from names for resuming'
        raise CheckpointError(
            f'rank {ranks} cannot read {filename}, the checkpoint {whose} ({failed[0][1]}): every rank reads it at '
            'that same path, so put the work dir on storage all ranks and nodes share (or copy the file to that '
            'path on every node), or resume with an explicit path every rank can read (--resume PATH)')

    def load_or_resume(self) -> None:
        """mmengine's method with :meth:`_resumable_checkpoint` instead of ``find_latest_checkpoint``."""
        if self._has_loaded:
            return None
        resume_from = None
        if self._resume and self._load_from is None:
            resume_from = self._resumable_checkpoint()
            self.logger.info(f'Auto resumed from the latest checkpoint {resume_from}.')
        elif self._resume and self._load_from is not None:
            resume_from = self._load_from
        if resume_from is not None:
            self._resume_on_every_rank(resume_from, chosen_by_rank_0=self._load_from is None)
            self._has_loaded = True
        elif self._load_from is not None:
            self.load_checkpoint(self._load_from)
            self._has_loaded = True

    def train(self):
        with mmcv_ops_in_float32():
            return super().train()

    def val(self):
        with mmcv_ops_in_float32():
            return super().val()

    def test(self):
        with mmcv_ops_in_float32():
            return super().test()
