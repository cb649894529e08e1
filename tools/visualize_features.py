"""Pictures of a GhostNet-family backbone's features for one image: a Ghost module's intrinsic vs ghost maps,
and every stage.

    python tools/visualize_features.py IMAGE [--config CONFIG] [--checkpoint CKPT] [--out-dir DIR]
        [--module blocks.0.0.ghost1] [--num 8] [--topk 6] [--size 224] [--list-modules]

Writes two PNGs into ``--out-dir`` (default ``work_dirs/features``):

* ``ghost_module.png``: the paper's Fig. 4 for one Ghost module: on the left the *intrinsic* maps made by its
  primary conv, on the right, at the same grid positions, the *ghost* maps that the cheap depthwise operation
  made from them (with ratio s, ghost j comes from intrinsic j // (s - 1)). Each map is scaled to its own
  range (printed under its name), and each ghost's title gives its Pearson correlation r with its source:
  ghosts resemble their source but are not copies (edges, shifts, blurs of it). The ``--num`` liveliest pairs
  are drawn (random weights leave some maps dead after the ReLU).
* ``stage_features.png``: per row one backbone output (stem and each built stage; stride, channels, size):
  the mean over channels, then the ``--topk`` channels with the largest spatial spread.

The backbone is the config's (``model.backbone``: GhostNet, GhostNetV2 or GhostNetV3; default a GhostNet-1.0x
with outputs at strides 4-32), with random weights (``--seed``) unless ``--checkpoint`` gives weights in any
layout ``tools/convert_weights.py`` reads (official/timm ImageNet, a detector checkpoint, mmghost 0.1). A
backbone with re-parameterisation branches (V3) is shown in deploy mode, where each Ghost module has one primary
and one cheap conv. The stages come from the backbone's own stage loop (``forward_taps``). The image is
normalised with the config's ``data_preprocessor`` mean/std (default: mmdet's ImageNet RGB ones) and
resized so that its longer side is ``--size``.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Dict, List, Optional

import cv2
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:  # run as `python tools/visualize_features.py` from a checkout without an install
    sys.path.insert(0, ROOT)

import mmghost  # noqa: E402,F401
from mmghost.models import GhostNet, GhostNetBase  # noqa: E402
from mmghost.models.weights import read_trunk_weights  # noqa: E402
from mmghost.utils import exit_on_user_error  # noqa: E402
from mmghost.utils.safe_load import CheckpointError  # noqa: E402

MEAN = (123.675, 116.28, 103.53)  # mmdet's ImageNet mean/std, RGB
STD = (58.395, 57.12, 57.375)
DEFAULT_MODULE = 'blocks.1.0.ghost1'  # 24 intrinsic maps at stride 2 (GhostNet-1.0x)
CMAP = 'viridis'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Draw a Ghost module's intrinsic/ghost maps and the stages' maps")
    parser.add_argument('image', help='input image (any format OpenCV reads)')
    parser.add_argument('--config', help='detector config whose backbone to use (default: GhostNet-1.0x)')
    parser.add_argument('--checkpoint', help='weights: official/timm ImageNet, a detector checkpoint, mmghost 0.1')
    parser.add_argument('--out-dir', default='work_dirs/features', help='folder for the two PNGs')
    parser.add_argument('--module', default=DEFAULT_MODULE,
                        help=f'the Ghost module to draw (default {DEFAULT_MODULE}; see --list-modules)')
    parser.add_argument('--num', type=int, default=8, help='intrinsic/ghost pairs to draw (default 8)')
    parser.add_argument('--topk', type=int, default=6, help='channels to draw per stage (default 6)')
    parser.add_argument('--size', type=int, default=224, help='longer image side fed to the network')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random weights')
    parser.add_argument('--list-modules', action='store_true', help='list the Ghost modules and exit')
    args = parser.parse_args(argv)
    if args.num < 1 or args.topk < 1 or args.size < 32:
        parser.error('--num and --topk must be >= 1 and --size >= 32')
    return args


def build_backbone(config: Optional[str] = None, checkpoint: Optional[str] = None, seed: int = 0):
    """The backbone (eval mode) and the data preprocessor's (mean, std)."""
    mean, std = MEAN, STD
    torch.manual_seed(seed)
    if config is None:
        backbone = GhostNet(1.0)
    else:
        from mmghost.engine import load_config
        from mmdet.registry import MODELS
        cfg = load_config(config)
        backbone_cfg = dict(cfg.model.backbone, init_cfg=None)
        backbone = MODELS.build(backbone_cfg)
        pre = cfg.model.get('data_preprocessor') or {}
        mean, std = pre.get('mean', MEAN), pre.get('std', STD)
    return prepare_backbone(backbone, checkpoint, config), (tuple(mean), tuple(std))


def prepare_backbone(backbone, checkpoint: Optional[str] = None, config: Optional[str] = None):
    """Load the weights (if any) into a family backbone and put it in eval (V3: deploy) mode."""
    if not isinstance(backbone, GhostNetBase):
        raise ValueError(f'the backbone of {config} is a {type(backbone).__name__}, not a GhostNet-family backbone')
    if checkpoint is not None:
        found = read_trunk_weights(checkpoint)
        result = backbone.load_state_dict(found.trunk(), strict=False)
        missing = [k for k in result.missing_keys if not k.endswith('num_batches_tracked')]
        if missing:
            raise CheckpointError(f'{checkpoint} lacks {len(missing)} tensors of the backbone, e.g. {missing[:3]}')
    backbone.eval()
    if type(backbone).reparameterize is not GhostNetBase.reparameterize:
        backbone.switch_to_deploy(channels_last=False)  # one primary and one cheap conv per Ghost module
    return backbone


def load_image(path: str, size: int, mean, std):
    """(RGB uint8 image resized so its longer side is ``size``, normalised 1x3xHxW tensor)."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f'cannot read image {path!r}')
    h, w = bgr.shape[:2]
    scale = size / max(h, w)
    bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    x = (torch.from_numpy(rgb).float() - torch.tensor(mean)) / torch.tensor(std)
    return rgb, x.permute(2, 0, 1)[None].contiguous()


def ghost_modules(backbone) -> Dict[str, torch.nn.Module]:
    """The Ghost modules (any version): modules with a ``primary_conv`` and a ``cheap_operation``."""
    return {name: m for name, m in backbone.named_modules()
            if isinstance(getattr(m, 'primary_conv', None), torch.nn.Module) and hasattr(m, 'cheap_operation')}


def intrinsic_and_ghost_channels(module) -> tuple:
    conv = module.primary_conv[0]
    cheap = module.cheap_operation
    return conv.out_channels, 0 if cheap is None else cheap[0].out_channels


def capture(backbone, module_name: str, x: torch.Tensor):
    """Run the backbone once; return the module's intrinsic and ghost maps and every stage's output."""
    modules = ghost_modules(backbone)
    if module_name not in modules:
        raise KeyError(f'{module_name!r} is not a Ghost module of this backbone; choose one of: '
                       f'{", ".join(modules)}')
    module = modules[module_name]
    if module.cheap_operation is None:
        raise ValueError(f'{module_name} has ratio 1: it makes no ghost maps')
    seen = {}
    hooks = [module.primary_conv.register_forward_hook(lambda m, i, o: seen.__setitem__('intrinsic', o.clone())),
             module.cheap_operation.register_forward_hook(lambda m, i, o: seen.__setitem__('ghost', o.clone()))]
    try:
        with torch.no_grad():
            stages = backbone.forward_taps(x, range(backbone.num_stages + 1))
    finally:
        for h in hooks:
            h.remove()
    if 'intrinsic' not in seen:
        raise RuntimeError(f'{module_name} did not run')
    return seen['intrinsic'][0], seen['ghost'][0], [s[0] for s in stages]


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    denom = float(a.norm() * b.norm())
    return float((a * b).sum()) / denom if denom > 0 else float('nan')


def select_pairs(intrinsic: torch.Tensor, ghost: torch.Tensor, num: int) -> List[dict]:
    """The ``num`` ghost maps with the liveliest sources and ghosts, in channel order, with their source.

    A pair's liveliness is the smaller of its two maps' (spatial std relative to the module's typical std x
    square root of the share of active pixels), so that dead (all-zero after ReLU), flat or nearly empty maps
    are drawn only when there are no others.
    """
    per_source = ghost.shape[0] // intrinsic.shape[0]  # ratio - 1
    sources = torch.arange(ghost.shape[0]) // per_source
    def liveliness(maps):  # spread relative to the module's typical spread, times the share of active pixels
        flat = maps.flatten(1)
        std = flat.std(1)
        lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        active = (flat - lo > 0.1 * (hi - lo + 1e-12)).float().mean(1)  # above a tenth of the map's range
        return std / (std.mean() + 1e-12) * active.sqrt()

    spread = torch.minimum(liveliness(intrinsic)[sources], liveliness(ghost))
    chosen = sorted(torch.argsort(spread, descending=True, stable=True)[:num].tolist())
    return [dict(ghost=j, source=int(sources[j]), r=_correlation(intrinsic[sources[j]], ghost[j]))
            for j in chosen]


def _grid(n: int, max_cols: int = 4):
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols


def draw_ghost_module(rgb, intrinsic, ghost, pairs, title: str, out: str, cheap_op: str = 'depthwise') -> str:
    rows, cols = _grid(len(pairs))
    cell = 1.9
    fig = plt.figure(figsize=(cell * (2 * cols + 1.6) + 0.8, cell * rows + 1.6), layout='constrained')
    left, mid, right = fig.subfigures(1, 3, width_ratios=[1.6, cols, cols], wspace=0.02)
    ax = left.subplots()
    ax.imshow(rgb)
    ax.set_title(f'input {rgb.shape[1]}x{rgb.shape[0]}', fontsize=10)
    ax.axis('off')
    for sub, colour in ((mid, 'tab:red'), (right, 'tab:green')):  # the paper's red and green dashed boxes
        sub.patch.set_edgecolor(colour)
        sub.patch.set_linewidth(2)
        sub.patch.set_linestyle('--')
    mid.suptitle(f'Intrinsic maps (primary conv): {intrinsic.shape[0]} x {intrinsic.shape[1]}x{intrinsic.shape[2]}',
                 fontsize=11, color='tab:red')
    right.suptitle(f'Ghost maps: cheap {cheap_op} conv of the intrinsic map at the same place',
                   fontsize=11, color='tab:green')
    axes_i = np.atleast_2d(mid.subplots(rows, cols, squeeze=False))
    axes_g = np.atleast_2d(right.subplots(rows, cols, squeeze=False))
    for k, (ai, ag) in enumerate(zip(axes_i.flat, axes_g.flat)):
        ai.axis('off')
        ag.axis('off')
        if k >= len(pairs):
            continue
        p = pairs[k]
        src, gh = intrinsic[p['source']].numpy(), ghost[p['ghost']].numpy()
        ai.imshow(src, cmap=CMAP)
        ag.imshow(gh, cmap=CMAP)
        r = 'r n/a (flat map)' if np.isnan(p['r']) else f'r={p["r"]:+.2f}'
        ai.set_title(f'intrinsic #{p["source"]}\n[{src.min():.2g}, {src.max():.2g}]', fontsize=9)
        ag.set_title(f'ghost #{p["ghost"]}, {r}\n[{gh.min():.2g}, {gh.max():.2g}]', fontsize=9)
    fig.suptitle(title, fontsize=12)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def draw_stages(rgb, stages: List[torch.Tensor], infos: List[dict], topk: int, title: str, out: str) -> str:
    rows, cols = len(stages), topk + 1
    cell = 1.7
    fig, axes = plt.subplots(rows, cols + 1, figsize=(cell * (cols + 1) + 1.2, cell * rows + 1.0),
                             layout='constrained', squeeze=False, width_ratios=[1.0] + [1] * cols)
    for r, (feat, info) in enumerate(zip(stages, infos)):
        label = (f'{"stem" if r == 0 else ("final conv" if r == 5 else f"stage {r}")}\n'
                 f'stride {info["reduction"]}\n{feat.shape[0]} ch, {feat.shape[1]}x{feat.shape[2]}')
        ax = axes[r, 0]
        ax.imshow(rgb)
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
        ax.set_ylabel(label, fontsize=9, rotation=0, ha='right', va='center', labelpad=8)
        if r == 0:
            ax.set_title('input', fontsize=9)
        maps = [(f'mean of {feat.shape[0]} ch', feat.mean(0))]
        spread = feat.flatten(1).std(1)
        for c in torch.argsort(spread, descending=True)[:topk].tolist():
            maps.append((f'ch {c}', feat[c]))
        for k in range(cols):
            ax = axes[r, k + 1]
            ax.axis('off')
            if k < len(maps):
                name, m = maps[k]
                ax.imshow(m.numpy(), cmap=CMAP)
                ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=12)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def visualize(image: str, out_dir: str, config=None, checkpoint=None, module=DEFAULT_MODULE, num=8, topk=6,
              size=224, seed=0) -> dict:
    backbone, (mean, std) = build_backbone(config, checkpoint, seed)
    rgb, x = load_image(image, size, mean, std)
    intrinsic, ghost, stages = capture(backbone, module, x)
    k = ghost_modules(backbone)[module].cheap_operation[0].kernel_size
    pairs = select_pairs(intrinsic, ghost, num)
    os.makedirs(out_dir, exist_ok=True)
    weights = f'weights: {osp.basename(checkpoint)}' if checkpoint else f'random weights, seed {seed}'
    name = f'{type(backbone).__name__}-{backbone.widen_factor:g}x'
    ghost_png = draw_ghost_module(
        rgb, intrinsic, ghost, pairs,
        f'{name} {module}: each ghost map next to the intrinsic map it is made from ({weights})\n'
        f'each map scaled to its own [min, max] (shown under its name); r = correlation of a ghost with its source',
        osp.join(out_dir, 'ghost_module.png'), cheap_op=f'{k[0]}x{k[1]} depthwise')
    infos = backbone.all_feature_info[:len(stages)]
    stages_png = draw_stages(
        rgb, stages, infos, topk,
        f'{name} feature maps per stage ({weights})\ncolumns: the mean over channels, then the {topk} channels '
        f'with the largest spatial spread; each map scaled to its own range',
        osp.join(out_dir, 'stage_features.png'))
    return dict(ghost_png=ghost_png, stages_png=stages_png, pairs=pairs,
                intrinsic_shape=list(intrinsic.shape), ghost_shape=list(ghost.shape),
                stage_shapes=[list(s.shape) for s in stages])


def main(argv=None):
    args = parse_args(argv)
    if args.list_modules:
        backbone, _ = build_backbone(args.config, None, args.seed)
        for name, m in ghost_modules(backbone).items():
            intrinsic, ghosts = intrinsic_and_ghost_channels(m)
            print(f'{name}: {intrinsic} intrinsic + {ghosts} ghost maps')
        return None
    result = visualize(args.image, args.out_dir, args.config, args.checkpoint, args.module, args.num, args.topk,
                       args.size, args.seed)
    rs = ', '.join(f'{p["r"]:+.2f}' for p in result['pairs'])
    print(f'{args.module}: intrinsic maps {result["intrinsic_shape"]}, ghost maps {result["ghost_shape"]}; '
          f'correlation of each drawn ghost with its source: {rs}')
    print(f'wrote {result["ghost_png"]}')
    print(f'wrote {result["stages_png"]}')
    return result


if __name__ == '__main__':
    with exit_on_user_error():
        main()
