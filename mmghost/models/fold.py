"""Deploy mode for a whole model: fold the batch norms that follow :class:`~mmghost.models.layers.GhostConv`
layers, and put a family backbone in its deploy mode. ``tools/test.py --deploy`` (through
``BackboneDeployHook``) and ``tools/deploy.py`` both call :func:`deploy_model`.

mmcv's ``fuse_conv_bn`` only folds a norm into an ``nn.Conv2d``; a ``GhostConv`` is two convs, so its norm needs
:meth:`GhostConv.fold_norm`. Which norm follows which conv is not in a module tree, only in ``forward``; like
``fuse_conv_bn``, this relies on the places where OpenMMLab code fixes the order:

* mmcv ``ConvModule`` whose ``order`` has the norm right after the conv (mmdet FPN, heads, mmpretrain VGG...);
* ``nn.Sequential`` children: a ``GhostConv`` directly followed by a batch norm (ResNet downsample branches,
  deep stems);
* the ResNet-style block convention of mmdet and mmpretrain (``BasicBlock``, ``Bottleneck``, ResNet stems,
  :class:`~mmghost.models.backbones.CifarResNet`): a child ``conv{i}`` and the norm named by ``norm{i}_name``,
  applied as ``norm{i}(conv{i}(x))``.

Only batch norms with running statistics fold (GN, LN and friends depend on the input); others stay as they are.
"""
from typing import Optional

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.logging import print_log

from .layers.ghost_conv import GhostConv

__all__ = ['fuse_ghost_conv_norm', 'deploy_model']


def _foldable(conv, norm) -> bool:
    return (isinstance(conv, GhostConv) and isinstance(norm, nn.modules.batchnorm._BatchNorm)
            and norm.running_var is not None and norm.num_features == conv.out_channels)


def fuse_ghost_conv_norm(model: nn.Module) -> int:
    """Fold every batch norm that follows a ``GhostConv`` into it, in place; the norm becomes ``nn.Identity``.

    Outputs in eval mode stay equal up to float rounding (the folded norm no longer normalises in train mode:
    this is for inference, like mmcv's ``fuse_conv_bn``). Calling it again folds nothing.

    Args:
        model (nn.Module): Any model.

    Returns:
        int: The number of norms folded.
    """
    folded = 0
    for module in list(model.modules()):
        pairs = []  # (conv, name of the norm child in ``module``)
        if isinstance(module, ConvModule):
            order = module.order
            if module.with_norm and order.index('norm') == order.index('conv') + 1:
                pairs.append((module.conv, module.norm_name))
        elif isinstance(module, nn.Sequential):
            names = list(module._modules)
            pairs += [(module._modules[a], b) for a, b in zip(names, names[1:])]
        else:
            for i in range(1, 10):
                norm_name = getattr(module, f'norm{i}_name', None)
                if isinstance(norm_name, str):
                    pairs.append((module._modules.get(f'conv{i}'), norm_name))
        for conv, norm_name in pairs:
            norm = module._modules.get(norm_name)
            if _foldable(conv, norm):
                conv.fold_norm(norm)
                module._modules[norm_name] = nn.Identity()
                folded += 1
                if isinstance(module, ConvModule):
                    module.efficient_conv_bn_eval_forward = None  # it would read the (gone) norm's statistics
    return folded


def deploy_model(model: nn.Module, channels_last: Optional[bool] = None, strict: bool = False,
                 form: str = 'auto', block: int = 16) -> nn.Module:
    """Put a model in deploy mode, in place: fold the norms after its ``GhostConv`` layers
    (:func:`fuse_ghost_conv_norm`), call its backbone's ``switch_to_deploy`` (mmghost's family backbones:
    norms folded, V3 re-parameterised, memory layout) and give an NCHW family backbone a graph form for ONNX
    runtimes (:mod:`mmghost.models.deploy_forms`). Eval-mode outputs stay equal up to float rounding.

    Args:
        model (nn.Module): A detector or classifier (its ``backbone`` is used), or a backbone itself.
        channels_last (bool, optional): Passed to the backbone's ``switch_to_deploy``. Default: None (its choice).
        strict (bool): Raise TypeError if there is nothing to do (no family backbone, no ``GhostConv`` norm to
            fold). Default: False.
        form (str): Graph form of a family backbone's trunk: ``'plain'`` (the deployed modules as they are),
            ``'padded'`` or ``'split'`` (see :mod:`mmghost.models.deploy_forms`), or ``'auto'``: ``'split'``
            when the backbone ends up NCHW on the CPU (the ONNX export case: ``tools/deploy.py``,
            ``tools/export_onnx.py --deploy``), ``'plain'`` otherwise (channels_last PyTorch, CUDA), and
            ``'plain'`` for trunks the forms do not cover (Ghost ratio other than 2). Heads, necks and
            ``GhostConv`` layers keep their plain form. Default: ``'auto'``.
        block (int): Channel block the forms pad the Ghost modules' halves to (16 fits AVX-512's and AVX2's
            blocked layouts). Default: 16.

    Returns:
        nn.Module: ``model``.
    """
    from .deploy_forms import DEPLOY_FORMS, UnsupportedForm, apply_deploy_form
    if form != 'auto' and form not in DEPLOY_FORMS:
        raise ValueError(f'form must be "auto" or one of {DEPLOY_FORMS}, got {form!r}')
    folded = fuse_ghost_conv_norm(model)
    if folded:
        print_log(f'{type(model).__name__}: folded {folded} batch norms into GhostConv layers', logger='current')
    backbone = getattr(model, 'backbone', model)
    if hasattr(backbone, 'switch_to_deploy'):
        backbone.switch_to_deploy(channels_last=channels_last)
        if hasattr(backbone, 'stage_groups'):  # a family backbone (GhostNetBase)
            on_cpu = next(backbone.parameters()).device.type == 'cpu'
            chosen = form if form != 'auto' else ('split' if on_cpu and not backbone.channels_last else 'plain')
            try:
                if apply_deploy_form(backbone, chosen, block):
                    print_log(f'{type(backbone).__name__}: deploy form {chosen!r} (block {block})', logger='current')
            except UnsupportedForm as e:
                if form != 'auto':
                    raise
                print_log(f'{type(backbone).__name__}: plain deploy form ({e})', logger='current')
        elif form not in ('auto', 'plain'):
            raise ValueError(f'form {form!r} needs a GhostNet-family backbone, got {type(backbone).__name__}')
    elif strict and not folded:
        raise TypeError(f'{type(backbone).__name__} has no switch_to_deploy() and {type(model).__name__} has no '
                        'GhostConv followed by a batch norm: there is nothing to put in deploy mode')
    return model
