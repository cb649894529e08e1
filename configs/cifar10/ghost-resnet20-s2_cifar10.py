# Ghost-ResNet-20 (s=2, d=3) on CIFAR-10: the Ghost version of resnet20_cifar10.py, every conv a Ghost module.
# Not in the paper; the Ghost network of the CPU reproduction, benchmarks/cifar_ghost.py.
# Measured here (mmengine get_model_complexity_info, whole classifier, 1x3x32x32):
#     0.14M params, 21.5M FLOPs (21.1M convs + classifier, the rest norms and pools)
#     (.venv-torch21/bin/python benchmarks/ghost_networks_flops.py)
#
# conv_cfg reaches every conv of CifarResNet, the 3 -> 16 stem conv included (the shortcuts are parameter-free);
# the norms and activations follow each Ghost module as they followed the conv. Same recipe as the plain network.
#
#   python tools/train.py configs/cifar10/ghost-resnet20-s2_cifar10.py          # torch-2.1 stack
_base_ = './resnet20_cifar10.py'
model = dict(backbone=dict(conv_cfg=dict(type='GhostConv', ratio=2, dw_size=3)))
