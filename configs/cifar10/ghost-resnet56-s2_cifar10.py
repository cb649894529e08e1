# Ghost-ResNet-56 (s=2, d=3) on CIFAR-10: the GhostNet paper's Table 3 network, every conv a Ghost module.
# Paper (Table 3): 0.43M weights, 63M FLOPs, 92.7% top-1 (ResNet-56: 0.85M, 125M, 93.0%).
# Measured here (mmengine get_model_complexity_info, whole classifier, 1x3x32x32):
#     0.44M params, 66.2M FLOPs (65.1M convs + classifier, the rest norms and pools)
#     (.venv-torch21/bin/python benchmarks/ghost_networks_flops.py)
#
# conv_cfg reaches every conv of CifarResNet, the 3 -> 16 stem conv included (the shortcuts are parameter-free);
# the norms and activations follow each Ghost module as they followed the conv. Same recipe as the plain network.
#
#   python tools/train.py configs/cifar10/ghost-resnet56-s2_cifar10.py          # torch-2.1 stack
_base_ = './resnet56_cifar10.py'
model = dict(backbone=dict(conv_cfg=dict(type='GhostConv', ratio=2, dw_size=3)))
