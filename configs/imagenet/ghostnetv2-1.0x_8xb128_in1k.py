# GhostNetV2-1.0x on ImageNet-1k (paper: 75.3% top-1, 6.1M params, 167M FLOPs; not measured here), as an
# mmpretrain 1.2 config with GhostNet's recipe (see ghostnet-1.0x_8xb128_in1k.py: 400 epochs, batch 1024, SGD
# lr 0.4, 5 warm-up epochs + cosine, wd 4e-5, label smoothing 0.1, dropout 0.2). The GhostNetV2 paper's own
# training settings were not checked against this recipe; the public 1.0x weights (official repository, timm
# ghostnetv2_100) load into the backbone as they are.
_base_ = './ghostnet-1.0x_8xb128_in1k.py'

model = dict(backbone=dict(_delete_=True, type='mmdet.GhostNetV2', widen_factor=1.0, out_indices=(5, )))
