"""Safe resume (weights_only=True + allow-list), atomic checkpoints and the fallback to an intact checkpoint."""
import os
import os.path as osp
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch

import mmghost  # noqa: F401  applies the patches
from mmghost.engine import checkpoint_safety as cs
from mmghost.utils import CheckpointError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def mmengine_like_checkpoint():
    """What mmengine's Runner.save_checkpoint writes: meta, state_dict, message_hub (HistoryBuffers), optimizer."""
    from mmengine.logging import MessageHub
    hub = MessageHub(f'test_resume_{id(object())}')
    for i in range(3):
        hub.update_scalar('train/loss', np.float64(1.0 / (i + 1)))
        hub.update_scalar('train/lr', 0.01)
    hub.update_info('eta', np.float64(12.5))
    hub.update_info('keep_ckpt_ids', [4, 8])
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    return dict(meta=dict(epoch=1, iter=8, seed=0, dataset_meta=dict(classes=('a', 'b'), palette=[(1, 2, 3)])),
                state_dict=OrderedDict(model.state_dict()), message_hub=hub.state_dict(),
                optimizer=opt.state_dict(), param_schedulers=[dict(last_epoch=3, base_values=[0.1])])


def _load(path):
    from mmengine.runner.checkpoint import _load_checkpoint
    return _load_checkpoint(str(path), map_location='cpu')


# ------------------------------------------------------------------------------------------------- loading
def test_mmengine_checkpoint_resumes_with_weights_only(tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save(mmengine_like_checkpoint(), path)
    with pytest.raises(Exception, match='Weights only load failed'):  # what plain torch >= 2.6 does
        torch.load(path, weights_only=True)
    ckpt = _load(path)
    assert ckpt['meta']['iter'] == 8
    assert ckpt['message_hub']['log_scalars']['train/loss'].current() == pytest.approx(1 / 3)
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ


def test_allow_list_covers_exactly_what_the_checkpoint_needs(tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save(mmengine_like_checkpoint(), path)
    needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    allowed = set()
    for item in mmghost.utils.checkpoint_safe_globals():
        allowed.add(item[1] if isinstance(item, tuple) else f'{item.__module__}.{item.__qualname__}')
    assert needed <= allowed, needed - allowed
    assert 'builtins.getattr' in needed  # HistoryBuffer's statistics methods


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


class _Getattr:
    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer
        return (getattr, (HistoryBuffer, '__init__'))


def test_pickle_importing_other_code_is_refused_and_nothing_runs(tmp_path):
    marker = str(tmp_path / 'pwned')
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, payload=_RunsCode(marker)), path)
    with pytest.raises(CheckpointError, match='refused to load .*evil.pth.*Nothing from it was executed'):
        _load(path)
    assert not osp.exists(marker)


def test_getattr_is_allowed_only_for_history_buffer_statistics(tmp_path):
    path = tmp_path / 'getattr.pth'
    torch.save(dict(x=_Getattr()), path)
    with pytest.raises(CheckpointError, match='refused'):
        _load(path)


def test_missing_and_truncated_checkpoints_are_clear_errors(tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save(mmengine_like_checkpoint(), path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='truncated or not a PyTorch checkpoint'):
        _load(path)
    with pytest.raises(FileNotFoundError):
        _load(tmp_path / 'nope.pth')


def test_patches_are_applied_once():
    from mmengine.hooks import CheckpointHook
    from mmengine.runner import checkpoint as ckpt_mod
    before = (ckpt_mod.save_checkpoint, ckpt_mod.CheckpointLoader.load_checkpoint,
              CheckpointHook.before_train, CheckpointHook._save_best_checkpoint)
    assert cs.is_applied()
    assert cs.apply() is False
    import importlib
    importlib.reload(mmghost.engine)  # importing again must not wrap twice
    assert (ckpt_mod.save_checkpoint, ckpt_mod.CheckpointLoader.load_checkpoint, CheckpointHook.before_train,
            CheckpointHook._save_best_checkpoint) == before
    assert ckpt_mod.find_latest_checkpoint is cs.find_latest_checkpoint


# -------------------------------------------------------------------------------------------------- saving
def test_failed_save_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    from mmengine.runner.checkpoint import save_checkpoint
    path = str(tmp_path / 'iter_4.pth')
    save_checkpoint(dict(a=torch.ones(2)), path)
    with pytest.raises(Exception):
        save_checkpoint(dict(a=torch.zeros(2), bad=lambda: 0), path)  # lambdas do not pickle
    assert torch.equal(_load(path)['a'], torch.ones(2))
    assert os.listdir(tmp_path) == ['iter_4.pth']
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # as open(path, 'wb') would make it


def test_save_is_atomic_replace(tmp_path, monkeypatch):
    """The final name only ever appears complete: os.replace of a fsynced temp file in the same folder."""
    from mmengine.runner.checkpoint import save_checkpoint
    calls = []
    real_replace, real_fsync = os.replace, os.fsync
    monkeypatch.setattr(os, 'fsync', lambda fd: calls.append('fsync') or real_fsync(fd))

    def replace(src, dst):
        calls.append('replace')
        assert osp.dirname(src) == osp.dirname(dst) and src.endswith(cs.TMP_SUFFIX)
        assert not osp.exists(dst) and cs.checkpoint_problem(src) is None
        real_replace(src, dst)

    monkeypatch.setattr(os, 'replace', replace)
    save_checkpoint(dict(a=torch.ones(2)), str(tmp_path / 'x.pth'))
    assert calls[:2] == ['fsync', 'replace']


class _FakeRunner:
    """Just what CheckpointHook touches."""

    def __init__(self, work_dir):
        from mmengine.logging import MessageHub, MMLogger
        self.work_dir = str(work_dir)
        self.message_hub = MessageHub(f'fake_{id(self)}')
        self.logger = MMLogger.get_instance(f'fake_{id(self)}')
        self.iter, self.epoch = 0, 0
        self.saves = []

    def save_checkpoint(self, out_dir, filename, *args, **kwargs):
        files = sorted(os.listdir(out_dir))
        last = open(osp.join(self.work_dir, 'last_checkpoint')).read() if 'last_checkpoint' in files else None
        self.saves.append((filename, files, last))
        from mmengine.runner.checkpoint import save_checkpoint
        save_checkpoint(dict(meta=dict(iter=self.iter + 1)), osp.join(out_dir, filename))


def test_checkpoint_hook_deletes_old_and_updates_last_checkpoint_only_after_saving(tmp_path):
    from mmengine.hooks import CheckpointHook
    runner = _FakeRunner(tmp_path)
    (tmp_path / '.iter_9.pth.abc.mmghost-tmp').write_bytes(b'partial')  # left by a killed save
    hook = CheckpointHook(interval=1, by_epoch=False, max_keep_ckpts=1)
    hook.before_train(runner)
    assert not (tmp_path / '.iter_9.pth.abc.mmghost-tmp').exists()
    for it in range(3):
        runner.iter = it
        hook._save_checkpoint(runner)
    # while iter_2.pth was being written, iter_1.pth (the one last_checkpoint named) still existed
    assert runner.saves[1] == ('iter_2.pth', ['iter_1.pth', 'last_checkpoint'], str(tmp_path / 'iter_1.pth'))
    assert runner.saves[2][1] == ['iter_2.pth', 'last_checkpoint']
    assert sorted(os.listdir(tmp_path)) == ['iter_3.pth', 'last_checkpoint']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_3.pth')


def test_previous_best_checkpoint_is_deleted_only_after_the_new_best_is_saved(tmp_path):
    from mmengine.hooks import CheckpointHook
    runner = _FakeRunner(tmp_path)
    hook = CheckpointHook(interval=100, by_epoch=False, save_best='acc', rule='greater')
    hook.before_train(runner)
    for it, acc in ((3, 0.5), (6, 0.7)):
        runner.iter = it
        hook._save_best_checkpoint(runner, dict(acc=acc))
    assert runner.saves[1][0] == 'best_acc_iter_6.pth' and 'best_acc_iter_3.pth' in runner.saves[1][1]
    assert sorted(os.listdir(tmp_path)) == ['best_acc_iter_6.pth']


# ------------------------------------------------------------------------------------------------- resuming
def _ckpts(tmp_path, *steps):
    from mmengine.runner.checkpoint import save_checkpoint
    for i, step in enumerate(steps):
        p = tmp_path / f'iter_{step}.pth'
        save_checkpoint(dict(meta=dict(iter=step), w=torch.randn(1000)), str(p))
        os.utime(p, (1000 + i, 1000 + i))
    return [str(tmp_path / f'iter_{s}.pth') for s in steps]


def test_resume_uses_last_checkpoint_when_intact(tmp_path, logged_warnings):
    from mmengine.runner.runner import find_latest_checkpoint
    a, b = _ckpts(tmp_path, 4, 8)
    (tmp_path / 'last_checkpoint').write_text(a)
    assert find_latest_checkpoint(str(tmp_path)) == a  # last_checkpoint is the truth when intact
    assert logged_warnings == []


def test_damaged_last_checkpoint_falls_back_to_newest_intact(tmp_path, logged_warnings):
    from mmengine.runner.runner import find_latest_checkpoint
    a, b, c = _ckpts(tmp_path, 4, 8, 12)
    data = open(c, 'rb').read()
    open(c, 'wb').write(data[:len(data) - 100])  # truncated
    (tmp_path / 'last_checkpoint').write_text(c)
    assert find_latest_checkpoint(str(tmp_path)) == b
    assert any('iter_12.pth, which is damaged' in line and 'resuming from the newest intact checkpoint' in line
               and 'iter_8.pth' in line for line in logged_warnings)


def test_flipped_byte_is_detected(tmp_path):
    (a,) = _ckpts(tmp_path, 4)
    data = bytearray(open(a, 'rb').read())
    data[len(data) // 2] ^= 0xFF
    open(a, 'wb').write(bytes(data))
    assert 'corrupt' in cs.checkpoint_problem(a)


def test_missing_or_empty_last_checkpoint_falls_back(tmp_path, logged_warnings):
    from mmengine.runner.runner import find_latest_checkpoint
    a, b = _ckpts(tmp_path, 4, 8)
    assert find_latest_checkpoint(str(tmp_path)) == b  # killed between the save and last_checkpoint
    (tmp_path / 'last_checkpoint').write_text('')
    assert find_latest_checkpoint(str(tmp_path)) == b
    assert len(logged_warnings) == 2


def test_no_intact_checkpoint_starts_from_scratch_and_says_so(tmp_path, logged_warnings):
    from mmengine.runner.runner import find_latest_checkpoint
    assert find_latest_checkpoint(str(tmp_path)) is None and logged_warnings == []
    (tmp_path / 'iter_4.pth').write_bytes(b'PK\x03\x04 truncated')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    assert find_latest_checkpoint(str(tmp_path)) is None
    assert any('training starts from scratch' in line for line in logged_warnings)


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_resume_after_a_normal_epoch_run_with_validation(tmp_path):
    """The issue's failure: train 2 epochs (with COCO validation), then `--resume` to 3 epochs."""
    from benchmarks.crash_resume import make_dataset
    from benchmarks.tiny_config import tiny_config_text
    data = make_dataset(str(tmp_path / 'data'), images=8, size=96)
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(tiny_config_text(data, epochs=2, size=96, batch_size=4, val_batch_size=2, max_keep_ckpts=1,
                                    warmup_iters=4))
    work = tmp_path / 'work'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    cmd = [sys.executable, osp.join(ROOT, 'tools/train.py'), str(cfg), '--work-dir', str(work)]
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    ckpt = work / 'epoch_2.pth'
    needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(ckpt)))
    assert needed <= {'mmengine.logging.history_buffer.HistoryBuffer', 'builtins.getattr', 'numpy.dtype',
                      'numpy.ndarray', 'numpy.core.multiarray._reconstruct', 'numpy.core.multiarray.scalar',
                      'numpy._core.multiarray._reconstruct', 'numpy._core.multiarray.scalar'} | {
        f'numpy.dtypes.{t}' for t in ('Float64DType', 'Float32DType', 'Int64DType', 'Int32DType', 'BoolDType')}
    second = subprocess.run(cmd + ['--resume', '--cfg-options', 'train_cfg.max_epochs=3'], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-4000:]
    assert 'Weights only load failed' not in out
    assert 'resumed epoch: 2' in out
    assert sorted(p for p in os.listdir(work) if p.endswith('.pth')) == ['epoch_3.pth']
    assert _load(work / 'epoch_3.pth')['meta']['epoch'] == 3


@pytest.mark.slow
def test_crash_kill_resume_finishes(tmp_path):
    """benchmarks/crash_resume.py with N=3 (one random kill, one aimed into a save, one random)."""
    from benchmarks.crash_resume import main
    results = tmp_path / 'results.json'
    rc = main(['--runs', '3', '--max-iters', '16', '--interval', '4', '--seed', '1',
               '--work-dir', str(tmp_path / 'crash'), '--json', str(results)])
    import json
    runs = json.loads(results.read_text())
    assert rc == 0, [r['errors'] for r in runs]
    assert all(r['ok'] and r['lost_iters'] <= 4 for r in runs)
    assert any(r['mid_save'] for r in runs)
