# The demo detector with a RepGhostNet-1.0x backbone: configs/demo/retinanet_ghostnet_shapes.py (RetinaNet trained
# from scratch on the generated shapes dataset, FPN and head at 64 channels, 256x256, 12 epochs, AdamW) with
# RepGhostNet instead of GhostNet. At 1.0x the tapped outputs have GhostNet-1.0x's channels (40, 112, 160), so the
# neck and head are the same. Trained in the training form (fusion_bn branches); tools/demo.py-style evaluation
# runs it as trained.
_base_ = './retinanet_ghostnet_shapes.py'

model = dict(backbone=dict(type='RepGhostNet', widen_factor=1.0))
