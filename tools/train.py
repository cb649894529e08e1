"""Train a detector (mmdet 3.3's tools/train.py, run by mmghost's runner).

Configs that name no ``runner_type`` run in :class:`mmghost.engine.MMGhostRunner`: checkpoints are read without
running code from them, and ``--resume`` without a path takes the newest intact training checkpoint. Errors whose
message says it all (bad data, an unsafe checkpoint) end the run with one ``error:`` line (``MMGHOST_TRACEBACK=1``
shows the traceback).

    python tools/train.py configs/retinanet_ghostnet_fpn.py [--work-dir DIR] [--amp] [--auto-scale-lr]
        [--resume [CHECKPOINT]] [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import os
import sys

from mmengine.config import DictAction

import mmghost  # noqa: F401  registers GhostNet and mmghost's hooks/runner into the registries
from mmghost.engine import build_runner, finish_distributed, load_config
from mmghost.utils import exit_on_user_error


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true', help='enable automatically scaling LR')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or, given without a path, from the latest '
                        'checkpoint in the work directory')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, as key=value pairs (e.g. '
                        'train_cfg.max_epochs=2 "model.backbone.out_indices=(2,3,4)")')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    # torch.distributed launchers pass --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    from mmdet.utils import setup_cache_size_limit_of_dynamo
    setup_cache_size_limit_of_dynamo()
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)

    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'enable' not in cfg.get('auto_scale_lr', {}) or 'base_batch_size' not in cfg.auto_scale_lr:
            sys.exit('--auto-scale-lr needs auto_scale_lr = dict(enable=..., base_batch_size=...) in the config')
        cfg.auto_scale_lr.enable = True
    # An explicit checkpoint wins over finding the latest one in work_dir.
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    build_runner(cfg).train()
    finish_distributed()


if __name__ == '__main__':
    with exit_on_user_error():  # a UserFacingError (bad data, unsafe checkpoint) prints one `error:` line
        main()
