# ResNet-56 on CIFAR-10 (He et al.'s CIFAR ResNet, depth 6n+2 with n=9): the baseline of the GhostNet paper's
# Ghost-ResNet-56 experiment.
# Paper (Table 3): 0.85M weights, 125M FLOPs, 93.0% top-1 (He et al.: 0.85M params, 93.03%).
# Measured here (mmengine get_model_complexity_info, whole classifier, 1x3x32x32):
#     0.85M params, 126.6M FLOPs (125.5M convs + classifier, the rest norms and pools)
#     (.venv-torch21/bin/python benchmarks/ghost_networks_flops.py)
#
# mmghost's CifarResNet (3x3 stem conv to 16 channels, three stages of 9 basic blocks with 16/32/64 channels,
# parameter-free option-A shortcuts) + global average pooling + a linear classifier: He et al.'s network.
# mmpretrain's ResNet_CIFAR is not it (ImageNet ResNet stages, depths 18-152).
#
#   python tools/train.py configs/cifar10/resnet56_cifar10.py          # torch-2.1 stack (mmpretrain)
_base_ = './_base_/cifar10_bs128.py'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='CifarResNet', depth=56),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
