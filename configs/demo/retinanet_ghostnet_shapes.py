# The demo detector: RetinaNet with a GhostNet-1.0x backbone trained from scratch on the generated shapes
# dataset (tools/make_shapes_dataset.py), small enough to train in minutes on 2 CPU cores (make demo).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
# mmghost.datasets: SafeCocoDataset (bad images/boxes get one warning line, not a crash) and the NaN-checking
# data preprocessor.
custom_imports = dict(imports=['mmghost', 'mmghost.datasets'], allow_failed_imports=False)
# Crash safety (opt-in): safe checkpoint loading and resume, atomic checkpoints, data problems from dataloader
# workers reported (see configs/retinanet_ghostnet_fpn.py).
runner_type = 'MMGhostRunner'

data_root = 'data/shapes/'
classes = ('circle', 'square', 'triangle')
image_size = 256
max_epochs = 12
batch_size = 8

model = dict(
    data_preprocessor=dict(type='CheckedDetDataPreprocessor'),
    backbone=dict(
        _delete_=True,
        type='GhostNet',
        widen_factor=1.0,
        out_indices=(2, 3, 4),  # strides 8, 16, 32
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,  # from scratch: BN statistics are learnt
        init_cfg=None),
    # Objects are 30-115 px, so P3-P5 (anchors 32-203 px) cover them; P6/P7 would be wasted work.
    neck=dict(in_channels=[40, 112, 160], out_channels=64, start_level=0, add_extra_convs=False, num_outs=3),
    bbox_head=dict(
        num_classes=len(classes),
        in_channels=64,
        feat_channels=64,
        stacked_convs=2,
        anchor_generator=dict(strides=[8, 16, 32])),
    test_cfg=dict(nms_pre=300, max_per_img=50))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=1,
    persistent_workers=True,
    batch_sampler=None,
    dataset=dict(
        type='SafeCocoDataset',
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img=''),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        type='SafeCocoDataset',
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img=''),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# From scratch on a small dataset: AdamW with warmup and cosine decay converges far faster than the 1x SGD.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs, eta_min_ratio=0.01,
         convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
# auto_scale_lr on: lr 2e-3 is for 8 images per step (1 process x batch_size); another batch or process count
# scales it linearly.
auto_scale_lr = dict(enable=True, base_batch_size=batch_size)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(type='AtomicCheckpointHook', interval=max_epochs, max_keep_ckpts=1),
    data_problems=dict(type='DataProblemsHook'),
    class_checks=dict(type='ClassChecksHook'))
log_processor = dict(window_size=10)
