# GhostNet-1.0x on ImageNet-1k with the paper's recipe, as an mmpretrain 1.2 config (8 GPUs x 128 images).
#
#   python tools/train.py configs/imagenet/ghostnet-1.0x_8xb128_in1k.py                  # torch-2.1 stack
#   bash tools/dist_train.sh configs/imagenet/ghostnet-1.0x_8xb128_in1k.py 8
#   python tools/test.py configs/imagenet/ghostnet-1.0x_8xb128_in1k.py work_dirs/.../epoch_400.pth
#
# Needs mmpretrain 1.2 (and torchvision): the .venv-torch21 stack (requirements/torch21.txt). ImageNet goes in
# data/imagenet/{train,val}/ with meta/{train,val}.txt ("n01440764/n01440764_10026.JPEG 0" lines, relative to the
# split's folder: mmpretrain's ImageNet layout).
# The 1.1x/1.3x configs inherit from this file and change only the width.
#
# The recipe (the authors' answers in the ghostnet repositories' issues, e.g. iamhankai/ghostnet.pytorch #3 and
# #18): 400 epochs, batch 1024, SGD momentum 0.9, lr 0.4 with 5 warm-up epochs then cosine, weight decay 4e-5,
# label smoothing 0.1, dropout 0.2 before the classifier, random-resized crop + colour jitter 0.4 + flip;
# evaluation resize 256 / centre crop 224. lr: 0.4 is the authors' figure for batch 1024; a base lr of 0.1 per
# 256 images scales linearly to the same 0.4 (auto_scale_lr keeps that rule for other batch sizes:
# `tools/train.py ... --auto-scale-lr`).
#
# The trained checkpoint (work_dirs/<name>/epoch_400.pth) holds backbone.* (official GhostNet keys) and
# head.conv_head/head.classifier: tools/convert_weights.py turns it into the weights file the detection configs
# expect; they also read it directly with init_cfg=dict(type='SafePretrained', checkpoint=..., prefix='backbone.'),
# whose restricted reader accepts the training state inside it on every torch (docs/weights.md).
default_scope = 'mmpretrain'
# mmghost registers GhostNet (in mmdet's registry: hence 'mmdet.GhostNet' below); mmghost.models.heads registers
# GhostNetClsHead in mmpretrain's registry (import mmghost alone never imports mmpretrain).
custom_imports = dict(imports=['mmghost', 'mmghost.models.heads'], allow_failed_imports=False)

widen_factor = 1.0
num_classes = 1000
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        num_classes=num_classes,
        mean=[123.675, 116.28, 103.53],  # RGB, 0-255
        std=[58.395, 57.12, 57.375],
        to_rgb=True),  # images are read as BGR
    backbone=dict(type='mmdet.GhostNet', widen_factor=widen_factor, out_indices=(5, )),  # to the 1x1 conv, 960
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='GhostNetClsHead',
        num_classes=num_classes,
        in_channels=960,  # make_divisible(960 * widen_factor, 4)
        mid_channels=1280,
        dropout_rate=0.2,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original', loss_weight=1.0),
        topk=(1, 5)))

# ---- data ----
data_root = 'data/imagenet'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bilinear'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bilinear'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='ImageNet', data_root=data_root, data_prefix='train', ann_file='meta/train.txt',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ImageNet', data_root=data_root, data_prefix='val', ann_file='meta/val.txt',
                 pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# ---- schedule ----
max_epochs = 400
warmup_epochs = 5
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.4, momentum=0.9, weight_decay=4e-5, nesterov=False))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs, end=max_epochs,
         T_max=max_epochs - warmup_epochs, eta_min=0., convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=10)
val_cfg = dict()
test_cfg = dict()
# lr 0.4 is for 8 x 128 = 1024 images per step; --auto-scale-lr scales it linearly to the actual batch.
auto_scale_lr = dict(enable=False, base_batch_size=1024)

# ---- runtime (mmpretrain's defaults) ----
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False))
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
