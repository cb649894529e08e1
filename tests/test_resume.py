"""Safe checkpoint loading (restricted unpickler), atomic checkpoints (AtomicCheckpointHook) and the resume
fallback to intact training checkpoints (MMGhostRunner), on both torch stacks; all of it opt-in."""
import os
import os.path as osp
import subprocess
import sys
import threading
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fixtures.ports import free_port
from mmghost.engine import AtomicCheckpointHook, MMGhostRunner, find_resumable_checkpoint, load_checkpoint_file
from mmghost.engine import checkpoint_io as cio
from mmghost.utils import CheckpointError, safe_torch_load
from mmghost.utils.safe_load import allowed_globals

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY_TRAINING = osp.join(ROOT, 'tests', 'fixtures', 'toy_training.py')
needs_safe_globals_api = pytest.mark.skipif(
    not hasattr(torch.serialization, 'add_safe_globals'),
    reason=f'torch {torch.__version__} has no torch.serialization.add_safe_globals (added in 2.4)')


def mmengine_like_checkpoint(step=8):
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
    return dict(meta=dict(epoch=1, iter=step, seed=0, dataset_meta=dict(classes=('a', 'b'), palette=[(1, 2, 3)])),
                state_dict=OrderedDict(model.state_dict()), message_hub=hub.state_dict(),
                optimizer=opt.state_dict(), param_schedulers=[dict(last_epoch=3, base_values=[0.1])])


@pytest.fixture(scope='module')
def training_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'iter_8.pth'
    torch.save(mmengine_like_checkpoint(), path)
    return path


# ------------------------------------------------------------------------------------------------- loading
@pytest.mark.upstream
def test_training_checkpoint_loads_where_torch_weights_only_refuses_it(training_checkpoint):
    with pytest.raises(Exception, match='Weights only load failed'):  # torch's own safe mode, both stacks
        torch.load(training_checkpoint, weights_only=True)
    ckpt = load_checkpoint_file(str(training_checkpoint))
    assert ckpt['meta']['iter'] == 8
    assert ckpt['message_hub']['log_scalars']['train/loss'].current() == pytest.approx(1 / 3)
    assert isinstance(ckpt['message_hub']['runtime_info']['eta'], np.floating)
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ


@pytest.mark.skipif(not hasattr(torch.serialization, 'get_unsafe_globals_in_checkpoint'),
                    reason=f'torch {torch.__version__} has no get_unsafe_globals_in_checkpoint (added in 2.5)')
def test_allow_list_covers_what_a_training_checkpoint_needs(training_checkpoint):
    needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(training_checkpoint)))
    assert needed <= set(allowed_globals()), needed - set(allowed_globals())
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


class UserType:
    """A class a user allows with torch.serialization.add_safe_globals."""

    def __init__(self, value=0):
        self.value = value


def test_pickle_importing_other_code_is_refused_and_nothing_runs(tmp_path):
    marker = str(tmp_path / 'pwned')
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, payload=_RunsCode(marker)), path)
    for load in (load_checkpoint_file, safe_torch_load):
        with pytest.raises(CheckpointError, match='refused to load .*evil.pth.*Nothing from it was executed'):
            load(str(path))
    assert not osp.exists(marker)


def test_getattr_is_allowed_only_for_history_buffer_statistics(tmp_path):
    path = tmp_path / 'getattr.pth'
    torch.save(dict(x=_Getattr()), path)
    with pytest.raises(CheckpointError, match='refused'):
        load_checkpoint_file(str(path))


def test_missing_and_truncated_checkpoints_are_clear_errors(tmp_path, training_checkpoint):
    path = tmp_path / 'ckpt.pth'
    data = training_checkpoint.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='truncated or not a PyTorch checkpoint'):
        load_checkpoint_file(str(path))
    with pytest.raises(CheckpointError, match='not found'):
        load_checkpoint_file(str(tmp_path / 'nope.pth'))


def test_concurrent_loads_in_threads_never_refuse_a_good_file(training_checkpoint):
    """The old allow-list edited torch's process-wide safe-globals set per load: 205 of 1800 false refusals."""
    failures, done = [], []

    def work():
        for _ in range(60):
            try:
                load_checkpoint_file(str(training_checkpoint))
                done.append(1)
            except Exception as e:  # noqa: BLE001  every failure counts
                failures.append(repr(e))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and len(done) == 360


@needs_safe_globals_api
def test_loading_never_edits_torch_safe_globals(monkeypatch, training_checkpoint):
    from torch import _weights_only_unpickler
    edits = []
    for name in ('_add_safe_globals', '_remove_safe_globals', '_clear_safe_globals'):
        if hasattr(_weights_only_unpickler, name):
            monkeypatch.setattr(_weights_only_unpickler, name, lambda *args, name=name: edits.append(name))
    load_checkpoint_file(str(training_checkpoint))
    assert cio.training_state_problem(str(training_checkpoint)) is None
    assert edits == []


@needs_safe_globals_api
def test_globals_a_user_allowed_survive_our_loads_and_are_honoured(tmp_path, training_checkpoint):
    """Leaving the old safe_globals context removed its entries, also those the user had added himself."""
    from mmengine.logging.history_buffer import HistoryBuffer
    before = list(torch.serialization.get_safe_globals())
    try:
        torch.serialization.add_safe_globals([HistoryBuffer, np.ndarray, UserType])  # common mmengine fixes
        load_checkpoint_file(str(training_checkpoint))
        assert {HistoryBuffer, np.ndarray, UserType} <= set(torch.serialization.get_safe_globals())
        path = tmp_path / 'user_type.pth'
        torch.save(dict(state_dict={}, extra=UserType(3)), path)
        assert load_checkpoint_file(str(path))['extra'].value == 3
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)


def test_torch_force_no_weights_only_load_reads_unrestricted(tmp_path, monkeypatch):
    path = tmp_path / 'user_type.pth'
    torch.save(dict(state_dict={}, extra=UserType(5)), path)
    with pytest.raises(CheckpointError, match='refused'):
        load_checkpoint_file(str(path))
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')  # the user's explicit opt-out, as torch reads it
    assert load_checkpoint_file(str(path))['extra'].value == 5


# -------------------------------------------------------------------------------------------------- saving
def test_failed_save_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    path = str(tmp_path / 'iter_4.pth')
    cio.atomic_torch_save(dict(a=torch.ones(2)), path)
    with pytest.raises(Exception):
        cio.atomic_torch_save(dict(a=torch.zeros(2), bad=lambda: 0), path)  # lambdas do not pickle
    assert torch.equal(safe_torch_load(path)['a'], torch.ones(2))
    assert os.listdir(tmp_path) == ['iter_4.pth']
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # as open(path, 'wb') would make it


class _FakeRunner:
    """What CheckpointHook touches; save_checkpoint writes in place, as mmengine's does."""

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
        torch.save(dict(meta=dict(iter=self.iter + 1)), osp.join(out_dir, filename))


def test_checkpoint_hook_saves_atomically_then_publishes_then_deletes(tmp_path, monkeypatch):
    runner = _FakeRunner(tmp_path)
    (tmp_path / '.iter_9.pth.123.mmghost-tmp').write_bytes(b'partial')  # left by a killed save
    hook = AtomicCheckpointHook(interval=1, by_epoch=False, max_keep_ckpts=1)
    hook.before_train(runner)
    assert not (tmp_path / '.iter_9.pth.123.mmghost-tmp').exists()
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(os, 'replace', lambda src, dst: replaced.append((src, dst)) or real_replace(src, dst))
    for it in range(3):
        runner.iter = it
        hook._save_checkpoint(runner)
    # the checkpoint was written under a temp name and moved into place
    assert runner.saves[1][0] == f'.iter_2.pth.{os.getpid()}.mmghost-tmp'
    assert (osp.basename(replaced[2][0]), replaced[2][1]) == (runner.saves[1][0], str(tmp_path / 'iter_2.pth'))
    # while iter_2.pth was being written, iter_1.pth (the one last_checkpoint named) still existed
    assert runner.saves[1][1:] == (['iter_1.pth', 'last_checkpoint'], str(tmp_path / 'iter_1.pth'))
    assert sorted(os.listdir(tmp_path)) == ['iter_3.pth', 'last_checkpoint']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_3.pth')


@pytest.mark.upstream
def test_plain_checkpoint_hook_deletes_before_saving(tmp_path):
    """What mmengine 0.10.7 does, and why the hook above exists (a kill while saving iter_2 leaves nothing)."""
    from mmengine.hooks import CheckpointHook
    runner = _FakeRunner(tmp_path)
    hook = CheckpointHook(interval=1, by_epoch=False, max_keep_ckpts=1)
    hook.before_train(runner)
    for it in range(2):
        runner.iter = it
        hook._save_checkpoint(runner)
    assert runner.saves[1] == ('iter_2.pth', ['last_checkpoint'], str(tmp_path / 'iter_1.pth'))


def test_previous_best_checkpoint_is_deleted_only_after_the_new_best_is_saved(tmp_path):
    runner = _FakeRunner(tmp_path)
    hook = AtomicCheckpointHook(interval=100, by_epoch=False, save_best='acc', rule='greater')
    hook.before_train(runner)
    for it, acc in ((3, 0.5), (6, 0.7)):
        runner.iter = it
        hook._save_best_checkpoint(runner, dict(acc=acc))
    assert runner.saves[1][0].startswith('.best_acc_iter_6.pth.') and 'best_acc_iter_3.pth' in runner.saves[1][1]
    assert sorted(os.listdir(tmp_path)) == ['best_acc_iter_6.pth']


def test_published_checkpoint_is_read_safely_and_written_atomically(tmp_path, training_checkpoint):
    """mmengine's _publish_model reads with a bare torch.load (refused on torch >= 2.6, unrestricted before)."""
    import shutil
    runner = _FakeRunner(tmp_path)
    ckpt = str(tmp_path / 'iter_8.pth')
    shutil.copy(training_checkpoint, ckpt)
    hook = AtomicCheckpointHook(interval=1, by_epoch=False, published_keys=['meta', 'state_dict'])
    hook.before_train(runner)
    hook.last_ckpt = ckpt
    hook.after_train(runner)
    published = [f for f in os.listdir(tmp_path) if f.startswith('iter_8-')]
    assert len(published) == 1 and not [f for f in os.listdir(tmp_path) if f.endswith(cio.TMP_SUFFIX)]
    assert set(safe_torch_load(str(tmp_path / published[0]))) == {'meta', 'state_dict'}


def _strategy(name, **attributes):
    """An mmengine strategy object as FlexibleRunner holds it (not set up: deepspeed/colossalai are absent)."""
    import mmengine._strategy as strategies
    strategy = object.__new__(getattr(strategies, name))
    strategy.__dict__.update(attributes)
    return strategy


@pytest.mark.parametrize('strategy', ['DeepSpeedStrategy', 'ColossalAIStrategy', 'FSDPStrategy-local'])
def test_checkpoint_folders_are_refused_before_training_with_one_clear_message(tmp_path, strategy):
    """FlexibleRunner's DeepSpeed/ColossalAI strategies (and FSDP without a full state dict) save each checkpoint
    as a folder that every rank writes into: the hook refuses them before training instead of breaking mid-run."""
    if strategy == 'FSDPStrategy-local':
        fsdp = pytest.importorskip('torch.distributed.fsdp', reason='no FSDP in this torch build')
        import mmengine._strategy as strategies
        if not hasattr(strategies, 'FSDPStrategy'):
            pytest.skip(f'mmengine has no FSDPStrategy with torch {torch.__version__}')
        strategy_obj = _strategy('FSDPStrategy', state_dict_type=fsdp.StateDictType.LOCAL_STATE_DICT)
        name = 'FSDPStrategy'
    else:
        strategy_obj, name = _strategy(strategy), strategy
    runner = _FakeRunner(tmp_path)
    runner.strategy = strategy_obj
    hook = AtomicCheckpointHook(interval=1, by_epoch=False)
    with pytest.raises(ValueError, match=f'AtomicCheckpointHook.*{name}.*folder.*CheckpointHook') as error:
        hook.before_train(runner)
    assert '\n' not in str(error.value)
    assert runner.saves == []


def test_flexible_runner_with_a_one_file_strategy_saves_atomically(tmp_path, monkeypatch):
    """FlexibleRunner's default strategy writes one file from the main process: the hook takes it, saving under a
    temp name and renaming."""
    from mmengine.runner import FlexibleRunner
    from fixtures.toy_training import toy_runner_args
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(os, 'replace', lambda src, dst: renamed.append(osp.basename(dst)) or real_replace(src, dst))
    FlexibleRunner(**toy_runner_args(tmp_path, max_iters=4, interval=2)).train()
    assert renamed == ['iter_2.pth', 'last_checkpoint', 'iter_4.pth', 'last_checkpoint']
    assert cio.training_state_problem(str(tmp_path / 'iter_4.pth')) is None and _temp_files(tmp_path) == []


def test_a_runner_that_saves_a_folder_is_stopped_at_its_first_save(tmp_path):
    """A runner the check above does not know, saving a folder: stopped with a clear error, nothing renamed."""
    runner = _FakeRunner(tmp_path)
    runner.save_checkpoint = lambda out_dir, filename, *args, **kwargs: os.makedirs(osp.join(out_dir, filename))
    hook = AtomicCheckpointHook(interval=1, by_epoch=False)
    hook.before_train(runner)
    with pytest.raises(ValueError, match='saved the checkpoint .* as a folder'):
        hook._save_checkpoint(runner)
    assert not (tmp_path / 'iter_1.pth').exists() and not (tmp_path / 'last_checkpoint').exists()


def test_user_default_hooks_on_top_of_our_config_keep_the_atomic_hook(tmp_path):
    from mmengine.config import Config
    cfg_file = tmp_path / 'user.py'
    cfg_file.write_text(f"_base_ = {osp.join(ROOT, 'configs', 'retinanet_ghostnet_fpn.py')!r}\n"
                        "default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=3))\n")
    cfg = Config.fromfile(str(cfg_file))
    checkpoint = {k: v for k, v in cfg.default_hooks.checkpoint.items() if k != '_scope_'}
    assert checkpoint == dict(type='AtomicCheckpointHook', interval=2, max_keep_ckpts=3)
    assert cfg.default_hooks.data_problems.type == 'DataProblemsHook'
    assert cfg.runner_type == 'MMGhostRunner'


# ------------------------------------------------------------------------------------------------- resuming
def _ckpts(folder, *steps, training=True, tmpl='iter_{}.pth'):
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, step in enumerate(steps):
        p = osp.join(folder, tmpl.format(step))
        state = dict(meta=dict(iter=step), state_dict=dict(w=torch.randn(1000)))
        if training:
            state['message_hub'] = dict(log_scalars={}, runtime_info={}, resumed_keys={})
        torch.save(state, p)
        os.utime(p, (1000 + i, 1000 + i))
        paths.append(p)
    return paths


def test_resume_uses_last_checkpoint_when_intact(tmp_path, logged_warnings):
    a, b = _ckpts(tmp_path, 4, 8)
    (tmp_path / 'last_checkpoint').write_text(a)
    assert find_resumable_checkpoint(str(tmp_path), 'iter_{}.pth') == a  # last_checkpoint is the truth
    assert logged_warnings == []


def test_damaged_last_checkpoint_falls_back_to_newest_intact(tmp_path, logged_warnings):
    a, b, c = _ckpts(tmp_path, 4, 8, 12)
    data = open(c, 'rb').read()
    open(c, 'wb').write(data[:len(data) - 100])  # truncated
    (tmp_path / 'last_checkpoint').write_text(c)
    assert find_resumable_checkpoint(str(tmp_path), 'iter_{}.pth') == b
    assert any('iter_12.pth, which cannot be resumed from' in line and 'iter_8.pth instead' in line
               for line in logged_warnings)


def test_flipped_byte_is_detected(tmp_path):
    (a,) = _ckpts(tmp_path, 4)
    data = bytearray(open(a, 'rb').read())
    data[len(data) // 2] ^= 0xFF
    open(a, 'wb').write(bytes(data))
    assert 'corrupt' in cio.checkpoint_problem(a)


def test_missing_or_empty_last_checkpoint_falls_back(tmp_path, logged_warnings):
    a, b = _ckpts(tmp_path, 4, 8)
    assert find_resumable_checkpoint(str(tmp_path), 'iter_{}.pth') == b  # killed before last_checkpoint
    (tmp_path / 'last_checkpoint').write_text('')
    assert find_resumable_checkpoint(str(tmp_path), 'iter_{}.pth') == b
    assert len(logged_warnings) == 2


def test_fallback_takes_only_training_checkpoints_named_by_the_template(tmp_path, logged_warnings):
    """A converted weights file (newest *.pth) or a weights-only file named like a checkpoint is never taken."""
    (good,) = _ckpts(tmp_path, 4)
    _ckpts(tmp_path, 8, training=False)  # iter_8.pth: weights only
    torch.save(dict(state_dict=dict(w=torch.ones(3)), meta=dict(converted_by='convert_weights')),
               tmp_path / 'ghostnet_converted.pth')  # newest file of all
    torch.save(dict(meta={}, state_dict={}, message_hub={}), tmp_path / 'best_acc_iter_9.pth')
    assert find_resumable_checkpoint(str(tmp_path), 'iter_{}.pth') == good
    assert any('iter_8.pth: not a training checkpoint (no message_hub)' in line for line in logged_warnings)
    assert cio.training_state_problem(str(tmp_path / 'ghostnet_converted.pth')).startswith('not a training')


def test_fallback_honours_a_format_template_and_the_hooks_out_dir(tmp_path):
    work = tmp_path / 'work' / 'run1'
    out = tmp_path / 'out'
    a, b = _ckpts(out / 'run1', 3, 12, tmpl='ckpt_{:04d}.pth')
    _ckpts(work, 20)  # iter_20.pth in the work dir: another template, not this hook's
    hook = AtomicCheckpointHook(interval=1, out_dir=str(out), filename_tmpl='ckpt_{:04d}.pth')
    runner = SimpleNamespace(hooks=[hook], work_dir=str(work))
    tmpl, folder = MMGhostRunner._checkpoint_files(runner)
    assert (tmpl, folder) == ('ckpt_{:04d}.pth', str(out / 'run1'))  # as CheckpointHook.before_train will
    assert find_resumable_checkpoint(str(work), tmpl, folder) == b


def test_no_resumable_checkpoint_starts_from_scratch_and_says_so(tmp_path, logged_warnings):
    assert find_resumable_checkpoint(str(tmp_path), 'iter_{}.pth') is None and logged_warnings == []
    (tmp_path / 'iter_4.pth').write_bytes(b'PK\x03\x04 truncated')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    assert find_resumable_checkpoint(str(tmp_path), 'iter_{}.pth') is None
    assert any('training starts from scratch' in line for line in logged_warnings)


def test_training_state_check_runs_nothing_from_the_file(tmp_path):
    marker = str(tmp_path / 'pwned')
    path = tmp_path / 'iter_4.pth'
    torch.save(dict(meta={}, state_dict={}, message_hub=_RunsCode(marker)), path)
    assert 'Unsupported global: GLOBAL posix.mkdir' in cio.training_state_problem(str(path))
    assert not osp.exists(marker)


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_resume_after_a_normal_epoch_run_with_validation(tmp_path):
    """Train 2 epochs (with COCO validation), then `--resume` to 3 epochs, with last_checkpoint gone and a
    converted weights file as the newest .pth in the work dir."""
    from fixtures.tiny_config import make_dataset, tiny_config_text
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
    os.remove(work / 'last_checkpoint')
    torch.save(dict(state_dict=safe_torch_load(work / 'epoch_2.pth')['state_dict']), work / 'converted.pth')
    second = subprocess.run(cmd + ['--resume', '--cfg-options', 'train_cfg.max_epochs=3'], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-4000:]
    assert 'Weights only load failed' not in out
    assert 'resuming from the newest training checkpoint' in out and 'resumed epoch: 2' in out
    assert sorted(p for p in os.listdir(work) if p.endswith('.pth')) == ['converted.pth', 'epoch_3.pth']
    assert safe_torch_load(work / 'epoch_3.pth')['meta']['epoch'] == 3


def _child_env():
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    return env


def _temp_files(folder):
    return sorted(p for p in os.listdir(folder) if p.endswith(cio.TMP_SUFFIX))


def test_exit_inside_a_save_keeps_the_previous_checkpoint_and_resume_ignores_the_temp_file(tmp_path):
    """A child trains the toy model to 12 iterations (checkpoint every 4, max_keep_ckpts=1) and ends (os._exit)
    after iter_8.pth's temp file is written and before its rename; the resumed run starts from iter_4.pth,
    removes the temp file and runs iterations 5..12 once each."""
    from fixtures.injected_exit import EXIT_CODE
    from fixtures.toy_training import RecordProgress, toy_runner
    work = tmp_path / 'work'
    child = subprocess.run([sys.executable, TOY_TRAINING, str(work), '--max-iters', '12', '--interval', '4',
                            '--max-keep-ckpts', '1', '--exit-before-replacing', 'iter_8.pth'],
                           cwd=ROOT, env=_child_env(), capture_output=True, text=True, timeout=300)
    # evidence that the process ended inside the save of iter_8.pth: its complete temp file is there, the file
    # itself is not, and iter_4.pth (which max_keep_ckpts=1 deletes once iter_8.pth is saved) is intact
    assert child.returncode == EXIT_CODE, child.stdout[-2000:] + child.stderr[-4000:]
    (temp, ) = _temp_files(work)
    assert temp.startswith('.iter_8.pth.')
    assert cio.training_state_problem(str(work / temp)) is None
    assert safe_torch_load(work / temp)['meta']['iter'] == 8
    assert sorted(p for p in os.listdir(work) if p.endswith('.pth')) == ['iter_4.pth']
    assert cio.training_state_problem(str(work / 'iter_4.pth')) is None
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_4.pth')

    runner = toy_runner(work, max_iters=12, interval=4, resume=True, max_keep_ckpts=1)
    runner.train()
    progress = next(h for h in runner.hooks if isinstance(h, RecordProgress))
    assert runner.resumed_from == str(work / 'iter_4.pth')
    assert (progress.start_iter, progress.iters) == (4, list(range(5, 13)))
    assert _temp_files(work) == []
    assert sorted(p for p in os.listdir(work) if p.endswith('.pth')) == ['iter_12.pth']
    assert safe_torch_load(work / 'iter_12.pth')['meta']['iter'] == 12


@pytest.mark.slow
def test_crash_resume_benchmark_kills_resume_and_finish_through_tools_train(tmp_path):
    """benchmarks/crash_resume.py --runs 2 on the demo detector: a SIGKILL at a random moment, then an exit
    injected inside a checkpoint save; each run resumed with tools/train.py --resume and finished."""
    import json
    results = tmp_path / 'results.json'
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'benchmarks', 'crash_resume.py'), '--runs', '2',
                           '--max-iters', '12', '--interval', '4', '--seed', '1', '--work-dir',
                           str(tmp_path / 'crash'), '--json', str(results)],
                          cwd=ROOT, env=_child_env(), capture_output=True, text=True, timeout=900)
    runs = json.loads(results.read_text()) if results.exists() else []
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:], [r['errors'] for r in runs])
    assert [r['kind'] for r in runs] == ['random-kill', 'exit-in-save']
    assert all(r['ok'] and r['lost_iters'] <= 4 for r in runs)
    in_save = runs[1]
    # the evidence the driver collected from the files after the child ended, not the driver's intention
    assert in_save['target'] == 8 and in_save['killed_in_save'] and in_save['temp_files_at_kill'] == 1
    assert in_save['target_absent_at_kill'] and in_save['previous_problem_at_kill'] is None  # iter_4.pth intact
    assert in_save['resumed_from'] == 4


# --------------------------------------------------------------------------------------- distributed resume
@pytest.mark.slow
def test_ranks_that_see_different_checkpoints_resume_from_the_one_rank_0_chose(tmp_path):
    """torchrun, 2 CPU processes (gloo), each with its own view of the checkpoints: rank 1 also sees a newer
    iter_12.pth that last_checkpoint names; both resume from rank 0's choice, iter_8.pth."""
    from fixtures.toy_training import parse_results, toy_runner
    source = tmp_path / 'train'
    toy_runner(source, max_iters=12, interval=4).train()  # iter_4, iter_8, iter_12
    views = [tmp_path / 'rank0', tmp_path / 'rank1']
    for view, steps in zip(views, ((4, 8), (4, 8, 12))):
        view.mkdir()
        for step in steps:
            (view / f'iter_{step}.pth').symlink_to(source / f'iter_{step}.pth')
        (view / 'last_checkpoint').write_text(str(view / f'iter_{steps[-1]}.pth'))
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port',
                           str(free_port()), TOY_TRAINING, str(tmp_path / 'rank{rank}'), '--resume',
                           '--launcher', 'pytorch', '--stop-after-resume'],
                          cwd=ROOT, env=_child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    results = parse_results(proc.stdout)
    assert [r['rank'] for r in results] == [0, 1], proc.stdout[-3000:]
    assert [(r['resumed_from'], r['start_iter']) for r in results] == [(str(views[0] / 'iter_8.pth'), 8)] * 2


@pytest.mark.slow
def test_a_rank_that_cannot_read_rank_0s_choice_stops_every_rank_naming_itself_the_path_and_what_to_do(tmp_path):
    """torchrun, 2 CPU processes (gloo), each in its own folder: last_checkpoint names ``iter_8.pth`` relative to
    rank 0's folder, which rank 1's folder lacks (a node-local path). Rank 0 chooses it; rank 1 cannot read it;
    both stop with one error instead of rank 0 training alone or waiting."""
    from fixtures.toy_training import toy_runner
    toy_runner(tmp_path / 'rank0', max_iters=8, interval=4).train()  # rank 0's iter_4.pth, iter_8.pth
    (tmp_path / 'rank0' / 'last_checkpoint').write_text('iter_8.pth')
    (tmp_path / 'rank1').mkdir()
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port',
                           str(free_port()), TOY_TRAINING, str(tmp_path / 'rank{rank}'), '--resume',
                           '--launcher', 'pytorch', '--stop-after-resume', '--cwd', str(tmp_path / 'rank{rank}')],
                          cwd=ROOT, env=_child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, proc.stdout[-3000:]
    said = [line for line in proc.stderr.splitlines() if 'CheckpointError: rank 1 cannot read iter_8.pth' in line]
    assert said, proc.stderr[-5000:]
    assert 'the checkpoint rank 0 chose to resume from (checkpoint file not found: iter_8.pth)' in said[0]
    assert 'storage all ranks and nodes share' in said[0]


def test_a_rank_that_cannot_read_the_chosen_checkpoint_stops_every_rank(monkeypatch):
    """The fast twin of the torchrun test above: ranks exchange whether they could read the file; every rank
    raises the same one-line error, the ranks that could read it too."""
    from mmghost.engine import runner as runner_module
    from mmghost.utils import CheckpointError
    monkeypatch.setattr(runner_module, 'get_world_size', lambda: 2)
    outcomes = {0: None, 1: CheckpointError('checkpoint file not found: /node0/iter_8.pth')}
    messages = []
    for rank in (0, 1):

        def resume(filename, rank=rank):
            if outcomes[rank] is not None:
                raise outcomes[rank]

        monkeypatch.setattr(runner_module, 'all_gather_object',
                            lambda mine: [None if e is None else str(e) for e in outcomes.values()])
        with pytest.raises(CheckpointError) as error:
            MMGhostRunner._resume_on_every_rank(SimpleNamespace(resume=resume), '/node0/iter_8.pth',
                                                chosen_by_rank_0=True)
        messages.append(str(error.value))
    assert messages[0] == messages[1] and '\n' not in messages[0]
    assert messages[0].startswith('rank 1 cannot read /node0/iter_8.pth, the checkpoint rank 0 chose to resume from '
                                  '(checkpoint file not found: /node0/iter_8.pth)')
    # one process: the reader's own error, unchanged
    monkeypatch.setattr(runner_module, 'get_world_size', lambda: 1)
    with pytest.raises(CheckpointError, match='^checkpoint file not found'):
        MMGhostRunner._resume_on_every_rank(SimpleNamespace(resume=lambda f: (_ for _ in ()).throw(outcomes[1])),
                                            'x.pth', chosen_by_rank_0=True)


class _Broadcast:
    """``broadcast_object_list`` between the ranks of one process, called rank 0 first: rank 0's list is sent,
    the next caller receives it."""

    def __init__(self):
        self.sent = None

    def __call__(self, data, src=0):
        assert src == 0
        if self.sent is None:
            self.sent = list(data)
        else:
            data[:] = self.sent


def _as_rank(monkeypatch, rank, search):
    from mmghost.engine import runner as runner_module
    monkeypatch.setattr(runner_module, 'find_resumable_checkpoint', search)
    monkeypatch.setattr(runner_module, 'is_main_process', lambda: rank == 0)


def test_only_rank_0_looks_for_the_checkpoint_and_every_rank_takes_its_choice(tmp_path, monkeypatch):
    """The fast twin of the torchrun test above: MMGhostRunner's choice goes through broadcast_object_list
    (which does nothing without a process group) from rank 0, the only rank that searches the files."""
    from mmghost.engine import runner as runner_module
    monkeypatch.setattr(runner_module, 'broadcast_object_list', _Broadcast())
    runner = SimpleNamespace(work_dir=str(tmp_path), _checkpoint_files=lambda: ('iter_{}.pth', str(tmp_path)))
    searches = []
    for rank, sees in ((0, 'iter_8.pth'), (1, 'iter_12.pth')):
        _as_rank(monkeypatch, rank, lambda *args, sees=sees: searches.append(rank) or str(tmp_path / sees))
        assert MMGhostRunner._resumable_checkpoint(runner) == str(tmp_path / 'iter_8.pth')
    assert searches == [0]


def test_an_error_while_rank_0_chooses_stops_every_rank_instead_of_leaving_them_waiting(tmp_path, monkeypatch):
    from mmghost.engine import runner as runner_module
    monkeypatch.setattr(runner_module, 'broadcast_object_list', _Broadcast())
    runner = SimpleNamespace(work_dir=str(tmp_path), _checkpoint_files=lambda: ('iter_{}.pth', str(tmp_path)))

    def search(*args):
        raise PermissionError(13, 'Permission denied')

    for rank, error in ((0, PermissionError), (1, RuntimeError)):
        _as_rank(monkeypatch, rank, search)
        with pytest.raises(error, match='Permission denied'):
            MMGhostRunner._resumable_checkpoint(runner)
