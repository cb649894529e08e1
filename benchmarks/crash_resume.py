"""Crash test: SIGKILL training at a random moment (some kills land mid-save), resume, finish; repeat N times.

    .venv/bin/python benchmarks/crash_resume.py --runs 20 [--max-iters 24] [--interval 4] [--seed 0]

Each run trains the demo config (RetinaNet + GhostNet-1.0x) on a tiny shapes dataset with an iteration-based
loop and a checkpoint every ``--interval`` iterations (``max_keep_ckpts=2``), through ``tools/train.py``:

1. start training; SIGKILL it either after a random iteration (+ a random fraction of an iteration) or, every
   other run, while a checkpoint is being saved: after its temp file appeared and before it is moved into place
   (``MMGHOST_CKPT_WRITE_DELAY`` makes ``AtomicCheckpointHook`` wait there);
2. ``tools/train.py ... --resume`` in the same work dir, to the end;
3. check: the resumed run exits 0; it started from a checkpoint boundary at most one interval behind the last
   iteration finished before the kill; every iteration after it ran once, in order, up to ``max_iters``; the
   final checkpoint is intact, loads with ``weights_only=True`` and says ``iter == max_iters``.

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
if ROOT not in sys.path:  # run as a script: benchmarks.tiny_config (and mmghost) from the repo root
    sys.path.insert(0, ROOT)
from benchmarks.tiny_config import tiny_config_text  # noqa: E402

PROGRESS_FILE = 'crash_progress.txt'

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


def make_dataset(out: str, images: int = 16, size: int = 96, seed: int = 0) -> str:
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'make_shapes_dataset.py'), out, '--train',
                    str(images), '--val', '1', '--seed', str(seed), '--size', str(size)],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def write_config(path: str, data_root: str, max_iters: int, interval: int, size: int = 96) -> str:
    with open(path, 'w') as f:
        f.write(tiny_config_text(data_root, iters=max_iters, size=size, batch_size=2, flip=True,
                                 checkpoint_interval=interval, max_keep_ckpts=2, warmup_iters=max_iters,
                                 imports=['mmghost', 'mmghost.datasets', 'benchmarks.crash_resume'], log_window=1,
                                 extra="custom_hooks = [dict(type='CrashTestProgressHook')]\n"
                                       'randomness = dict(seed=0)\n'))
    return path


def _env(write_delay: float) -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env['OMP_NUM_THREADS'] = env.get('OMP_NUM_THREADS', '1')
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    if write_delay > 0:
        env['MMGHOST_CKPT_WRITE_DELAY'] = str(write_delay)
    else:
        env.pop('MMGHOST_CKPT_WRITE_DELAY', None)
    return env


def _train_cmd(config: str, work_dir: str, resume: bool):
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir', work_dir]
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


def one_run(config: str, work_dir: str, max_iters: int, interval: int, rng: random.Random, mid_save: bool,
            write_delay: float = 0.6, timeout: float = 300) -> dict:
    """Train, kill, resume, finish; return a dict describing what happened and ``ok``."""
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    log = open(osp.join(work_dir, 'driver_first.log'), 'w')
    proc = subprocess.Popen(_train_cmd(config, work_dir, False), cwd=ROOT, env=_env(write_delay if mid_save else 0),
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    if mid_save:  # aim into the write of a random checkpoint (not the last one)
        target = interval * rng.randint(1, max(1, max_iters // interval - 1)) - 1
    else:
        target = rng.randint(1, max_iters - 1)
    killed_in_save, kill_note = False, ''
    while proc.poll() is None and time.time() < deadline:
        if _last_iter(work_dir) >= target:
            break
        time.sleep(0.02)
    if mid_save:
        while proc.poll() is None and time.time() < deadline and not _temp_files(work_dir):
            time.sleep(0.005)
        time.sleep(rng.uniform(0, write_delay * 0.8))
    else:
        time.sleep(rng.uniform(0, 0.5))
    if proc.poll() is None:
        killed_in_save = bool(_temp_files(work_dir))
        proc.send_signal(signal.SIGKILL)
        kill_note = 'killed'
    else:
        kill_note = f'finished before the kill (rc {proc.returncode})'
    proc.wait()
    log.close()
    at_kill = _last_iter(work_dir)
    temp_left = len(_temp_files(work_dir))

    with open(osp.join(work_dir, 'driver_resume.log'), 'w') as log:
        t0 = time.time()
        try:
            rc = subprocess.run(_train_cmd(config, work_dir, True), cwd=ROOT, env=_env(0), stdout=log,
                                stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 'timeout'
        resume_s = time.time() - t0

    result = dict(mid_save=mid_save, target=target, kill=kill_note, killed_in_save=killed_in_save,
                  iter_at_kill=at_kill, temp_files_at_kill=temp_left, resume_rc=rc, resume_s=round(resume_s, 1))
    errors = []
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
    parser.add_argument('--write-delay', type=float, default=0.6,
                        help='seconds a mid-save-targeted run pauses inside each checkpoint save (temp file '
                        'written, not yet moved into place)')
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
        r = one_run(config, osp.join(base, f'run{i:02d}'), args.max_iters, args.interval, rng,
                    mid_save=(i % 2 == 1), write_delay=args.write_delay)
        results.append(r)
        print(f'run {i + 1}/{args.runs}: {"OK  " if r["ok"] else "FAIL"} '
              f'{"mid-save" if r["mid_save"] else "random  "} kill at iter {r["iter_at_kill"]:>3}'
              f'{" (during a save)" if r["killed_in_save"] else "":16} resumed from {r.get("resumed_from")} '
              f'lost {r.get("lost_iters")} iters, resume took {r["resume_s"]} s'
              + ('' if r['ok'] else f'  errors: {r["errors"]}'), flush=True)
    ok = sum(r['ok'] for r in results)
    in_save = sum(r['killed_in_save'] for r in results)
    print(f'{args.runs} runs -> {ok} successes ({in_save} kills during a checkpoint write), '
          f'{time.time() - t0:.0f} s in total', flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
    if not args.work_dir:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if ok == args.runs else 1


if __name__ == '__main__':
    sys.exit(main())
