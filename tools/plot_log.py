"""Training curves from mmengine's JSON scalar logs: loss terms, validation mAP and learning rate over time.

    python tools/plot_log.py WORK_DIR [--out PNG] [--all-runs] [--metrics coco/bbox_mAP ...] [--log-scale]

WORK_DIR is a training work directory: mmengine writes one folder per run, ``WORK_DIR/<timestamp>/vis_data/
scalars.json``, one JSON object per line (train lines: ``loss``, ``loss_*``, ``lr``, ``epoch``, ``iter``,
``step``; validation lines: ``coco/bbox_mAP``... and ``step``, the epoch, or the iteration for iteration-based
training). The newest run is drawn; ``--all-runs`` joins every run in time order (a resumed training; a later
run's points replace an earlier one's at the same iteration). A run folder or a ``scalars.json`` file can be
given instead of WORK_DIR.

The PNG (default ``WORK_DIR/curves.png``) has three panels on one iteration axis (epochs marked on top): the
loss terms, the validation metrics (every ``*mAP*`` key, or ``--metrics``), and the learning rate.
"""
import argparse
import glob
import json
import math
import os.path as osp
from typing import Dict, List, Optional

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

MAIN_METRICS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Plot loss terms, validation mAP and lr from mmengine logs')
    parser.add_argument('work_dir', help='work dir (or one run folder, or a scalars.json file)')
    parser.add_argument('--out', help='output PNG (default: WORK_DIR/curves.png)')
    parser.add_argument('--all-runs', action='store_true', help='join all runs of the work dir in time order')
    parser.add_argument('--metrics', nargs='+', help='validation keys to draw (default: every key with "mAP", '
                        'size-specific ones dashed)')
    parser.add_argument('--log-scale', action='store_true', help='logarithmic loss axis')
    parser.add_argument('--title', help='figure title (default: the work dir and run)')
    return parser.parse_args(argv)


def find_logs(path: str, all_runs: bool = False) -> List[str]:
    """The scalars.json files of ``path`` (work dir, run folder or file), oldest run first."""
    if osp.isfile(path):
        return [path]
    if osp.isfile(osp.join(path, 'vis_data', 'scalars.json')):
        return [osp.join(path, 'vis_data', 'scalars.json')]
    # Run folders are named by their start time (YYYYmmdd_HHMMSS), so names sort in time order.
    logs = sorted(glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json')))
    if not logs:
        raise FileNotFoundError(f'no mmengine scalar log (*/vis_data/scalars.json) under {path!r}; was the work '
                                'dir written by tools/train.py with the LocalVisBackend?')
    return logs if all_runs else logs[-1:]


def read_log(paths: List[str]) -> Dict[str, list]:
    """Train and val records of the logs, each with ``iter`` (x position) and ``epoch`` where known."""
    train: Dict[int, dict] = {}
    val: Dict[int, dict] = {}
    for path in paths:
        run_train, run_val = [], []
        with open(path) as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash; the rest is still useful
                    print(f'plot_log: skipping unreadable line {number} of {path}')
                    continue
                if any(k == 'loss' or k.startswith('loss_') for k in record) or 'lr' in record:
                    run_train.append(record)
                else:
                    run_val.append(record)
        # Epoch-based training logs the epoch as a val line's step; place it at that epoch's last iteration.
        by_epoch = any('epoch' in r for r in run_train)
        last_iter_of_epoch: Dict[int, int] = {}
        for r in run_train:
            r['iter'] = r.get('iter', r.get('step'))
            if 'epoch' in r:
                last_iter_of_epoch[r['epoch']] = max(last_iter_of_epoch.get(r['epoch'], 0), r['iter'])
            train[r['iter']] = r
        for r in run_val:
            if by_epoch:
                r['epoch'] = r['step']
                r['iter'] = last_iter_of_epoch.get(r['step'], r['step'])
            else:
                r['iter'] = r['step']
            val[r['iter']] = r
    return dict(train=[train[k] for k in sorted(train)], val=[val[k] for k in sorted(val)])


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_metric(v):
    """COCO writes -1 for a size range without objects: not a value to draw."""
    return _is_number(v) and v >= 0


def loss_keys(train: List[dict]) -> List[str]:
    keys = {k for r in train for k, v in r.items() if (k == 'loss' or k.startswith('loss_')) and _is_number(v)}
    return sorted(keys, key=lambda k: (k != 'loss', k))


def metric_keys(val: List[dict], wanted: Optional[List[str]] = None) -> List[str]:
    present = {k for r in val for k, v in r.items() if _is_metric(v)}
    if wanted:
        return [k for k in wanted if k in present]
    keys = [k for k in present if 'mAP' in k or 'AP' in k.split('/')[-1]]
    return sorted(keys, key=lambda k: (k not in MAIN_METRICS, MAIN_METRICS.index(k) if k in MAIN_METRICS else 0, k))


def plot(log: Dict[str, list], out: str, metrics: Optional[List[str]] = None, log_scale: bool = False,
         title: str = '') -> dict:
    train, val = log['train'], log['val']
    if not train and not val:
        raise ValueError('the log has no training or validation records')
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True, layout='constrained',
                             height_ratios=[3, 2.2, 1.2])
    ax_loss, ax_val, ax_lr = axes
    losses = loss_keys(train)
    for k in losses:
        pts = [(r['iter'], r[k]) for r in train if _is_number(r.get(k))]
        ax_loss.plot(*zip(*pts), label=k, lw=2.2 if k == 'loss' else 1.4, color='black' if k == 'loss' else None)
    ax_loss.set_ylabel('loss')
    if log_scale:
        ax_loss.set_yscale('log')
    if losses:
        ax_loss.legend(loc='upper right', fontsize=9)
    else:
        ax_loss.text(0.5, 0.5, 'no loss values in the log', ha='center', va='center', transform=ax_loss.transAxes)
    ax_loss.set_title('training losses (as logged: averaged over the logger window)', fontsize=10)

    keys = metric_keys(val, metrics)
    for k in keys:
        pts = [(r['iter'], r[k]) for r in val if _is_metric(r.get(k))]
        dashed = k.endswith(('_s', '_m', '_l'))
        best = max(p[1] for p in pts)
        ax_val.plot(*zip(*pts), marker='o', ms=4, ls='--' if dashed else '-', lw=1 if dashed else 1.8,
                    label=f'{k} (best {best:.3f})')
    if keys:
        ax_val.legend(loc='lower right', fontsize=8, ncol=2)
        ax_val.set_ylim(bottom=0)
    else:
        ax_val.text(0.5, 0.5, 'no validation metrics in the log yet', ha='center', va='center',
                    transform=ax_val.transAxes)
    ax_val.set_ylabel('validation')
    ax_val.set_title('validation metrics (COCO mAP at IoU .50:.95, .50, .75; dashed: by object size)', fontsize=10)

    pts = [(r['iter'], r['lr']) for r in train if _is_number(r.get('lr'))]
    if pts:
        ax_lr.plot(*zip(*pts), color='tab:gray')
    ax_lr.set_ylabel('lr')
    ax_lr.set_xlabel('iteration')
    ax_lr.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_lr.ticklabel_format(axis='y', style='sci', scilimits=(-3, 3))
    for ax in axes:
        ax.grid(alpha=0.3)

    # Epoch boundaries (epoch-based training): a dotted line at each epoch's last iteration, labelled on top.
    ends = {}
    for r in train:
        if 'epoch' in r:
            ends[r['epoch']] = max(ends.get(r['epoch'], 0), r['iter'])
    if ends:
        for ax in axes:
            for e in ends.values():
                ax.axvline(e, color='0.75', lw=0.8, ls=':')
        top = ax_loss.secondary_xaxis('top')
        step = max(1, len(ends) // 12)
        shown = sorted(ends.items())[step - 1::step]
        top.set_xticks([i for _, i in shown], labels=[str(e) for e, _ in shown])
        top.set_xlabel('end of epoch', fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    summary = dict(out=out, train_points=len(train), val_points=len(val), loss_keys=losses, metric_keys=keys,
                   last_loss=next((r['loss'] for r in reversed(train) if _is_number(r.get('loss'))), None))
    if keys:
        summary['best'] = {k: max(r[k] for r in val if _is_metric(r.get(k))) for k in keys}
    return summary


def main(argv=None):
    args = parse_args(argv)
    logs = find_logs(args.work_dir, args.all_runs)
    out = args.out or osp.join(args.work_dir if osp.isdir(args.work_dir) else osp.dirname(args.work_dir),
                               'curves.png')
    runs = ', '.join(osp.basename(osp.dirname(osp.dirname(p))) for p in logs)
    title = args.title or f'{osp.basename(osp.normpath(args.work_dir))} (run {runs})'
    summary = plot(read_log(logs), out, args.metrics, args.log_scale, title)
    best = ', '.join(f'{k} {v:.3f}' for k, v in summary.get('best', {}).items())
    print(f'{summary["train_points"]} training and {summary["val_points"]} validation points from {len(logs)} '
          f'log(s); last loss {summary["last_loss"]}; best {best or "(no validation metrics)"}')
    print(f'wrote {out}')
    return summary


if __name__ == '__main__':
    main()
