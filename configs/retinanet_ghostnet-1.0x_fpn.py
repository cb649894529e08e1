# RetinaNet with GhostNet-1.0x: the width with public ImageNet weights, the official state_dict_73.98.pth as it is
# (download address: README "Weights"; timm's ghostnet_100.in1k loads too, docs/weights.md). Paper Table 7: 141M FLOPs,
# 73.9% ImageNet top-1 for this backbone; the paper reports no COCO figure at this width, and this project has
# not measured one.
_base_ = './retinanet_ghostnet_fpn.py'

model = dict(
    backbone=dict(widen_factor=1.0, init_cfg=dict(checkpoint='checkpoints/state_dict_73.98.pth')),
    neck=dict(in_channels=[24, 40, 112, 160]))
