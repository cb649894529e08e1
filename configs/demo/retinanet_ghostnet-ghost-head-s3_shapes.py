# The demo's Ghost-head twin (configs/demo/retinanet_ghostnet-ghost-head_shapes.py) with ratio s=3 instead of 2, as
# configs/ghost_head/retinanet_ghostnet_fpn_ghost-head-s3.py is to the s=2 RetinaNet-GhostNet-1.1x one.
#
#   python tools/demo.py --model ghostnet-ghost-head-s3     # train, evaluate and draw it as `make demo` does
#   python benchmarks/ghost_head.py --parts demo             # its mAP next to the plain demo and the s=2 twin
_base_ = './retinanet_ghostnet-ghost-head_shapes.py'

ghost_conv = dict(type='GhostConv', ratio=3, dw_size=3)
model = dict(neck=dict(conv_cfg=ghost_conv), bbox_head=dict(conv_cfg=ghost_conv))
