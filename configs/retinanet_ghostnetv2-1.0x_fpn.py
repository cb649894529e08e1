# RetinaNet with GhostNetV2-1.0x: the GhostNet paper's RetinaNet setup (retinanet_ghostnet_fpn.py: COCO 2017,
# 1x schedule, 1333x800, frozen stem, norm_eval) with the V2 backbone and its public ImageNet weights (official
# ck_ghostnetv2_10.pth.tar or timm's ghostnetv2_100.in1k; 75.3% top-1, 167M FLOPs in the V2 paper). The V2
# paper reports no RetinaNet figure, and this project has not measured one.
#
# The weights load as they are (official/timm key names, .pth/.pth.tar/.safetensors) through the base config's
# init_cfg type SafePretrained, which reads the file without running code from it (docs/weights.md). It refuses a
# file that pickles objects other than tensors, numbers, numpy values and mmengine's training state (a training
# script's argument namespace, say), naming the file; if you trust such a file, re-save its state dict once
# (torch.save(torch.load(f, weights_only=False)['state_dict'], dst)) and point the checkpoint below at dst, or at
# timm's weights.
_base_ = './retinanet_ghostnet_fpn.py'

model = dict(
    backbone=dict(
        type='GhostNetV2', widen_factor=1.0,
        init_cfg=dict(checkpoint='checkpoints/ck_ghostnetv2_10.pth.tar')),
    neck=dict(in_channels=[24, 40, 112, 160]))
