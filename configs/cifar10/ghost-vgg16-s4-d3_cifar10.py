# Ghost-VGG-16 (s=4, d=3) on CIFAR-10: every conv of vgg16_cifar10.py is a Ghost module, the paper's ablation of the
# ratio s at d=3 (Tables 1-2).
# Paper: 4.0M weights, 80M FLOPs, 93.0% top-1 (VGG-16: 15M, 313M, 93.6%).
# Measured here (mmengine get_model_complexity_info, whole classifier, 1x3x32x32):
#     3.72M params, 80.7M FLOPs (80.2M convs + classifier, the rest norms and pools)
#     (.venv-torch21/bin/python benchmarks/ghost_networks_flops.py)
#
# GhostConv replaces each 3x3 conv (the first, 3 -> 64, included): a 3x3 primary conv to ceil(n / 4) channels and
# a 3x3 depthwise cheap conv for the rest; the BN and ReLU of each layer follow the module as they followed the
# conv. Same recipe as the plain network (./_base_/cifar10_bs128.py).
#
#   python tools/train.py configs/cifar10/ghost-vgg16-s4-d3_cifar10.py          # torch-2.1 stack (mmpretrain)
_base_ = './vgg16_cifar10.py'
model = dict(backbone=dict(conv_cfg=dict(type='GhostConv', ratio=4, dw_size=3)))
