# YOLOv3 with GhostNetV2-1.0x at 416x416 (multi-scale training 320-416): the detection setting of the GhostNetV2
# paper (YOLOv3 on COCO at 320 and 416), on mmdet's YOLOv3-MobileNetV2 recipe (8 GPUs x 24 images, 30 epochs
# over a 10x repeated COCO train set = "300e", SGD lr 0.003, head and neck at 96 channels). The backbone replaces
# MobileNetV2's strides 8/16/32 taps with GhostNetV2's (outputs 2, 3, 4: 40, 112, 160 channels) and starts from
# the public ImageNet weights (see retinanet_ghostnetv2-1.0x_fpn.py for the file). It keeps ReLU, the activation
# those weights were trained with (mmdet's MobileNetV2 recipe uses LeakyReLU in the backbone).
#
# The V2 paper's COCO mAP for this setting is not quoted here: this project could not check the paper's figures.
# This config has not been trained by this project.
_base_ = 'mmdet::yolo/yolov3_mobilenetv2_8xb24-ms-416-300e_coco.py'
custom_imports = dict(imports=['mmghost', 'mmghost.datasets'], allow_failed_imports=False)
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
        type='GhostNetV2',
        widen_factor=1.0,
        out_indices=(2, 3, 4),  # strides 8, 16, 32
        # SafePretrained: mmengine's Pretrained, reading the file without running code from it (docs/weights.md).
        init_cfg=dict(type='SafePretrained', checkpoint='checkpoints/ck_ghostnetv2_10.pth.tar')),
    neck=dict(in_channels=[160, 112, 40]))  # deepest first

# auto_scale_lr on: the recipe's lr is for base_batch_size = 8 GPUs x 24 images per step; the runner scales it
# linearly to (GPUs x images per GPU) with any tool, mmdet's tools/train.py too, --auto-scale-lr or not.
# --cfg-options auto_scale_lr.enable=False trains at the written lr.
auto_scale_lr = dict(enable=True, base_batch_size=192)
train_dataloader = dict(dataset=dict(dataset=dict(type='SafeCocoDataset')))  # inside the RepeatDataset
val_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
test_dataloader = val_dataloader
