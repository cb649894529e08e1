# Faster R-CNN with a GhostNet-1.1x backbone, COCO 2017, 1x schedule: the setup of paper Table 8
# (paper: 164M backbone FLOPs at 224x224, 26.9 COCO mAP). COCO mAP of this config has not been measured by this
# project. Pretrained weights: see the note in retinanet_ghostnet_fpn.py and the README.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
# mmghost.datasets: SafeCocoDataset (bad images/boxes get one warning line, not a crash) and the NaN-checking
# data preprocessor; both are mmdet's CocoDataset / DetDataPreprocessor otherwise.
custom_imports = dict(imports=['mmghost', 'mmghost.datasets'], allow_failed_imports=False)
# Crash safety, opt-in (importing mmghost changes nothing by itself): MMGhostRunner reads checkpoints without
# running code from them and resumes only from intact training checkpoints; AtomicCheckpointHook writes
# checkpoints atomically and deletes old ones only after the new one is on disk; DataProblemsHook reports the
# data problems dataloader workers met. mmengine merges dicts, so `default_hooks = dict(checkpoint=dict(...))` in
# a config based on this one keeps the hook types.
runner_type = 'MMGhostRunner'
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'), data_problems=dict(type='DataProblemsHook'))

model = dict(
    data_preprocessor=dict(type='CheckedDetDataPreprocessor'),
    backbone=dict(
        _delete_=True,
        type='GhostNet',
        widen_factor=1.1,
        out_indices=(1, 2, 3, 4),  # strides 4, 8, 16, 32
        frozen_stages=0,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/ghostnet_1.1x_imagenet.pth')),
    # P2-P6 as in mmdet's R-50 config.
    neck=dict(in_channels=[28, 44, 124, 176], num_outs=5))

# SGD lr 0.02 for 16 images (8 GPUs x 2), steps at epochs 8 and 11, linear warmup: inherited from the base.
auto_scale_lr = dict(enable=False, base_batch_size=16)
train_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
val_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
test_dataloader = val_dataloader
