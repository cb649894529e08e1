# VGG-16 on CIFAR-10: the baseline of the GhostNet paper's Table 3 and of its s/d ablations (Tables 1-2).
# Paper: 15M weights, 313M FLOPs, 93.6% top-1.
# Measured here (mmengine get_model_complexity_info, whole classifier, 1x3x32x32):
#     14.73M params, 313.8M FLOPs (313.2M convs + classifier, the rest norms and pools)
#     (.venv-torch21/bin/python benchmarks/ghost_networks_flops.py)
#
# The paper's CIFAR VGG-16 is the 13 conv layers of VGG-16 (3x3, BN, ReLU, five 2x2 max-pools) on 32x32 inputs
# with one linear classifier on the 512-d 1x1 output -- the layout 313M FLOPs implies: the 13 convs at 32, 32, 16,
# 16, 8, 8, 8, 4, 4, 4, 2, 2, 2 pixels are 313.2M multiply-adds (the ImageNet classifier, 512x7x7 -> 4096 ->
# 4096, alone would be 119M params). mmpretrain's VGG (depth=16, num_classes=-1: convs only, with_last_pool:
# 1x1x512 output) plus a linear head is that network; its convs keep their bias, as the paper's reference
# CIFAR VGG (kuangliu/pytorch-cifar) does.
#
#   python tools/train.py configs/cifar10/vgg16_cifar10.py          # torch-2.1 stack (mmpretrain)
_base_ = './_base_/cifar10_bs128.py'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='VGG', depth=16, num_classes=-1, norm_cfg=dict(type='BN'), out_indices=(4, )),
    neck=dict(type='GlobalAveragePooling'),  # the 1x1 map -> 512-d vector
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
