# Ghost-ResNet-50 (s=4, d=3) on ImageNet-1k: the GhostNet paper's Table 5, as an mmpretrain 1.2 config.
# Paper: 6.5M weights, 1.2B FLOPs, 74.1% top-1 (ResNet-50: 25.6M, 4.1B, 75.3%).
# Measured here (mmengine get_model_complexity_info, whole classifier, 1x3x224x224):
#     8.15M params (6.10M backbone + 2.05M linear head), 1.20B FLOPs (1.18B convs + fc)
#     (.venv-torch21/bin/python benchmarks/ghost_networks_flops.py)
#
# mmpretrain's ResNet-50 recipe (8 GPUs x 32, SGD lr 0.1, 100 epochs, steps at 30/60/90) with every conv of
# the residual stages -- the blocks' 1x1/3x3/1x1 convs and the downsample 1x1 convs -- a Ghost module (GhostConv,
# ratio s=4, 3x3 depthwise cheap conv), as in the official ghostnet_pytorch/ghost_resnet.py. The 7x7 stem conv
# stays a plain conv, as there: mmpretrain's ResNet builds its stem with the blocks' conv_cfg, so the backbone is
# wrapped in PlainStem (mmghost), which rebuilds `conv1` as an nn.Conv2d and returns the ResNet itself (same
# module names and checkpoint keys as a plain mmpretrain ResNet-50). The paper does not publish its Ghost-ResNet
# training recipe, and no Ghost-ResNet-50 ImageNet weights are public.
#
#   bash tools/dist_train.sh configs/ghost_resnet/ghost-resnet50-s4_8xb32_in1k.py 8   # torch-2.1 stack (mmpretrain)
# The detection configs beside this one read the resulting checkpoint
# (work_dirs/ghost-resnet50-s4_8xb32_in1k/epoch_100.pth) as their backbone weights.
_base_ = './ghost-resnet50-s2_8xb32_in1k.py'
# The s=2 config with ratio 4.
model = dict(backbone=dict(backbone=dict(conv_cfg=dict(ratio=4))))
