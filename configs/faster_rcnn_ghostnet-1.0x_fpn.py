# Faster R-CNN with GhostNet-1.0x, the width with public ImageNet weights: the official state_dict_73.98.pth as it
# is (see retinanet_ghostnet-1.0x_fpn.py).
# The paper reports no COCO figure at this width, and this project has not measured one.
_base_ = './faster_rcnn_ghostnet_fpn.py'

model = dict(
    backbone=dict(widen_factor=1.0, init_cfg=dict(checkpoint='checkpoints/state_dict_73.98.pth')),
    neck=dict(in_channels=[24, 40, 112, 160]))
