# configs/ghost_head/retinanet_ghostnet_fpn_ghost-head.py with the Ghost module's ratio s=3 instead of 2: a third of
# each FPN and head-tower conv's output channels come from the dense primary conv, two thirds from the cheap 3x3
# depthwise conv. In the paper's s ablation (Ghost-VGG-16 on CIFAR-10, d=3; docs/ghost_module.md) s=3 costs 0.3
# points of top-1 for a third less compute than s=2 (93.4% vs 93.7%, 107M vs 158M FLOPs).
# The head's output convs stay dense, as in the s=2 config (it says why).
#
# FLOPs and latency next to the plain config and the s=2 one: python benchmarks/ghost_head.py --parts flops latency
# (figures in docs/ghost_module.md "Ghost necks and heads in detectors"). COCO mAP not measured by this project.
_base_ = './retinanet_ghostnet_fpn_ghost-head.py'

ghost_conv = dict(type='GhostConv', ratio=3, dw_size=3)
model = dict(neck=dict(conv_cfg=ghost_conv), bbox_head=dict(conv_cfg=ghost_conv))
