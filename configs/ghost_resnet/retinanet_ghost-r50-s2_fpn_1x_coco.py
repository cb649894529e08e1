# RetinaNet with a Ghost-ResNet-50 (s=2, d=3) backbone and FPN, COCO 2017, 1x schedule: mmdet's R-50-FPN 1x
# config with every conv of the backbone's residual stages a Ghost module (the paper's Table 5 network; the
# paper reports no detector with it). Paper, backbone as an ImageNet classifier: 13.0M weights, 2.2B FLOPs.
# Measured here (tools/get_flops.py, mmengine's counter; backbone at 224x224, detector at 800x1333):
#     backbone (PlainStem, no classifier) at 224x224: 2171.2M FLOPs, 11.90M params;
#     detector tensor forward at 800x1333 (padded to 800x1344): 209.44G FLOPs, 26.37M params
#     (python tools/get_flops.py configs/ghost_resnet/retinanet_ghost-r50-s2_fpn_1x_coco.py)
# COCO mAP of this config has not been measured by this project.
#
# Backbone weights: none are public for Ghost-ResNet-50. Train them with the ImageNet config beside this one
# (configs/ghost_resnet/ghost-resnet50-s2_8xb32_in1k.py); its checkpoint is read directly (prefix 'backbone.':
# the mmpretrain and mmdet ResNets have the same keys) by the SafePretrained initializer below. Another file:
# --cfg-options model.backbone.backbone.init_cfg.checkpoint=PATH. From scratch (mmdet's R-50 settings assume
# pretrained weights, so also unfreeze the stem and train the BN statistics; expect a longer schedule to be
# needed): --cfg-options model.backbone.backbone.init_cfg=None model.backbone.backbone.frozen_stages=-1
# model.backbone.backbone.norm_eval=False
#
#   python tools/train.py configs/ghost_resnet/retinanet_ghost-r50-s2_fpn_1x_coco.py
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
# mmghost.datasets: SafeCocoDataset and the NaN-checking data preprocessor. Crash safety is opt-in, as in
# every config of ours: MMGhostRunner, AtomicCheckpointHook, DataProblemsHook (docs/robust_training.md).
custom_imports = dict(imports=['mmghost', 'mmghost.datasets'], allow_failed_imports=False)
runner_type = 'MMGhostRunner'
default_hooks = dict(
    checkpoint=dict(type='AtomicCheckpointHook'),
    data_problems=dict(type='DataProblemsHook'),
    class_checks=dict(type='ClassChecksHook'))  # heads' num_classes against the data's classes (docs/custom_dataset.md)
model = dict(
    data_preprocessor=dict(type='CheckedDetDataPreprocessor'),
    backbone=dict(
        _delete_=True,
        # PlainStem keeps the 7x7 stem conv plain, as the paper does (mmdet's ResNet gives its stem the blocks'
        # conv_cfg); it returns mmdet's ResNet itself.
        type='PlainStem',
        backbone=dict(
            type='mmdet.ResNet',
            depth=50,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            frozen_stages=1,
            norm_cfg=dict(type='BN', requires_grad=True),
            norm_eval=True,
            style='pytorch',
            conv_cfg=dict(type='GhostConv', ratio=2, dw_size=3),
            init_cfg=dict(
                type='SafePretrained',
                checkpoint='work_dirs/ghost-resnet50-s2_8xb32_in1k/epoch_100.pth',
                prefix='backbone.')),
        plain_convs=('conv1', )))

# auto_scale_lr on: the lr above is for base_batch_size images per step; the runner scales it linearly to
# (GPUs x images per GPU) with any tool, mmdet's tools/train.py too, --auto-scale-lr or not.
# --cfg-options auto_scale_lr.enable=False trains at the written lr.
auto_scale_lr = dict(enable=True, base_batch_size=16)
train_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
val_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
test_dataloader = val_dataloader
