# The CIFAR-10 recipe shared by configs/cifar10/: mmpretrain's own CIFAR-10 dataset, pipeline, schedule and
# runtime, on one GPU with batch 128.
#
# The GhostNet paper does not state its CIFAR-10 training recipe. This is the standard one for these networks
# (He et al., "Deep Residual Learning", Sec. 4.2, as mmpretrain's cifar10_bs128 schedule implements it):
# SGD lr 0.1, momentum 0.9, weight decay 1e-4, batch 128, 200 epochs with the lr divided by 10 at epochs 100 and
# 150; random crop 32 with 4-pixel padding and horizontal flip; per-channel mean/std normalisation.
#
# Data: mmpretrain's CIFAR10 dataset downloads the original binary release into data/cifar10 on first use.
# Offline, put cifar-10-batches-py/ there yourself (mmpretrain's layout), e.g. from
# https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz.
_base_ = [
    'mmpretrain::_base_/datasets/cifar10_bs16.py',
    'mmpretrain::_base_/schedules/cifar10_bs128.py',
    'mmpretrain::_base_/default_runtime.py',
]
default_scope = 'mmpretrain'
# mmghost registers GhostConv and CifarResNet in mmengine's root MODELS: found from the mmpretrain scope.
custom_imports = dict(imports=['mmghost'], allow_failed_imports=False)

# mmpretrain's dataset config gives 8 GPUs x 16; one GPU x 128 is the same total batch.
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader
# The lr above is for a total batch of 128 (`tools/train.py ... --auto-scale-lr` rescales it for another one).
auto_scale_lr = dict(base_batch_size=128)
