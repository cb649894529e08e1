# The peer of the demo detector: the same RetinaNet, data and schedule with mmdet's MobileNetV2 backbone
# (from scratch), so `make demo` can show GhostNet next to it (MODEL=mobilenetv2 bash tools/demo.sh).
_base_ = './retinanet_ghostnet_shapes.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        out_indices=(2, 4, 6),  # strides 8, 16, 32
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[32, 96, 320]))
