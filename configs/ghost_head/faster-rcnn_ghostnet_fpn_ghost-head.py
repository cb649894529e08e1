# Faster R-CNN-GhostNet-1.1x (configs/faster_rcnn_ghostnet_fpn.py: the paper's Table 8 setup, COCO, 1x schedule)
# with the Ghost module in the neck and the RPN head: every FPN conv (1x1 laterals, 3x3 outputs, none extra) and
# the RPN's shared 3x3 conv are GhostConvs (ratio s=2, cheap depthwise d=3). mmdet 3.3's RPNHead takes no conv_cfg,
# so the head is mmghost's GhostRPNHead (RPNHead with conv_cfg). The RPN's 1x1 output convs (rpn_cls, rpn_reg)
# stay dense, and the RoI head (Shared2FCBBoxHead: RoIAlign + two FC layers) has no convs to replace.
#
# FLOPs (tools/get_flops.py, multiply-adds, tensor forward at 800x1333 padded to 800x1344, batch 1, the RoI head
# on the RPN's 1000 proposals), measured:
#   plain configs/faster_rcnn_ghostnet_fpn.py: 124.42G (neck 53.52G, RPN head 53.15G, RoI head 14.30G), 20.39M params;
#   this config: 71.58G (0.575x; neck 26.97G, RPN head 26.85G, RoI head 14.30G), 18.88M params.
#   python tools/get_flops.py configs/ghost_head/faster-rcnn_ghostnet_fpn_ghost-head.py
#   python benchmarks/ghost_head.py --parts flops     # both side by side (docs/ghost_module.md)
# COCO mAP of this config has not been measured by this project.
_base_ = '../faster_rcnn_ghostnet_fpn.py'

ghost_conv = dict(type='GhostConv', ratio=2, dw_size=3)
# mmghost.models.dense_heads registers GhostRPNHead (not imported by `import mmghost`: it needs mmcv's ops).
custom_imports = dict(imports=['mmghost', 'mmghost.datasets', 'mmghost.models.dense_heads'], allow_failed_imports=False)
model = dict(neck=dict(conv_cfg=ghost_conv), rpn_head=dict(type='GhostRPNHead', conv_cfg=ghost_conv))
