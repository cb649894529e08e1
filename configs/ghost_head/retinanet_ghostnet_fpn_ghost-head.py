# RetinaNet-GhostNet-1.1x (configs/retinanet_ghostnet_fpn.py: the paper's Table 8 setup, COCO, 1x schedule) with the
# Ghost module in the neck and the head as well: every FPN conv (1x1 laterals, 3x3 outputs, the P6/P7 convs) and
# the head's 4 + 4 stacked 3x3 convs are GhostConvs (ratio s=2, cheap depthwise d=3: half of each layer's output
# channels come from a 3x3 depthwise conv instead of a dense one).
#
# The head's output convs (retina_cls, retina_reg) stay dense: mmdet 3.3 builds them as plain nn.Conv2d (no
# conv_cfg), and a Ghost output layer would compute half of the anchors' class logits and box deltas as a
# depthwise filter of the other anchors' ones. They are ~27% of the plain head's FLOPs.
#
# FLOPs (tools/get_flops.py, multiply-adds, tensor forward at 800x1333 padded to 800x1344, batch 1), measured:
#   plain configs/retinanet_ghostnet_fpn.py: 161.70G (neck 13.54G, head 144.71G), 12.35M params;
#   this config: 102.35G (0.633x; neck 6.82G, head 92.07G of which the dense output convs 39.02G), 8.58M params.
#   python tools/get_flops.py configs/ghost_head/retinanet_ghostnet_fpn_ghost-head.py
#   python benchmarks/ghost_head.py --parts flops     # both side by side, per conv group (docs/ghost_module.md)
# COCO mAP of this config has not been measured by this project (the paper gives none for a Ghost neck/head).
_base_ = '../retinanet_ghostnet_fpn.py'

ghost_conv = dict(type='GhostConv', ratio=2, dw_size=3)
model = dict(neck=dict(conv_cfg=ghost_conv), bbox_head=dict(conv_cfg=ghost_conv))
