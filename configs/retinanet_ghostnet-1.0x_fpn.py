# RetinaNet with GhostNet-1.0x: the width with public ImageNet weights (official state_dict_73.98.pth or timm's
# ghostnet_100; convert with tools/convert_weights.py, docs/weights.md). Paper Table 7: 141M FLOPs,
# 73.9% ImageNet top-1 for this backbone; the paper reports no COCO figure at this width, and this project has
# not measured one.
_base_ = './retinanet_ghostnet_fpn.py'

model = dict(
    backbone=dict(widen_factor=1.0, init_cfg=dict(checkpoint='checkpoints/ghostnet_1.0x_imagenet.pth')),
    neck=dict(in_channels=[24, 40, 112, 160]))
