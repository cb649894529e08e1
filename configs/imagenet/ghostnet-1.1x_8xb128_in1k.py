# GhostNet-1.1x on ImageNet-1k: the width of the paper's detection backbones (RetinaNet 26.6 / Faster R-CNN 26.9
# COCO mAP), for which no public ImageNet weights exist (the authors quote "about 74.5%" top-1; not measured
# here). Same recipe as the 1.0x config (see there); only the width changes.
#
#   bash tools/dist_train.sh configs/imagenet/ghostnet-1.1x_8xb128_in1k.py 8      # torch-2.1 stack, mmpretrain
#
# Then configs/retinanet_ghostnet_fpn.py / faster_rcnn_ghostnet_fpn.py take the result as their backbone:
#   python tools/convert_weights.py work_dirs/ghostnet-1.1x_8xb128_in1k/epoch_400.pth \
#       checkpoints/ghostnet_1.1x_imagenet.pth --verify
# (the training checkpoint also loads directly with SafePretrained: init_cfg.checkpoint=<it>,
# init_cfg.prefix='backbone.').
# The quick alternative without ImageNet training: widen the public 1.0x weights (tools/widen_weights.py
# --width 1.1), a 1.1x-shaped network computing the 1.0x function (73.98% top-1).
_base_ = './ghostnet-1.0x_8xb128_in1k.py'

widen_factor = 1.1
model = dict(
    backbone=dict(widen_factor=widen_factor),
    head=dict(in_channels=1056))  # make_divisible(960 * 1.1, 4)
