# The demo detector (configs/demo/retinanet_ghostnet_shapes.py: RetinaNet-GhostNet-1.0x from scratch on the shapes
# dataset, 12 epochs on 2 CPU cores) with the Ghost module in the neck and head too: every FPN conv and the head's
# 2 + 2 stacked 3x3 convs are GhostConvs (ratio s=2, cheap depthwise d=3); the head's output convs stay dense (as in
# configs/ghost_head/retinanet_ghostnet_fpn_ghost-head.py, which says why).
#
#   python tools/demo.py --model ghostnet-ghost-head       # train, evaluate and draw it as `make demo` does
#   python benchmarks/ghost_head.py                         # FLOPs, latency and demo mAP next to the plain demo
# FLOPs at 256x256 (tools/get_flops.py): 0.358G vs the plain demo's 0.482G (0.742x: at this size the backbone is
# 0.18G of it), 2.69M vs 2.83M params. Figures: docs/ghost_module.md "Ghost necks and heads in detectors".
_base_ = './retinanet_ghostnet_shapes.py'

ghost_conv = dict(type='GhostConv', ratio=2, dw_size=3)
model = dict(neck=dict(conv_cfg=ghost_conv), bbox_head=dict(conv_cfg=ghost_conv))
