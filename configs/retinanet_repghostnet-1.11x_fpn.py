# RetinaNet with RepGhostNet-1.11x: the GhostNet paper's RetinaNet setup (retinanet_ghostnet_fpn.py: COCO 2017,
# 1x schedule, 1333x800, frozen stem, norm_eval) with RepGhostNet at the width of the RepGhost paper's detection
# setting (1.1x: 170M FLOPs, 75.1% ImageNet top-1 in the official README). At 1.11x the tapped outputs have
# GhostNet-1.1x's channels (28, 44, 124, 176). This project has not measured a COCO figure for it.
#
# Public ImageNet weights at this width: timm's repghostnet_111.in1k and the official 1.11x file
# (ChengpengChen/RepGhost; `state_dict_ema` inside, `module.` prefixes). Both load as they are through the base
# config's init_cfg type SafePretrained (docs/weights.md), .pth/.pth.tar/.bin/.safetensors; official deploy-form
# files (cheap_operation folded) need model.backbone.reparameterized=True and serve inference only.
# The backbone trains in RepGhost's training form; model.backbone.switch_to_deploy() (tools/deploy.py does it) folds
# the re-parameterisation branches and the batch norms for inference.
_base_ = './retinanet_ghostnet_fpn.py'

model = dict(
    backbone=dict(
        type='RepGhostNet', widen_factor=1.11,
        init_cfg=dict(checkpoint='checkpoints/repghostnet_1.11x_imagenet.pth')),
    neck=dict(in_channels=[28, 44, 124, 176]))
