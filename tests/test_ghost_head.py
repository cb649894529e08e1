"""Detectors with the Ghost module in the neck and head (configs/ghost_head/, the demo's Ghost-head twin).

Each Ghost-head config is its plain config with ``conv_cfg=dict(type='GhostConv', ...)`` in the FPN and the head:
they build, their neck and head convs are GhostConvs, they train a step and predict at a small input, and the
Ghost head costs about half the FLOPs of the plain one. The deploy export of the demo twin is tested in the mmdeploy
stack (tests/deploy_stack/test_deploy.py).
"""
import os.path as osp

import pytest
import torch
from fixtures.detection_batch import total_loss, training_batch
from mmengine.config import Config

from mmghost.engine import build_detector

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TWINS = {  # Ghost-head config: (its plain config, the head's key in model, the Ghost module's ratio s)
    'configs/ghost_head/retinanet_ghostnet_fpn_ghost-head.py': ('configs/retinanet_ghostnet_fpn.py', 'bbox_head', 2),
    'configs/ghost_head/retinanet_ghostnet_fpn_ghost-head-s3.py': ('configs/retinanet_ghostnet_fpn.py', 'bbox_head',
                                                                   3),
    'configs/ghost_head/faster-rcnn_ghostnet_fpn_ghost-head.py': ('configs/faster_rcnn_ghostnet_fpn.py', 'rpn_head',
                                                                  2),
    'configs/demo/retinanet_ghostnet-ghost-head_shapes.py': ('configs/demo/retinanet_ghostnet_shapes.py',
                                                             'bbox_head', 2),
    'configs/demo/retinanet_ghostnet-ghost-head-s3_shapes.py': ('configs/demo/retinanet_ghostnet_shapes.py',
                                                                'bbox_head', 3),
}


def _ghost_conv_class():
    from mmengine.registry import MODELS
    import mmghost  # noqa: F401  registers GhostConv
    cls = MODELS.get('GhostConv')
    assert cls is not None, 'GhostConv is not registered in mmengine\'s root MODELS'
    return cls


def _convs(module):
    """(GhostConvs, dense nn.Conv2d layers outside any GhostConv) in ``module``."""
    ghost_cls = _ghost_conv_class()
    ghosts = [m for m in module.modules() if isinstance(m, ghost_cls)]
    inside = {id(m) for g in ghosts for m in g.modules()}
    dense = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d) and id(m) not in inside]
    return ghosts, dense


def _cfg(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.model.backbone.init_cfg = None  # random weights: the paper configs point at ImageNet weights
    return cfg


@pytest.mark.parametrize('config', list(TWINS))
def test_ghost_head_config_changes_only_the_neck_and_head_convs(config):
    plain_config, head, ratio = TWINS[config]
    ghost, plain = _cfg(config).model.to_dict(), _cfg(plain_config).model.to_dict()
    ghost_conv = dict(type='GhostConv', ratio=ratio, dw_size=3)
    assert ghost['neck'].pop('conv_cfg') == ghost_conv
    assert ghost[head].pop('conv_cfg') == ghost_conv
    if head == 'rpn_head':  # mmdet's RPNHead takes no conv_cfg: mmghost's subclass adds it
        assert ghost[head]['type'] == 'GhostRPNHead' and plain[head]['type'] == 'RPNHead'
        ghost[head]['type'] = 'RPNHead'
    assert ghost == plain


@pytest.mark.parametrize('config', list(TWINS))
def test_neck_and_head_convs_are_ghost_convs_and_output_convs_dense(config):
    model = build_detector(_cfg(config))
    neck = model.neck
    ghosts, dense = _convs(neck)
    assert not dense, 'every FPN conv is a GhostConv'
    assert len(ghosts) == len(neck.lateral_convs) + len(neck.fpn_convs)
    assert all(c.conv is g for c, g in zip(list(neck.lateral_convs) + list(neck.fpn_convs), ghosts))
    _, head, ratio = TWINS[config]
    assert all(g.ratio == ratio for g in ghosts)
    head = getattr(model, head)
    ghosts, dense = _convs(head)
    assert all(g.ratio == ratio for g in ghosts)
    if head.__class__.__name__ == 'RetinaHead':
        assert len(ghosts) == 2 * head.stacked_convs
        assert sorted(dense, key=id) == sorted([head.retina_cls, head.retina_reg], key=id)
    else:  # GhostRPNHead: the shared 3x3 conv; the 1x1 output convs stay dense
        assert type(head).__name__ == 'GhostRPNHead' and len(ghosts) == head.num_convs == 1
        assert sorted(dense, key=id) == sorted([head.rpn_cls, head.rpn_reg], key=id)
    plain_ghosts, _ = _convs(build_detector(_cfg(TWINS[config][0])))
    assert not plain_ghosts, 'the plain config has no GhostConv'


@pytest.mark.parametrize('config', list(TWINS))
def test_ghost_head_detector_trains_a_step_and_predicts_at_128(config):
    torch.manual_seed(0)
    model = build_detector(_cfg(config))
    model.init_weights()
    data = training_batch(model, height=128, width=128)
    for sample in data['data_samples']:  # a class every config has (the demo has 3)
        sample.gt_instances.labels = torch.tensor([1])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    total = total_loss(model(**data, mode='loss'))
    assert torch.isfinite(total)
    total.backward()
    ghost_params = [p for g in _convs(model.neck)[0] for p in g.parameters()]
    assert ghost_params and all(p.grad is not None and torch.isfinite(p.grad).all() for p in ghost_params)
    assert any(p.grad.abs().sum() > 0 for p in ghost_params)
    before = [p.detach().clone() for p in ghost_params]
    optimizer.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, ghost_params))
    model.eval()
    with torch.no_grad():
        results = model(**data, mode='predict')
    assert len(results) == 1
    boxes = results[0].pred_instances.bboxes
    assert boxes.shape[-1] == 4 and torch.isfinite(boxes).all()


def _head_conv_flops(config, sizes):
    """FLOPs of a RetinaHead's stacked convs (cls_convs + reg_convs) and output convs on features of ``sizes``."""
    from mmdet.registry import MODELS
    from mmengine.analysis import FlopAnalyzer
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = _cfg(config).model.bbox_head
    cfg.pop('train_cfg', None)
    head = MODELS.build(cfg).eval()
    feats = tuple(torch.randn(1, cfg.in_channels, h, w) for h, w in sizes)
    with torch.no_grad():
        flops = FlopAnalyzer(head, (feats, )).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_module = flops.by_module()
    return by_module['cls_convs'] + by_module['reg_convs'], by_module['retina_cls'] + by_module['retina_reg']


def test_ghost_retinanet_head_stacked_convs_cost_half_the_flops():
    """Ghost module, s=2, d=3 on a 256 -> 256 3x3 conv: a 256 -> 128 3x3 conv plus a 3x3 depthwise conv on its 128
    channels, (128*256*9 + 128*9) / (256*256*9) = 1/2 + 1/512 of the dense conv's multiply-adds (the paper's
    speed-up ratio s for s=2)."""
    sizes = [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]  # P3-P7 of a 128x128 input
    plain_stacked, plain_out = _head_conv_flops('configs/retinanet_ghostnet_fpn.py', sizes)
    ghost_stacked, ghost_out = _head_conv_flops('configs/ghost_head/retinanet_ghostnet_fpn_ghost-head.py', sizes)
    pixels = sum(h * w for h, w in sizes)
    assert plain_stacked == pixels * 8 * 256 * 256 * 9  # 4 + 4 stacked 3x3 convs at 256 channels
    assert ghost_stacked == pixels * 8 * (128 * 256 * 9 + 128 * 9)
    assert ghost_stacked / plain_stacked == pytest.approx(0.5 + 1 / 512)
    assert ghost_out == plain_out  # retina_cls and retina_reg stay dense


def test_ghost_retinanet_head_s3_stacked_convs_cost_a_third_of_the_flops():
    """s=3, d=3 on a 256 -> 256 3x3 conv (the official GhostModule's channel counts): a 256 -> ceil(256/3) = 86
    primary 3x3 conv and a 3x3 depthwise conv making (3 - 1) * 86 = 172 ghost maps (170 of them kept)."""
    sizes = [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    plain_stacked, plain_out = _head_conv_flops('configs/retinanet_ghostnet_fpn.py', sizes)
    ghost_stacked, ghost_out = _head_conv_flops('configs/ghost_head/retinanet_ghostnet_fpn_ghost-head-s3.py', sizes)
    pixels = sum(h * w for h, w in sizes)
    assert ghost_stacked == pixels * 8 * (86 * 256 * 9 + 172 * 9)
    assert ghost_stacked / plain_stacked < 0.34
    assert ghost_out == plain_out


def test_ghost_head_detector_flops_below_plain_at_small_input():
    import get_flops  # tools/get_flops.py
    configs = ('configs/demo/retinanet_ghostnet_shapes.py', 'configs/demo/retinanet_ghostnet-ghost-head_shapes.py')
    plain, ghost = (get_flops.detector_complexity(build_detector(_cfg(config)), (128, 128)) for config in configs)
    parts = [{p['name']: p['flops'] for p in r['parts']} for r in (plain, ghost)]
    assert parts[1]['backbone'] == parts[0]['backbone']
    # s=2: about half of the FPN (its 1x1 laterals from 40-160 channels keep a larger share: their cheap 3x3
    # depthwise conv costs 9 / C_in of the primary) and of the head's stacked convs; the output convs stay dense.
    assert parts[1]['neck'] < 0.6 * parts[0]['neck']
    assert parts[1]['bbox_head'] < 0.8 * parts[0]['bbox_head']
    assert ghost['params'] < plain['params']
