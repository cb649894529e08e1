# Faster R-CNN with a GhostNet-1.1x backbone, COCO 2017, 1x schedule: the setup of paper Table 8
# (paper: 164M backbone FLOPs at 224x224, 26.9 COCO mAP). COCO mAP of this config has not been measured by this
# project.
#
# The paper trains from an ImageNet-pretrained GhostNet-1.1x, and detection with GhostNet does not converge well
# without one. No public 1.1x ImageNet weights exist. Two routes to checkpoints/ghostnet_1.1x_imagenet.pth:
#  1. pretrain (mmpretrain, torch-2.1 stack; the paper's recipe, 400 epochs):
#     bash tools/dist_train.sh configs/imagenet/ghostnet-1.1x_8xb128_in1k.py 8, then
#     python tools/convert_weights.py work_dirs/ghostnet-1.1x_8xb128_in1k/epoch_400.pth checkpoints/ghostnet_1.1x_imagenet.pth
#  2. widen the public 1.0x weights (seconds, no training):
#     python tools/widen_weights.py checkpoints/state_dict_73.98.pth checkpoints/ghostnet_1.1x_imagenet.pth --width 1.1 [--noise 0.01]
#     a 1.1x-shaped network computing the 1.0x function (ImageNet top-1 of 1.0x, 73.98%), not the paper's 1.1x weights.
# Or use faster_rcnn_ghostnet-1.0x_fpn.py with the public 1.0x weights. Another file: --cfg-options
# model.backbone.init_cfg.checkpoint=PATH; from scratch: model.backbone.init_cfg=None.
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
default_hooks = dict(
    checkpoint=dict(type='AtomicCheckpointHook'),
    data_problems=dict(type='DataProblemsHook'),
    class_checks=dict(type='ClassChecksHook'))  # heads' num_classes against the data's classes (docs/custom_dataset.md)

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
        # SafePretrained: mmengine's Pretrained, reading the file without running code from it (docs/weights.md).
        init_cfg=dict(type='SafePretrained', checkpoint='checkpoints/ghostnet_1.1x_imagenet.pth')),
    # P2-P6 as in mmdet's R-50 config.
    neck=dict(in_channels=[28, 44, 124, 176], num_outs=5))

# SGD lr 0.02 for 16 images (8 GPUs x 2), steps at epochs 8 and 11, linear warmup: inherited from the base.
# auto_scale_lr on: the lr above is for base_batch_size images per step; the runner scales it linearly to
# (GPUs x images per GPU) with any tool, mmdet's tools/train.py too, --auto-scale-lr or not.
# --cfg-options auto_scale_lr.enable=False trains at the written lr.
auto_scale_lr = dict(enable=True, base_batch_size=16)
train_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
val_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
test_dataloader = val_dataloader
