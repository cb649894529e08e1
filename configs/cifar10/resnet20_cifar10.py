# ResNet-20 on CIFAR-10 (He et al.'s CIFAR ResNet, depth 6n+2 with n=3): the network of the CPU reproduction
# benchmarks/cifar_ghost.py (ResNet-56 is 3x its cost).
# Not in the GhostNet paper. He et al. (Table 6): 0.27M params, 91.25% top-1 (their recipe, 164 epochs).
# Measured here (mmengine get_model_complexity_info, whole classifier, 1x3x32x32):
#     0.27M params, 40.9M FLOPs (40.6M convs + classifier, the rest norms and pools)
#     (.venv-torch21/bin/python benchmarks/ghost_networks_flops.py)
#
# mmghost's CifarResNet (3x3 stem conv to 16 channels, three stages of 3 basic blocks with 16/32/64 channels,
# parameter-free option-A shortcuts) + global average pooling + a linear classifier: He et al.'s network.
# mmpretrain's ResNet_CIFAR is not it (ImageNet ResNet stages, depths 18-152).
#
#   python tools/train.py configs/cifar10/resnet20_cifar10.py          # torch-2.1 stack (mmpretrain)
_base_ = './_base_/cifar10_bs128.py'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='CifarResNet', depth=20),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
