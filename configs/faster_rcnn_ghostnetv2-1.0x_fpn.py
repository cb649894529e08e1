# Faster R-CNN with GhostNetV2-1.0x: the GhostNet paper's Faster R-CNN setup (faster_rcnn_ghostnet_fpn.py) with
# the V2 backbone and its public ImageNet weights (see retinanet_ghostnetv2-1.0x_fpn.py). The V2 paper reports
# no Faster R-CNN figure, and this project has not measured one.
_base_ = './faster_rcnn_ghostnet_fpn.py'

model = dict(
    backbone=dict(
        type='GhostNetV2', widen_factor=1.0,
        init_cfg=dict(checkpoint='checkpoints/ck_ghostnetv2_10.pth.tar')),
    neck=dict(in_channels=[24, 40, 112, 160]))
