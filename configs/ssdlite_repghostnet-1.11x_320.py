# SSDLite with RepGhostNet-1.11x at 320x320, on mmdet's SSDLite-MobileNetV2 recipe as in ssdlite_ghostnet-1.0x_320.py
# (from scratch, 8 GPUs x 24 images, 120 epochs over a 5x repeated COCO train set = "600e", SGD lr 0.015 with cosine
# decay, depthwise SSD neck and head, BN eps 1e-3 / momentum 0.03). RepGhostNet's outputs 3 and 5 (stride 16 and
# the final 1x1 conv at stride 32: 124 and 1064 channels at 1.11x) replace MobileNetV2's.
#
# The RepGhost paper's detection setting uses RepGhostNet-1.1x (170M FLOPs, 75.1% ImageNet top-1 in the official
# README). This config has not been trained by this project. To start from ImageNet weights (timm's
# repghostnet_111.in1k or the official 1.11x file) instead of from scratch:
# model.backbone.init_cfg=dict(type='SafePretrained', checkpoint=PATH).
_base_ = './ssdlite_ghostnet-1.0x_320.py'

model = dict(
    backbone=dict(type='RepGhostNet', widen_factor=1.11),
    neck=dict(in_channels=(124, 1064), out_channels=(124, 1064, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(124, 1064, 512, 256, 256, 128)))
