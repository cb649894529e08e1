"""FLOPs and parameters of a config's backbone alone and of the whole detector, with a per-stage table.

    python tools/get_flops.py configs/retinanet_ghostnet_fpn.py [--shape H W] [--backbone-shape H W] [--paper]
        [--json OUT.json] [--cfg-options KEY=VALUE ...]

Everything is counted by mmengine's complexity analysis (``mmengine.analysis.FlopAnalyzer``, the counter behind
``get_model_complexity_info``, and ``parameter_count``) on a model built from the config with random weights
(no checkpoint is loaded). "FLOPs" are multiply-adds, as the paper and mmengine count them; mmengine counts
convs, linears, norms (eval-mode batch norm: one multiply-add per element), pools and upsampling, and skips
activations and elementwise products and sums (SE/DFC gates, residual adds).

* Backbone: at ``--backbone-shape`` (default 224x224, the paper's convention), one row per stage.
* Detector: its tensor forward (backbone + neck + heads, no post-processing) at ``--shape`` (default 800x1333,
  the 1x-schedule test scale), padded up to a multiple of 32 as mmdet's data preprocessor does. For two-stage
  detectors this includes the RoI head on the RPN's proposals, so the count depends on how many survive NMS.
* ``--paper``: the papers' figures (constants, labelled as such) next to what this tool measures at 224x224:
  every family member and width with a published figure (GhostNet 1.0x ImageNet network and 1.1x detection
  backbone, GhostNetV2 1.0/1.3/1.6x, GhostNetV3 1.0/1.3x ImageNet networks), the paper's Table 8 detection rows,
  and mmdet's MobileNetV2 1.0x. Family members not registered (not importable) are listed as not measured.
"""
import argparse
import json
import math
import os.path as osp
import sys
from functools import partial

import torch
from mmcv.cnn.utils import fuse_conv_bn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.config import DictAction

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:  # run as `python tools/get_flops.py` from a checkout without an install
    sys.path.insert(0, ROOT)

import mmghost  # noqa: E402,F401  registers the GhostNet family
from mmghost.engine import build_detector, load_config  # noqa: E402
from mmghost.models import GhostNetBase, classifier_class  # noqa: E402
from mmghost.registry import MODELS  # noqa: E402
from mmghost.utils import exit_on_user_error  # noqa: E402

# Papers' constants, not measured by this project. "FLOPs" are multiply-adds at 224x224.
# GhostNet (CVPR 2020): Table 8, COCO val, 1x schedule, 800/1333 input, backbone FLOPs at 224x224; Table 7,
# the ImageNet network.
PAPER_TABLE8 = (
    # backbone, paper backbone FLOPs, RetinaNet mAP, Faster R-CNN mAP
    dict(backbone='MobileNetV2 1.0x', flops=300e6, retinanet_map=26.7, faster_rcnn_map=27.5),
    dict(backbone='MobileNetV3 1.0x', flops=219e6, retinanet_map=26.0, faster_rcnn_map=26.9),
    dict(backbone='GhostNet 1.1x', flops=164e6, retinanet_map=26.6, faster_rcnn_map=26.9),
)
PAPER_TABLE7_GHOSTNET_1X = dict(backbone='GhostNet 1.0x', flops=141e6, params=5.2e6, top1=73.9)
# ImageNet networks of the family with a published figure: (type, width, paper FLOPs, paper top-1, where).
PAPER_IMAGENET = (
    ('GhostNet', 1.0, 141e6, 73.9, 'GhostNet paper, Table 7'),
    ('GhostNetV2', 1.0, 167e6, 75.3, 'GhostNetV2 paper (NeurIPS 2022)'),
    ('GhostNetV2', 1.3, 269e6, 76.9, 'GhostNetV2 paper'),
    ('GhostNetV2', 1.6, 399e6, 77.8, 'GhostNetV2 paper'),
    # The V3 abstract gives 1.3x: 79.1% with 269M FLOPs. 1.0x: 77.1% top-1 (issue 12, official README); its
    # FLOPs are taken as V2-1.0x's (the re-parameterised V3 is V2's architecture), not read from the paper.
    ('GhostNetV3', 1.0, 167e6, 77.1, 'GhostNetV3: V2-1.0x\'s FLOPs (deployed V3 = V2 architecture)'),
    ('GhostNetV3', 1.3, 269e6, 79.1, 'GhostNetV3 paper, abstract'),
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='FLOPs and parameters of a detector config and its backbone')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--shape', type=int, nargs=2, default=[800, 1333], metavar=('H', 'W'),
                        help='detector input height and width (default: 800 1333)')
    parser.add_argument('--backbone-shape', type=int, nargs=2, default=[224, 224], metavar=('H', 'W'),
                        help='backbone input height and width (default: 224 224, as in the paper)')
    parser.add_argument('--no-detector', action='store_true', help='measure the backbone only (fast)')
    parser.add_argument('--paper', action='store_true',
                        help="print the paper's Table 8 rows next to the backbones measured here at 224x224")
    parser.add_argument('--json', metavar='OUT', help='also write the measurements to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, as key=value pairs')
    args = parser.parse_args(argv)
    if min(args.shape + args.backbone_shape) < 32:
        parser.error('--shape and --backbone-shape must be at least 32 pixels')
    return args


def _analyzer(model, inputs):
    return (FlopAnalyzer(model, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            .tracer_warnings('none'))


def fmt(value, unit='M'):
    """Format a count in millions (M) or billions (G) with two decimals."""
    scale = dict(K=1e3, M=1e6, G=1e9)[unit]
    return f'{value / scale:.2f}{unit}'


def build_backbone(backbone_cfg):
    from mmdet.registry import MODELS
    backbone_cfg = dict(backbone_cfg)
    backbone_cfg['init_cfg'] = None
    return MODELS.build(backbone_cfg)


def backbone_complexity(backbone: torch.nn.Module, shape=(224, 224)) -> dict:
    """Total FLOPs and params of a backbone at ``1x3xHxW``, and per stage for the GhostNet family.

    The stage rows come from the backbone's own stage loop (``forward_taps``) and module lists
    (``stage_module_names``); an ImageNet classifier adds a row for its head (``conv_head``, ``classifier``).
    """
    backbone.eval()  # not `backbone = backbone.eval()`: mmdet's MobileNetV2.train() returns None
    x = torch.randn(1, 3, *shape)
    with torch.no_grad():
        analyzer = _analyzer(backbone, (x, ))
        by_module = analyzer.by_module()
        total = analyzer.total()
        params = parameter_count(backbone)
    result = dict(input_shape=[1, 3, *shape], flops=total, params=params[''], stages=[])
    if not isinstance(backbone, GhostNetBase):
        return result
    built = list(range(backbone.num_stages + 1))
    with torch.no_grad():
        sizes = [tuple(f.shape[2:]) for f in backbone.forward_taps(x, built)]
    for index in built:
        modules = backbone.stage_module_names(index)
        info = backbone.all_feature_info[index]
        result['stages'].append(
            dict(stage=index, name='stem' if index == 0 else ('final conv' if index == 5 else f'stage {index}'),
                 modules='stem' if index == 0 else (
                     modules[0] if len(modules) == 1 else f'{modules[0]}..{modules[-1].split(".")[-1]}'),
                 channels=info['num_chs'], stride=info['reduction'], output_size=list(sizes[index]),
                 output=index in backbone.out_indices,
                 flops=sum(by_module.get(m, 0) for m in modules), params=sum(params.get(m, 0) for m in modules)))
    head = [name for name in ('conv_head', 'classifier') if hasattr(backbone, name)]
    if head:
        # The global pool is a function of the classifier's forward: mmengine counts it at the top level.
        trunk = sum(s['flops'] for s in result['stages'])
        result['stages'].append(
            dict(stage=None, name='ImageNet head', modules='pool, ' + ', '.join(head), channels=backbone.num_classes,
                 stride='', output_size=[], output=True, flops=total - trunk,
                 params=sum(params.get(m, 0) for m in head)))
    counted = sum(s['flops'] for s in result['stages'])
    assert counted == total, f'per-stage FLOPs {counted} do not add up to the total {total}'
    return result


def _detector_data_samples(h, w):
    from mmdet.structures import DetDataSample
    sample = DetDataSample()
    sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
                             scale_factor=(1.0, 1.0)))
    return [sample]


def detector_complexity(detector: torch.nn.Module, shape=(800, 1333)) -> dict:
    """FLOPs and params of the detector's tensor forward at ``shape`` padded to a multiple of 32."""
    h, w = (int(math.ceil(s / 32) * 32) for s in shape)
    detector = detector.eval()
    x = torch.randn(1, 3, h, w)
    # As mmdet's get_flops: bind the data samples so that the traced forward takes the image tensor only.
    detector.forward = partial(detector.forward, data_samples=_detector_data_samples(h, w), mode='tensor')
    try:
        with torch.no_grad():
            analyzer = _analyzer(detector, (x, ))
            by_module = analyzer.by_module()
            total = analyzer.total()
    finally:
        del detector.forward
    params = parameter_count(detector)
    parts = [name for name, _ in detector.named_children() if name != 'data_preprocessor']
    return dict(input_shape=[1, 3, h, w], requested_shape=list(shape), flops=total, params=params[''],
                parts=[dict(name=p, flops=by_module.get(p, 0), params=params.get(p, 0)) for p in parts])


def measure(config, shape=(800, 1333), backbone_shape=(224, 224), detector=True, cfg_options=None) -> dict:
    """What the tool prints, as a dict (used by the tests and the metafile check)."""
    cfg = load_config(config, cfg_options)
    model = build_detector(cfg)
    result = dict(config=config, backbone_type=cfg.model.backbone.type,
                  backbone=backbone_complexity(model.backbone, tuple(backbone_shape)))
    if detector:
        result['detector'] = detector_complexity(model, tuple(shape))
    return result


def _registered(name):
    return MODELS.get(name) is not None


def measure_paper_backbones() -> list:
    """What the papers give figures for, measured here at 224x224: the family's ImageNet networks per width,
    GhostNet's detection backbones (1.0x, 1.1x) and mmdet's MobileNetV2."""
    rows = []
    for name, widen, paper_flops, top1, where in PAPER_IMAGENET:
        row = dict(backbone=f'{name} {widen:.1f}x', kind='ImageNet network', paper_flops=paper_flops,
                   paper_top1=top1, paper_source=where)
        if _registered(name):
            # The papers count the deployed network: convs and the classifier, no norms (mmengine counts eval-mode
            # batch norms), V3's re-parameterisation branches fused. Both forms are kept.
            model = classifier_class(name)(widen)
            built = backbone_complexity(model)
            deployed = backbone_complexity(model.switch_to_deploy(channels_last=False))
            row.update(flops=deployed['flops'], params=built['params'], built_flops=built['flops'],
                       deployed_params=deployed['params'])
        rows.append(row)
    ghostnet = MODELS.get('GhostNet')
    for widen in (1.0, 1.1):
        det = backbone_complexity(ghostnet(widen))
        deployed = backbone_complexity(ghostnet(widen).switch_to_deploy(channels_last=False))
        full = backbone_complexity(ghostnet(widen, out_indices=(5, )))
        rows.append(dict(backbone=f'GhostNet {widen:.1f}x', kind='detection backbone', flops=det['flops'],
                         deployed_flops=deployed['flops'], flops_with_final_conv=full['flops'], params=det['params']))
    try:  # mmdet's MobileNetV2; importing mmdet.models needs mmcv's compiled ops
        from mmdet.models.backbones import MobileNetV2
    except ImportError:  # pragma: no cover
        return rows
    # mmdet's MobileNetV2 always runs (and builds) its final 1x1 conv to 1280 channels, whatever out_indices.
    mbv2 = MobileNetV2(widen_factor=1.0, out_indices=(7, ))
    full = backbone_complexity(mbv2)
    del mbv2.conv2
    mbv2.layers.remove('conv2')
    mbv2.out_indices = (6, )
    det = backbone_complexity(mbv2)
    deployed = backbone_complexity(fuse_conv_bn(mbv2))
    rows.append(dict(backbone='MobileNetV2 1.0x', kind='detection backbone', flops=det['flops'],
                     deployed_flops=deployed['flops'], flops_with_final_conv=full['flops'], params=det['params']))
    return rows


def _table(header, rows, align=None):
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    align = align or ['<'] + ['>'] * (len(header) - 1)

    def line(r):
        return '| ' + ' | '.join(f'{c:{a}{w}}' for c, a, w in zip(r, align, widths)) + ' |'

    sep = '|' + '|'.join(('-' * (w + 1) + ':' if a == '>' else '-' * (w + 2)) for a, w in zip(align, widths)) + '|'
    return '\n'.join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def format_report(result, paper_rows=None) -> str:
    out = []
    bb = result['backbone']
    h, w = bb['input_shape'][2:]
    out.append(f'Config: {result["config"]}')
    out.append('FLOPs are multiply-adds counted by mmengine.analysis (convs, linears, norms, pools, upsampling; not '
               'activations or elementwise products and sums); random weights, batch 1.')
    out.append('')
    out.append(f'Backbone ({result["backbone_type"]}) at {h}x{w}: {fmt(bb["flops"])} FLOPs, '
               f'{bb["params"]:,} params ({fmt(bb["params"])})')
    if bb['stages']:
        rows = []
        for s in bb['stages']:
            rows.append([s['name'], s['modules'], 'yes' if s['output'] else '', s['channels'], s['stride'],
                         'x'.join(map(str, s['output_size'])), fmt(s['flops']),
                         f'{100 * s["flops"] / bb["flops"]:.1f}%', f'{s["params"]:,}'])
        rows.append(['total', '', '', '', '', '', fmt(bb['flops']), '100.0%', f'{bb["params"]:,}'])
        out.append(_table(['stage', 'modules', 'output', 'channels', 'stride', 'size', 'FLOPs', 'share', 'params'],
                          rows, ['<', '<', '<'] + ['>'] * 6))
    if 'detector' in result:
        det = result['detector']
        dh, dw = det['input_shape'][2:]
        rh, rw = det['requested_shape']
        pad = '' if (dh, dw) == (rh, rw) else f' ({rh}x{rw} padded to a multiple of 32)'
        out.append('')
        out.append(f'Detector tensor forward (no post-processing) at {dh}x{dw}{pad}: {fmt(det["flops"], "G")} '
                   f'FLOPs, {det["params"]:,} params ({fmt(det["params"])})')
        rows = [[p['name'], fmt(p['flops'], 'G'), f'{100 * p["flops"] / det["flops"]:.1f}%', f'{p["params"]:,}']
                for p in det['parts']]
        rows.append(['total', fmt(det['flops'], 'G'), '100.0%', f'{det["params"]:,}'])
        out.append(_table(['part', 'FLOPs', 'share', 'params'], rows))
    if paper_rows is not None:
        out.append('')
        out.append('ImageNet networks at 224x224 (trunk + 1280-d head + classifier). "paper" columns: constants quoted '
                   'from the papers; "measured": this tool.')
        rows = []
        for r in (r for r in paper_rows if r['kind'] == 'ImageNet network'):
            measured = 'flops' in r
            rows.append([r['backbone'], f'{r["paper_flops"] / 1e6:.0f}M', fmt(r['flops']) if measured else 'n/a',
                         f'{r["flops"] / r["paper_flops"]:.3f}' if measured else '',
                         fmt(r['built_flops']) if measured else '',
                         f'{r["params"]:,}' if measured else 'not registered', r['paper_top1'], r['paper_source']])
        out.append(_table(['network', 'paper FLOPs', 'measured, deployed', 'ratio', 'as built', 'params (as built)',
                           'paper top-1', 'source'], rows, ['<', '>', '>', '>', '>', '>', '>', '<']))
        out.append('"deployed": after switch_to_deploy() (norms folded into the convs, V3\'s re-parameterisation '
                   'branches fused), what the papers count; "as built": the training form, eval-mode norms counted.')
        out.append('')
        out.append('Paper Table 8 (GhostNet, COCO val, 1x schedule, backbone FLOPs at 224x224). "measured": '
                   'backbone up to the stride-32 blocks ("+ final conv": with the last 1x1 conv of the trunk).')
        measured = {r['backbone']: r for r in paper_rows if r['kind'] == 'detection backbone'}
        rows = []
        for p in PAPER_TABLE8:
            m = measured.get(p['backbone'])
            rows.append([p['backbone'], f'{p["flops"] / 1e6:.0f}M',
                         fmt(m['flops']) if m else 'n/a', fmt(m['deployed_flops']) if m else 'n/a',
                         fmt(m['flops_with_final_conv']) if m else 'n/a',
                         f'{m["params"]:,}' if m else 'n/a', p['retinanet_map'], p['faster_rcnn_map']])
        for name, m in measured.items():
            if name not in {p['backbone'] for p in PAPER_TABLE8}:
                paper = PAPER_TABLE7_GHOSTNET_1X if name == PAPER_TABLE7_GHOSTNET_1X['backbone'] else None
                rows.append([name, f'({paper["flops"] / 1e6:.0f}M, T7)' if paper else '-', fmt(m['flops']),
                             fmt(m['deployed_flops']), fmt(m['flops_with_final_conv']), f'{m["params"]:,}', '-',
                             '-'])
        out.append(_table(['backbone', 'paper FLOPs', 'measured FLOPs', 'norms folded', '+ final conv',
                           'measured params', 'paper RetinaNet mAP', 'paper Faster R-CNN mAP'], rows))
        out.append('MobileNetV3 is not in mmdet: not measured. "T7": paper Table 7 (ImageNet classifier, with its '
                   'head: 141M FLOPs, 5.2M params, 73.9% top-1); GhostNet 1.0x is not in Table 8.')
        out.append('mmengine counts convs, linears, norms, pools and upsampling; not activations or elementwise '
                   'products and sums (the SE/DFC gates, residual adds).')
        out.append('COCO mAP of these configs has not been measured by this project.')
    return '\n'.join(out)


def main(argv=None):
    args = parse_args(argv)
    result = measure(args.config, tuple(args.shape), tuple(args.backbone_shape), detector=not args.no_detector,
                     cfg_options=args.cfg_options)
    paper_rows = measure_paper_backbones() if args.paper else None
    print(format_report(result, paper_rows))
    if args.json:
        if paper_rows is not None:
            result['paper_backbones'] = paper_rows
            result['paper_table8'] = list(PAPER_TABLE8)
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    with exit_on_user_error():
        main()
