# GhostNet-1.3x on ImageNet-1k (paper Table 7: 75.7% top-1, 7.3M params, 226M FLOPs; not measured here). Same
# recipe as the 1.0x config (see there); only the width changes. tools/widen_weights.py --width 1.3 makes a
# function-preserving start from the public 1.0x weights instead.
_base_ = './ghostnet-1.0x_8xb128_in1k.py'

widen_factor = 1.3
model = dict(
    backbone=dict(widen_factor=widen_factor),
    head=dict(in_channels=1248))  # make_divisible(960 * 1.3, 4)
