# Ghost-VGG-16 (s=2, d=7) on CIFAR-10: every conv of vgg16_cifar10.py is a Ghost module, the paper's ablation of the
# cheap kernel d at s=2 (Tables 1-2).
# Paper: 7.7M weights, 163M FLOPs, 93.1% top-1 (VGG-16: 15M, 313M, 93.6%).
# Measured here (mmengine get_model_complexity_info, whole classifier, 1x3x32x32):
#     7.48M params, 163.9M FLOPs (163.4M convs + classifier, the rest norms and pools)
#     (.venv-torch21/bin/python benchmarks/ghost_networks_flops.py)
#
# GhostConv replaces each 3x3 conv (the first, 3 -> 64, included): a 3x3 primary conv to ceil(n / 2) channels and
# a 7x7 depthwise cheap conv for the rest; the BN and ReLU of each layer follow the module as they followed the
# conv. Same recipe as the plain network (./_base_/cifar10_bs128.py).
#
#   python tools/train.py configs/cifar10/ghost-vgg16-s2-d7_cifar10.py          # torch-2.1 stack (mmpretrain)
_base_ = './vgg16_cifar10.py'
model = dict(backbone=dict(conv_cfg=dict(type='GhostConv', ratio=2, dw_size=7)))
