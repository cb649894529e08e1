"""Params and FLOPs of the GhostNet paper's Ghost-VGG-16, Ghost-ResNet-56 and Ghost-ResNet-50 configs, next to the
paper's figures.

    .venv-torch21/bin/python benchmarks/ghost_networks_flops.py [--json OUT.json]

Needs mmpretrain (the torch-2.1 stack): every row is the mmpretrain ``ImageClassifier`` of a config in
configs/cifar10/ or configs/ghost_resnet/ (or mmpretrain's own ResNet-50 config), built with random weights and
measured whole (backbone, neck and head) by mmengine's ``get_model_complexity_info`` at 1x3x32x32 (CIFAR) or
1x3x224x224 (ImageNet). "FLOPs" are multiply-adds, as the paper counts them. mmengine also counts what the
paper's figures leave out: batch norms (one multiply-add per element in eval mode) and poolings; the
``conv+fc`` column is the convolutions and linear layers alone, for the comparison with the paper.
"""
import argparse
import json
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# (config, input side, paper params, paper FLOPs, paper top-1, paper row). Paper = GhostNet, CVPR 2020: Table 3
# (CIFAR-10 VGG-16 / ResNet-56), the s and d ablations on VGG-16 (Tables 1-2), Table 5 (ImageNet ResNet-50), as
# reproduced by the Paperspace article on GhostNet and the README of TingsongYu/ghostnet_cifar10 (docs/ghost_module.md).
# The CIFAR ResNet-20 rows are the benchmark's network (benchmarks/cifar_ghost.py): He et al. give 0.27M params.
PAPER = (
    ('configs/cifar10/vgg16_cifar10.py', 32, 15e6, 313e6, 93.6, 'VGG-16'),
    ('configs/cifar10/ghost-vgg16-s2_cifar10.py', 32, 7.7e6, 158e6, 93.7, 'Ghost-VGG-16 s=2 d=3'),
    ('configs/cifar10/ghost-vgg16-s3-d3_cifar10.py', 32, 5.2e6, 107e6, 93.4, 'Ghost-VGG-16 s=3 d=3'),
    ('configs/cifar10/ghost-vgg16-s4-d3_cifar10.py', 32, 4.0e6, 80e6, 93.0, 'Ghost-VGG-16 s=4 d=3'),
    ('configs/cifar10/ghost-vgg16-s5-d3_cifar10.py', 32, 3.3e6, 65e6, 92.9, 'Ghost-VGG-16 s=5 d=3'),
    ('configs/cifar10/ghost-vgg16-s2-d1_cifar10.py', 32, 7.6e6, 157e6, 93.5, 'Ghost-VGG-16 s=2 d=1'),
    ('configs/cifar10/ghost-vgg16-s2-d5_cifar10.py', 32, 7.7e6, 160e6, 93.4, 'Ghost-VGG-16 s=2 d=5'),
    ('configs/cifar10/ghost-vgg16-s2-d7_cifar10.py', 32, 7.7e6, 163e6, 93.1, 'Ghost-VGG-16 s=2 d=7'),
    ('configs/cifar10/resnet56_cifar10.py', 32, 0.85e6, 125e6, 93.0, 'ResNet-56'),
    ('configs/cifar10/ghost-resnet56-s2_cifar10.py', 32, 0.43e6, 63e6, 92.7, 'Ghost-ResNet-56 s=2'),
    ('configs/cifar10/resnet20_cifar10.py', 32, 0.27e6, None, None, 'ResNet-20 (He et al.)'),
    ('configs/cifar10/ghost-resnet20-s2_cifar10.py', 32, None, None, None, 'Ghost-ResNet-20 s=2'),
    ('mmpretrain::resnet/resnet50_8xb32_in1k.py', 224, 25.6e6, 4.1e9, 75.3, 'ResNet-50'),
    ('configs/ghost_resnet/ghost-resnet50-s2_8xb32_in1k.py', 224, 13.0e6, 2.2e9, 75.0, 'Ghost-ResNet-50 s=2'),
    ('configs/ghost_resnet/ghost-resnet50-s4_8xb32_in1k.py', 224, 6.5e6, 1.2e9, 74.1, 'Ghost-ResNet-50 s=4'),
)


def build_classifier(config):
    """The config's mmpretrain model with random weights (eval mode)."""
    from mmengine.config import Config
    from mmengine.hub import get_config
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    cfg = get_config(config) if '::' in config else Config.fromfile(osp.join(ROOT, config))
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmpretrain.registry import MODELS
    return MODELS.build(cfg.model).eval()


def measure(model, side):
    """FLOPs (multiply-adds), the conv+linear part of them, and params of ``model`` at 1x3xSxS."""
    import torch
    from mmengine.analysis import FlopAnalyzer, get_model_complexity_info
    info = get_model_complexity_info(model, input_shape=(3, side, side), show_table=False, show_arch=False)
    with torch.no_grad():
        analyzer = (FlopAnalyzer(model, (torch.zeros(1, 3, side, side), )).unsupported_ops_warnings(False)
                    .uncalled_modules_warnings(False).tracer_warnings('none'))
        by_op = analyzer.by_operator()
    conv_fc = sum(v for k, v in by_op.items() if k in ('conv', 'linear', 'addmm', 'matmul'))
    return dict(flops=int(info['flops']), conv_fc_flops=int(conv_fc), params=int(info['params']),
                by_operator={k: int(v) for k, v in by_op.items()})


def measure_all(rows=PAPER):
    results = []
    for config, side, p_params, p_flops, p_top1, label in rows:
        m = measure(build_classifier(config), side)
        results.append(dict(config=config, network=label, input=f'1x3x{side}x{side}', paper_params=p_params,
                            paper_flops=p_flops, paper_top1=p_top1, **m))
    return results


def _fmt(value, unit):
    if value is None:
        return '-'
    return f'{value / 1e9:.2f}B' if unit == 'B' else f'{value / 1e6:.2f}M'


def markdown(results):
    lines = ['| network (config) | paper params | measured params | paper FLOPs | measured FLOPs | conv+fc FLOPs |',
             '|---|---|---|---|---|---|']
    for r in results:
        unit = 'B' if r['input'].endswith('224') else 'M'
        lines.append(f"| {r['network']} (`{osp.basename(r['config'])}`) | {_fmt(r['paper_params'], 'M')} | "
                     f"{_fmt(r['params'], 'M')} | {_fmt(r['paper_flops'], unit)} | {_fmt(r['flops'], unit)} | "
                     f"{_fmt(r['conv_fc_flops'], unit)} |")
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--json', help='also write the measurements to this JSON file')
    args = parser.parse_args(argv)
    results = measure_all()
    print(markdown(results))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
