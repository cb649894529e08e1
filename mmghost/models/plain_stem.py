"""``PlainStem``: a backbone built with ``conv_cfg`` everywhere except its stem, which keeps plain convs.

The paper's Ghost-ResNet-50 (Table 5; official ``ghostnet_pytorch/ghost_resnet.py``) replaces every conv of
ResNet-50 with a Ghost module -- the blocks' three convs and the downsample convs -- except the 7x7 stem conv, which
stays an ``nn.Conv2d``. mmdet's and mmpretrain's ``ResNet`` build the stem with the same ``conv_cfg`` as the blocks
and have no argument for the stem alone, so ``conv_cfg=dict(type='GhostConv')`` alone would make a Ghost stem too
(at s=2 the stem's 118.0M multiply-adds at 224x224 would become 62.6M: not the paper's network). ``PlainStem``
builds the backbone as configured, then rebuilds the named convs as plain ``nn.Conv2d`` with the same geometry::

    backbone=dict(type='PlainStem',
                  backbone=dict(type='mmdet.ResNet', depth=50, conv_cfg=dict(type='GhostConv', ratio=2)),
                  plain_convs=('conv1', ))

``PlainStem`` is not a class: it is a builder function registered by name in mmengine's root ``MODELS`` (found
from every scope; it replaces nothing), and what it returns is the inner backbone itself (an mmdet/mmpretrain
``ResNet``), with the same module names and state-dict keys, so checkpoints move between the ImageNet and the
detection configs unchanged. Its ``init_cfg``, when given (``None`` included: what tools set to build a model
without loading weights), becomes the inner backbone's.
"""
from typing import Sequence, Union

import torch.nn as nn
from mmcv.cnn import build_conv_layer
from mmengine.registry import MODELS as ROOT_MODELS

class _Keep:
    """The default of ``plain_stem(init_cfg=...)``: keep the inner backbone's own ``init_cfg``."""

    def __repr__(self) -> str:
        return "the backbone's own"


KEEP = _Keep()
_GEOMETRY = ('in_channels', 'out_channels', 'kernel_size', 'stride', 'padding', 'dilation', 'groups')


def _plain_twin(name: str, layer: nn.Module) -> nn.Conv2d:
    """An ``nn.Conv2d`` with the geometry of conv layer ``layer`` (a ``GhostConv`` or any conv-like layer)."""
    missing = [attr for attr in _GEOMETRY if not hasattr(layer, attr)]
    if missing:
        raise ValueError(f'PlainStem: {name!r} is a {type(layer).__name__}, not a conv layer (it has no '
                         f'{", ".join(missing)})')
    # A GhostConv's bias lives in its two convs; a conv's in its own ``bias``.
    bias = any(param_name.split('.')[-1] == 'bias' for param_name, _ in layer.named_parameters())
    return build_conv_layer(None, *(getattr(layer, attr) for attr in _GEOMETRY), bias=bias)


def plain_stem(backbone: dict, plain_convs: Sequence[str] = ('conv1', ),
               init_cfg: Union[dict, list, None, _Keep] = KEEP) -> nn.Module:
    """Build ``backbone`` and turn the convs named in ``plain_convs`` into plain ``nn.Conv2d`` layers.

    Args:
        backbone (dict): Config of the backbone, e.g. ``dict(type='mmdet.ResNet', depth=50, conv_cfg=...)``. Its
            type is looked up like any model type: in the current default scope, or in the scope it names.
        plain_convs (Sequence[str]): Dotted module names, in the built backbone, of the convs to keep plain.
            Default: ``('conv1', )``, the stem conv of mmdet's and mmpretrain's ``ResNet`` (``deep_stem=False``).
        init_cfg (dict | list | None): If given, replaces ``backbone['init_cfg']``; ``None`` too, so that
            ``cfg.model.backbone.init_cfg = None`` (how mmghost's tools and mmdet's build a model whose weights
            come from a checkpoint) leaves the inner backbone without weights to load. Default: not given (keep
            the backbone's own).

    Returns:
        nn.Module: The backbone built from ``backbone``, with the named convs plain (freshly initialised; the
        backbone's ``init_weights`` initialises them as it does its other convs).
    """
    if not isinstance(backbone, dict) or 'type' not in backbone:
        raise ValueError(f'PlainStem: backbone must be a config dict with a type, got {backbone!r}')
    if isinstance(plain_convs, str) or not plain_convs:
        raise ValueError(f'PlainStem: plain_convs must be a non-empty sequence of module names, got {plain_convs!r}')
    backbone = dict(backbone)
    if not isinstance(init_cfg, _Keep):
        backbone['init_cfg'] = init_cfg
    model = ROOT_MODELS.build(backbone)
    for name in plain_convs:
        try:
            layer = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f'PlainStem: {type(model).__name__} has no module {name!r}') from None
        if type(layer) is nn.Conv2d:  # already plain (e.g. built without conv_cfg)
            continue
        parent_name, _, child = name.rpartition('.')
        parent = model.get_submodule(parent_name) if parent_name else model
        plain = _plain_twin(name, layer)
        # A stem frozen by the backbone's __init__ (frozen_stages >= 0) stays frozen.
        plain.requires_grad_(any(param.requires_grad for param in layer.parameters()))
        setattr(parent, child, plain)
    return model


ROOT_MODELS.register_module('PlainStem', module=plain_stem)
