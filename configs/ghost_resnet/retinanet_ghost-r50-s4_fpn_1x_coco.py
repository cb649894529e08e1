# RetinaNet with a Ghost-ResNet-50 (s=4, d=3) backbone and FPN, COCO 2017, 1x schedule: mmdet's R-50-FPN 1x
# config with every conv of the backbone's residual stages a Ghost module (the paper's Table 5 network; the
# paper reports no detector with it). Paper, backbone as an ImageNet classifier: 6.5M weights, 1.2B FLOPs.
# Measured here (tools/get_flops.py, mmengine's counter; backbone at 224x224, detector at 800x1333):
#     backbone (PlainStem, no classifier) at 224x224: 1202.1M FLOPs, 6.10M params;
#     detector tensor forward at 800x1333 (padded to 800x1344): 188.67G FLOPs, 20.56M params
#     (python tools/get_flops.py configs/ghost_resnet/retinanet_ghost-r50-s4_fpn_1x_coco.py)
# COCO mAP of this config has not been measured by this project.
#
# Backbone weights: none are public for Ghost-ResNet-50. Train them with the ImageNet config beside this one
# (configs/ghost_resnet/ghost-resnet50-s4_8xb32_in1k.py); its checkpoint is read directly (prefix 'backbone.':
# the mmpretrain and mmdet ResNets have the same keys) by the SafePretrained initializer below. Another file:
# --cfg-options model.backbone.backbone.init_cfg.checkpoint=PATH. From scratch (mmdet's R-50 settings assume
# pretrained weights, so also unfreeze the stem and train the BN statistics; expect a longer schedule to be
# needed): --cfg-options model.backbone.backbone.init_cfg=None model.backbone.backbone.frozen_stages=-1
# model.backbone.backbone.norm_eval=False
#
#   python tools/train.py configs/ghost_resnet/retinanet_ghost-r50-s4_fpn_1x_coco.py
_base_ = './retinanet_ghost-r50-s2_fpn_1x_coco.py'
# The s=2 config with ratio 4 and the s=4 ImageNet checkpoint.
model = dict(
    backbone=dict(
        backbone=dict(
            conv_cfg=dict(ratio=4),
            init_cfg=dict(checkpoint='work_dirs/ghost-resnet50-s4_8xb32_in1k/epoch_100.pth'))))
