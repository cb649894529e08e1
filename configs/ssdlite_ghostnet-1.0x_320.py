# SSDLite with GhostNet-1.0x at 320x320, on mmdet's SSDLite-MobileNetV2 recipe
# (ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py: from scratch, 8 GPUs x 24 images, 120 epochs over a 5x
# repeated COCO train set = "600e", SGD lr 0.015 with cosine decay, depthwise SSD neck and head, BN eps 1e-3 /
# momentum 0.03). GhostNet replaces MobileNetV2's stride-16 block output and final 1x1 conv (96 and 1280
# channels) with its own (outputs 3 and 5: 112 and 960 channels).
#
# For comparison only, not this config's result: PaddleDetection's SSDLite-GhostNet at 320 has 23.3 COCO box AP
# (its model zoo), with GhostNet-1.3x from SSLD-distilled ImageNet weights, batch 512 for 400k iterations.
# This config has not been trained by this project. To start from the public GhostNet-1.0x ImageNet weights
# instead of from scratch: model.backbone.init_cfg=dict(type='SafePretrained', checkpoint=PATH).
_base_ = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'
# mmghost.models.ssd_head: SSDHeadCompat, mmdet's SSDHead that can predict under mmdet 3.3.0 (whose SSDHead fails
# in predict: mmdetection issue #11063).
custom_imports = dict(imports=['mmghost', 'mmghost.datasets', 'mmghost.models.ssd_head'], allow_failed_imports=False)
# Crash safety, opt-in (importing mmghost changes nothing by itself): MMGhostRunner reads checkpoints without
# running code from them and resumes only from intact training checkpoints; AtomicCheckpointHook writes
# checkpoints atomically and deletes old ones only after the new one is on disk; DataProblemsHook reports the
# data problems dataloader workers met.
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
        widen_factor=1.0,
        out_indices=(3, 5),  # stride 16 (end of stage 3) and the final 1x1 conv at stride 32
        norm_cfg=dict(type='BN', eps=0.001, momentum=0.03),
        init_cfg=dict(type='TruncNormal', layer='Conv2d', std=0.03)),
    neck=dict(in_channels=(112, 960), out_channels=(112, 960, 512, 256, 256, 128)),
    bbox_head=dict(type='SSDHeadCompat', in_channels=(112, 960, 512, 256, 256, 128)))

# auto_scale_lr on: the recipe's lr is for base_batch_size = 8 GPUs x 24 images per step; the runner scales it
# linearly to (GPUs x images per GPU) with any tool, mmdet's tools/train.py too, --auto-scale-lr or not.
# --cfg-options auto_scale_lr.enable=False trains at the written lr.
auto_scale_lr = dict(enable=True, base_batch_size=192)
train_dataloader = dict(dataset=dict(dataset=dict(type='SafeCocoDataset')))  # inside the RepeatDataset
val_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
test_dataloader = val_dataloader
