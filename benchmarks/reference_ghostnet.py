"""BASELINE ONLY: an unoptimised eager GhostNet with the official module structure and state-dict keys.

The speed benchmark (benchmarks/benchmark.py) compares mmghost against it when timm is not importable. It
follows the structure of huawei-noah's ``ghostnet_pytorch/ghostnet.py`` (plain ``nn.Sequential`` of
conv/BN/ReLU, the cheap operation computes ``ceil(n/s) * (s-1)`` maps and the concat is sliced, the SE gate is
``relu6(x + 3) / 6``) so that official and timm checkpoints load into it with ``strict=True``. It is written here,
not copied; tests/test_parity.py checks it against timm's outputs. Nothing outside benchmarks/ and tests/ may
import it (tools/convert_weights.py --verify uses timm itself).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# (kernel, expansion, out, se_ratio, stride) per bottleneck, grouped as the official ``cfgs``.
OFFICIAL_CFGS = [
    [[3, 16, 16, 0, 1]],
    [[3, 48, 24, 0, 2]],
    [[3, 72, 24, 0, 1]],
    [[5, 72, 40, 0.25, 2]],
    [[5, 120, 40, 0.25, 1]],
    [[3, 240, 80, 0, 2]],
    [[3, 200, 80, 0, 1], [3, 184, 80, 0, 1], [3, 184, 80, 0, 1], [3, 480, 112, 0.25, 1],
     [3, 672, 112, 0.25, 1]],
    [[5, 672, 160, 0.25, 2]],
    [[5, 960, 160, 0, 1], [5, 960, 160, 0.25, 1], [5, 960, 160, 0, 1], [5, 960, 160, 0.25, 1]],
]


def official_features(net, x, feature_blocks=(2, 4, 6, 8)):
    """Run ``x`` through any official-structure GhostNet (this one or timm's: ``conv_stem``, ``bn1``, ``act1``,
    ``blocks``) and return the outputs of ``blocks.N`` for N in ``feature_blocks``, deeper blocks not run."""
    x = net.act1(net.bn1(net.conv_stem(x)))
    outs = []
    for i, block in enumerate(net.blocks[:feature_blocks[-1] + 1]):
        x = block(x)
        if i in feature_blocks:
            outs.append(x)
    return tuple(outs)


def divisible(v, divisor=4):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class RefSqueezeExcite(nn.Module):

    def __init__(self, chs, se_ratio=0.25):
        super().__init__()
        reduced = divisible(chs * se_ratio, 4)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_reduce = nn.Conv2d(chs, reduced, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, chs, 1, bias=True)

    def forward(self, x):
        s = self.conv_expand(self.act1(self.conv_reduce(self.avg_pool(x))))
        return x * (F.relu6(s + 3.) / 6.)


class RefConvBnAct(nn.Module):

    def __init__(self, in_chs, out_chs, kernel_size, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act1(self.bn1(self.conv(x)))


class RefGhostModule(nn.Module):

    def __init__(self, inp, oup, kernel_size=1, ratio=2, dw_size=3, stride=1, relu=True):
        super().__init__()
        self.oup = oup
        init_chs = math.ceil(oup / ratio)
        new_chs = init_chs * (ratio - 1)
        self.primary_conv = nn.Sequential(
            nn.Conv2d(inp, init_chs, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(init_chs),
            nn.ReLU(inplace=True) if relu else nn.Sequential())
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_chs, new_chs, dw_size, 1, dw_size // 2, groups=init_chs, bias=False),
            nn.BatchNorm2d(new_chs),
            nn.ReLU(inplace=True) if relu else nn.Sequential())

    def forward(self, x):
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        return torch.cat([x1, x2], dim=1)[:, :self.oup, :, :]


class RefGhostBottleneck(nn.Module):

    def __init__(self, in_chs, mid_chs, out_chs, dw_kernel_size=3, stride=1, se_ratio=0.):
        super().__init__()
        self.stride = stride
        self.ghost1 = RefGhostModule(in_chs, mid_chs, relu=True)
        if stride > 1:
            self.conv_dw = nn.Conv2d(mid_chs, mid_chs, dw_kernel_size, stride, (dw_kernel_size - 1) // 2,
                                     groups=mid_chs, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid_chs)
        self.se = RefSqueezeExcite(mid_chs, se_ratio) if se_ratio else None
        self.ghost2 = RefGhostModule(mid_chs, out_chs, relu=False)
        if in_chs == out_chs and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, dw_kernel_size, stride, (dw_kernel_size - 1) // 2, groups=in_chs,
                          bias=False),
                nn.BatchNorm2d(in_chs),
                nn.Conv2d(in_chs, out_chs, 1, 1, 0, bias=False),
                nn.BatchNorm2d(out_chs))

    def forward(self, x):
        residual = x
        x = self.ghost1(x)
        if self.stride > 1:
            x = self.bn_dw(self.conv_dw(x))
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        x += self.shortcut(residual)
        return x


class ReferenceGhostNet(nn.Module):
    """Official-structure GhostNet. ``forward`` returns the stride 4/8/16/32 features (ends of blocks 2/4/6/8)."""

    feature_blocks = (2, 4, 6, 8)

    def __init__(self, width=1.0, num_classes=1000):
        super().__init__()
        out_chs = divisible(16 * width, 4)
        self.conv_stem = nn.Conv2d(3, out_chs, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)
        in_chs = out_chs
        stages = []
        for cfg in OFFICIAL_CFGS:
            layers = []
            for k, exp, c, se_ratio, s in cfg:
                out_chs = divisible(c * width, 4)
                layers.append(RefGhostBottleneck(in_chs, divisible(exp * width, 4), out_chs, k, s, se_ratio))
                in_chs = out_chs
            stages.append(nn.Sequential(*layers))
        stages.append(nn.Sequential(RefConvBnAct(in_chs, divisible(960 * width, 4), 1)))
        self.blocks = nn.Sequential(*stages)
        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.conv_head = nn.Conv2d(divisible(960 * width, 4), 1280, 1, 1, 0, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x):
        return official_features(self, x, self.feature_blocks)
