# The ImageNet recipe in miniature: GhostNet-1.0x classification pre-training on the generated shapes set
# (tools/make_shapes_classification.py: background / circle / square / triangle), a few minutes on a CPU.
# Its checkpoint initialises the shapes detector exactly as an ImageNet checkpoint initialises the COCO ones
# (benchmarks/pretrain_vs_scratch.py measures the difference):
#
#   python tools/make_shapes_classification.py data/shapes_cls --size 64
#   python tools/train.py configs/imagenet/ghostnet-1.0x_shapes-cls.py              # torch-2.1 stack, mmpretrain
#
# Same model, head (1280, dropout 0.2), label-smoothed loss, augmentation (random-resized crop, colour jitter 0.4,
# flip), warm-up + cosine schedule and evaluation crop ratio as ghostnet-1.0x_8xb128_in1k.py. Scaled down: the data,
# the image size (64) and the schedule; and the optimiser is the demo detector's AdamW (lr 2e-3, wd 0.05, no decay
# on norms and biases), because SGD with the ImageNet recipe's rate barely moves in the few hundred steps a CPU
# affords (measured on this set, 96 px, 100 images per class: 37% top-1 on 4 classes after 3 epochs, SGD lr 0.1).
_base_ = './ghostnet-1.0x_8xb128_in1k.py'

data_root = 'data/shapes_cls'
num_classes = 4
image_size = 64
batch_size = 32
max_epochs = 12

model = dict(data_preprocessor=dict(num_classes=num_classes), head=dict(num_classes=num_classes, topk=(1, )))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    # Crops much smaller than the image would often cut the one object away (and its label with it).
    dict(type='RandomResizedCrop', scale=image_size, crop_ratio_range=(0.35, 1.0), backend='pillow',
         interpolation='bilinear'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=73, edge='short', backend='pillow', interpolation='bilinear'),  # 256:224
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=1,
    persistent_workers=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root, data_prefix='train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root, data_prefix='val',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
# A few steps of warm-up (a whole epoch is a quarter of this run), then cosine, as the demo detector does.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs, eta_min_ratio=0.01,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(base_batch_size=batch_size)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False)
