"""The demo config shrunk for tests and benchmarks: a short run on a tiny shapes dataset, on CPU, in seconds.

Used by benchmarks/crash_resume.py and the training tests (tests/test_train_e2e.py, tests/test_resume.py,
tests/test_bad_data.py). Each passes what it does differently; the rest is the same everywhere: ``_base_`` is
configs/demo/retinanet_ghostnet_shapes.py, images are resized to fit ``size`` x ``size``, the dataloaders use
no worker processes (unless asked) and the logger writes every iteration.
"""
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'retinanet_ghostnet_shapes.py')

_EVALUATION = '''test_pipeline = [dict(type='LoadImageFromFile'),
                 dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
                 dict(type='LoadAnnotations', with_bbox=True),
                 dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
val_dataloader = dict(batch_size={val_batch_size}, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
'''
_NO_EVALUATION = ''.join(f'{name} = None\n' for name in (
    'val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg', 'test_evaluator'))


def _args(options):
    """``key=value, ...`` for the options that are not None."""
    return ', '.join(f'{key}={value!r}' for key, value in options.items() if value is not None)


def tiny_config_text(data_root, *, epochs=None, iters=None, size=96, batch_size=2, flip=False,
                     val_batch_size=None, checkpoint_interval=1, max_keep_ckpts=None, warmup_iters=None,
                     imports=None, train_dataset=None, log_window=None, num_workers=0, extra=''):
    """Text of a config file that trains the demo detector on the shapes dataset at ``data_root``.

    epochs, iters: exactly one; an epoch-based loop of ``epochs`` epochs, or an iteration-based loop of
        ``iters`` iterations (checkpoints and logs counted in iterations).
    size: images are resized to fit ``size`` x ``size`` (keeping their aspect ratio).
    batch_size: of the training dataloader.
    flip: RandomFlip(prob=0.5) in the training pipeline.
    val_batch_size: validate (COCO metric on annotations/instances_val.json) after every epoch, and test, with
        this batch size; None: no validation or test loop.
    checkpoint_interval, max_keep_ckpts: of the CheckpointHook (max_keep_ckpts None keeps the demo config's).
    warmup_iters: LinearLR warm-up from 0.1 x lr over this many iterations; None: a constant learning rate.
    imports: the modules of ``custom_imports``; None keeps the demo config's.
    train_dataset: more keys for the training dataset (``type``, ``ann_file``, ...).
    log_window: the LogProcessor's window_size; None keeps the demo config's.
    num_workers: dataloader worker processes of the training dataloader.
    extra: config text appended at the end (a smaller model, custom_hooks, ...).
    """
    if (epochs is None) == (iters is None):
        raise ValueError('give exactly one of epochs and iters')
    dataset_args = ''.join(f', {key}={value!r}' for key, value in (train_dataset or {}).items())
    text = f'_base_ = {DEMO_CONFIG!r}\n'
    if imports is not None:
        text += f'custom_imports = dict(imports={list(imports)!r}, allow_failed_imports=False)\n'
    data_root = str(data_root).rstrip('/') + '/'
    flip_step = "dict(type='RandomFlip', prob=0.5), " if flip else ''
    text += f'''data_root = {data_root!r}
image_size = {size}
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                  dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
                  {flip_step}dict(type='PackDetInputs')]
train_dataloader = dict(batch_size={batch_size}, num_workers={num_workers}, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline{dataset_args}))
'''
    text += _NO_EVALUATION if val_batch_size is None else _EVALUATION.format(val_batch_size=val_batch_size)
    if warmup_iters is None:
        text += "param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]\n"
    else:
        text += f"param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, " \
                f"end={warmup_iters})]\n"
    if epochs is not None:
        text += f'max_epochs = {epochs}\ntrain_cfg = dict(max_epochs=max_epochs, val_interval=1)\n'
        by_epoch = None  # the demo config's: True
    else:
        text += f"train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={iters}, " \
                f"val_interval=10**9)\n"
        by_epoch = False
    checkpoint = _args(dict(by_epoch=by_epoch, interval=checkpoint_interval, max_keep_ckpts=max_keep_ckpts))
    text += f'default_hooks = dict(logger=dict(interval=1), checkpoint=dict({checkpoint}))\n'
    log_processor = _args(dict(by_epoch=by_epoch, window_size=log_window))
    if log_processor:
        text += f'log_processor = dict({log_processor})\n'
    return text + extra
