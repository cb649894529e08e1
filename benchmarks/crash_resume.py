"""Crash test: end training at a random moment or inside a checkpoint save, resume, finish; repeat N times.

    .venv/bin/python benchmarks/crash_resume.py --runs 20 [--max-iters 24] [--interval 4] [--seed 0]

Each run trains the demo config (RetinaNet + GhostNet-1.0x) on a tiny shapes dataset with an iteration-based
loop and a checkpoint every ``--interval`` iterations (``max_keep_ckpts=2``), through ``tools/train.py``:

1. start training and end it, alternating between two kinds of runs:
   * ``random-kill``: SIGKILL after a random iteration (+ a random fraction of an iteration);
   * ``exit-in-save``: the child ends itself (``os._exit``) inside the save of a random checkpoint other than
     the first and the last (where there are 3 or more), after its temp file is written and before the rename
     (tests/fixtures/injected_exit.py wraps ``os.replace`` in the child; mmghost has no switch for it). That it
     ended there is read from the exit code and the files: the checkpoint's temp file present, the checkpoint
     itself absent, the previous one intact;
2. ``tools/train.py ... --resume`` in the same work dir, to the end;
3. check: the resumed run exits 0; it started from a checkpoint boundary at most one interval behind the last
   iteration finished before the kill (after an exit in a save: exactly the previous checkpoint); every iteration
   after it ran once, in order, up to ``max_iters``; the final checkpoint is intact, loads with the restricted
   unpickler and says ``iter == max_iters``; no temp file is left.

Exit status 0 when every run succeeded. A line per run and a summary go to stdout.
"""
import argparse
import glob
import json
import os
import os.path as osp
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
for _path in (ROOT, osp.join(ROOT, 'tests')):  # mmghost from the repo root; the tiny training setup from tests/
    if _path not in sys.path:
        sys.path.insert(0, _path)
from fixtures.injected_exit import EXIT_CODE  # noqa: E402
from fixtures.tiny_config import make_dataset, tiny_config_text  # noqa: E402

PROGRESS_FILE = 'crash_progress.txt'
INJECTED_EXIT = osp.join(ROOT, 'tests', 'fixtures', 'injected_exit.py')
KINDS = ('random-kill', 'exit-in-save')

# ------------------------------------------------------------------------- the hook the trained config loads
try:
    from mmengine.hooks import Hook
    from mmghost.registry import HOOKS

    @HOOKS.register_module(force=True)
    class CrashTestProgressHook(Hook):
        """Appends ``start <iter>`` when training starts and ``<iter>`` after each iteration to a file."""
        priority = 'NORMAL'  # before CheckpointHook (VERY_LOW): an iteration is recorded before its save

        def _write(self, runner, line):
            with open(osp.join(runner.work_dir, PROGRESS_FILE), 'a') as f:
                f.write(line + '\n')

        def before_train(self, runner):
            self._write(runner, f'start {runner.iter}')

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self._write(runner, str(runner.iter + 1))
except ImportError:  # only the driver side is used
    pass


def write_config(path: str, data_root: str, max_iters: int, interval: int, size: int = 96) -> str:
    with open(path, 'w') as f:
        f.write(tiny_config_text(data_root, iters=max_iters, size=size, batch_size=2, flip=True,
                                 checkpoint_interval=interval, max_keep_ckpts=2, warmup_iters=max_iters,
                                 imports=['mmghost', 'mmghost.datasets', 'benchmarks.crash_resume'], log_window=1,
                                 extra="custom_hooks = [dict(type='CrashTestProgressHook')]\n"
                                       'randomness = dict(seed=0)\n'))
    return path


def _env() -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env['OMP_NUM_THREADS'] = env.get('OMP_NUM_THREADS', '1')
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    return env


def _train_cmd(config: str, work_dir: str, resume: bool = False, exit_before_replacing: str = None):
    """``tools/train.py``; with ``exit_before_replacing``: run by tests/fixtures/injected_exit.py, which ends the
    process inside the save of that checkpoint."""
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir', work_dir]
    if exit_before_replacing:
        cmd[1:1] = [INJECTED_EXIT, exit_before_replacing]
    return cmd + ['--resume'] if resume else cmd


def read_progress(work_dir: str):
    """[(start_iter, [iters finished...]), ...] one entry per training process."""
    runs = []
    path = osp.join(work_dir, PROGRESS_FILE)
    if not osp.exists(path):
        return runs
    with open(path) as f:
        for line in f.read().splitlines():
            if line.startswith('start '):
                runs.append((int(line.split()[1]), []))
            elif line.strip().isdigit() and runs:
                runs[-1][1].append(int(line))
    return runs


def _last_iter(work_dir: str) -> int:
    runs = read_progress(work_dir)
    done = [i for _, iters in runs for i in iters]
    return max(done) if done else 0


def _temp_files(work_dir: str):
    return glob.glob(osp.join(glob.escape(work_dir), '.*.mmghost-tmp'))


def _random_kill(proc, work_dir: str, max_iters: int, rng: random.Random, deadline: float):
    """SIGKILL ``proc`` after a random iteration (+ a random fraction of one); ``(target, note, in_save)``."""
    target = rng.randint(1, max_iters - 1)
    while proc.poll() is None and time.time() < deadline and _last_iter(work_dir) < target:
        time.sleep(0.02)
    time.sleep(rng.uniform(0, 0.5))
    if proc.poll() is not None:
        return target, f'finished before the kill (rc {proc.returncode})', False
    in_save = bool(_temp_files(work_dir))  # by chance: a temp file existed at the kill
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return target, 'killed', in_save


def _exit_in_save(proc, work_dir: str, target: int, interval: int, deadline: float, result: dict):
    """Wait for ``proc``, which ends itself inside the save of ``iter_<target>.pth``; ``(note, in_save)`` read
    from the exit code and the files (``result`` gets the details)."""
    try:
        rc = proc.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    name = f'iter_{target}.pth'
    temps = [osp.basename(p) for p in _temp_files(work_dir)]
    result['target_absent_at_kill'] = not osp.exists(osp.join(work_dir, name))
    previous = osp.join(work_dir, f'iter_{target - interval}.pth')
    if target > interval:
        from mmghost.engine.checkpoint_io import training_state_problem
        result['previous_problem_at_kill'] = training_state_problem(previous)
    in_save = (rc == EXIT_CODE and result['target_absent_at_kill'] and any(t.startswith(f'.{name}.') for t in temps)
               and result.get('previous_problem_at_kill') is None)
    return (f'exited inside the save of {name}' if rc == EXIT_CODE else f'ended with {rc}, not inside a save',
            in_save)


def one_run(config: str, work_dir: str, max_iters: int, interval: int, rng: random.Random, kind: str,
            timeout: float = 300) -> dict:
    """Train, end it (``kind``: one of KINDS), resume, finish; return a dict describing what happened and ``ok``."""
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    deadline = time.time() + timeout
    result = dict(kind=kind)
    target = None
    if kind == 'exit-in-save':  # a checkpoint after the first (one to fall back to) and before the last
        saves = max_iters // interval
        target = interval * rng.randint(min(2, max(1, saves - 1)), max(1, saves - 1))
    with open(osp.join(work_dir, 'driver_first.log'), 'w') as log:
        proc = subprocess.Popen(_train_cmd(config, work_dir, exit_before_replacing=target and f'iter_{target}.pth'),
                                cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        if kind == 'exit-in-save':
            kill_note, killed_in_save = _exit_in_save(proc, work_dir, target, interval, deadline, result)
        else:
            target, kill_note, killed_in_save = _random_kill(proc, work_dir, max_iters, rng, deadline)
    at_kill = _last_iter(work_dir)
    temp_left = len(_temp_files(work_dir))

    with open(osp.join(work_dir, 'driver_resume.log'), 'w') as log:
        t0 = time.time()
        try:
            rc = subprocess.run(_train_cmd(config, work_dir, True), cwd=ROOT, env=_env(), stdout=log,
                                stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 'timeout'
        resume_s = time.time() - t0

    result.update(target=target, kill=kill_note, killed_in_save=killed_in_save, iter_at_kill=at_kill,
                  temp_files_at_kill=temp_left, resume_rc=rc, resume_s=round(resume_s, 1))
    errors = []
    if kind == 'exit-in-save' and not killed_in_save:
        errors.append(f'the injected exit did not end the run inside the save of iter_{target}.pth: {kill_note}, '
                      f'{result}')
    runs = read_progress(work_dir)
    if rc != 0:
        errors.append(f'resume exited with {rc}')
    if len(runs) < 2:
        errors.append(f'expected 2 training starts in the progress file, found {len(runs)}')
    else:
        resumed_from, iters = runs[-1]
        result['resumed_from'] = resumed_from
        result['lost_iters'] = at_kill - resumed_from
        if resumed_from % interval:
            errors.append(f'resumed from iter {resumed_from}, not a checkpoint boundary')
        if resumed_from > at_kill:
            errors.append(f'resumed from iter {resumed_from} > {at_kill} finished before the kill')
        if at_kill - resumed_from > interval:
            errors.append(f'lost {at_kill - resumed_from} iterations > one interval ({interval})')
        if kind == 'exit-in-save' and resumed_from != target - interval:
            errors.append(f'resumed from iter {resumed_from}, not from the checkpoint before the interrupted save '
                          f'(iter {target - interval})')
        if iters != list(range(resumed_from + 1, max_iters + 1)):
            errors.append(f'resumed run did iterations {iters[:3]}...{iters[-3:]}, '
                          f'expected {resumed_from + 1}..{max_iters}')
    errors += _check_final_checkpoint(work_dir, max_iters)
    if _temp_files(work_dir):
        errors.append(f'temp files left after the resumed run: {_temp_files(work_dir)}')
    result['ok'] = not errors
    result['errors'] = errors
    return result


def _check_final_checkpoint(work_dir: str, max_iters: int):
    sys.path.insert(0, ROOT)
    from mmghost.engine.checkpoint_io import training_state_problem
    from mmghost.utils import safe_torch_load
    last_file = osp.join(work_dir, 'last_checkpoint')
    if not osp.exists(last_file):
        return ['no last_checkpoint after the resumed run']
    with open(last_file) as f:
        last = f.read().strip()
    if osp.basename(last) != f'iter_{max_iters}.pth':
        return [f'last_checkpoint names {last}, expected iter_{max_iters}.pth']
    problem = training_state_problem(last)
    if problem:
        return [f'final checkpoint {last}: {problem}']
    meta = safe_torch_load(last)['meta']
    if meta.get('iter') != max_iters:
        return [f'final checkpoint says iter {meta.get("iter")}, expected {max_iters}']
    return []


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--max-iters', type=int, default=24)
    parser.add_argument('--interval', type=int, default=4, help='checkpoint every N iterations')
    parser.add_argument('--images', type=int, default=16)
    parser.add_argument('--size', type=int, default=96, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--work-dir', help='keep everything here (default: a temp dir, deleted afterwards)')
    parser.add_argument('--json', help='write the per-run results to this file')
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    base = args.work_dir or tempfile.mkdtemp(prefix='mmghost_crash_')
    os.makedirs(base, exist_ok=True)
    t0 = time.time()
    data = make_dataset(osp.join(base, 'data'), args.images, args.size, args.seed)
    config = write_config(osp.join(base, 'crash_cfg.py'), data, args.max_iters, args.interval, args.size)
    results = []
    for i in range(args.runs):
        r = one_run(config, osp.join(base, f'run{i:02d}'), args.max_iters, args.interval, rng, KINDS[i % 2])
        results.append(r)
        print(f'run {i + 1}/{args.runs}: {"OK  " if r["ok"] else "FAIL"} '
              f'{r["kind"]:12} kill at iter {r["iter_at_kill"]:>3}'
              f'{" (during a save)" if r["killed_in_save"] else "":16} resumed from {r.get("resumed_from")} '
              f'lost {r.get("lost_iters")} iters, resume took {r["resume_s"]} s'
              + ('' if r['ok'] else f'  errors: {r["errors"]}'), flush=True)
    ok = sum(r['ok'] for r in results)
    in_save = sum(r['killed_in_save'] for r in results)
    print(f'{args.runs} runs -> {ok} successes ({in_save} ended inside a checkpoint save), '
          f'{time.time() - t0:.0f} s in total', flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
    if not args.work_dir:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if ok == args.runs else 1


if __name__ == '__main__':
    sys.exit(main())
