"""Net2WiderNet widening of GhostNet weights (mmghost/models/widen.py, tools/widen_weights.py)."""
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmghost.models import GhostNet, GhostNetClassifier
from mmghost.models.widen import ghostnet_weight_shapes, widen_ghostnet_weights


def _randomize(model, seed=0):
    """Random weights and random BN statistics and affine parameters, still a network whose output depends on
    its input: BN statistics are first measured on random images (so activations neither explode nor die in
    the 16 blocks), then scattered randomly around the measured values."""
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in)**0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
        for module in norms:
            n = module.num_features
            module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
            module.momentum = None  # cumulative average: the statistics of the calibration batch
        model.train()
        model(torch.randn(8, 3, 64, 64, generator=generator))
        for module in norms:
            n = module.num_features
            std = module.running_var.sqrt()
            module.running_mean.add_(torch.randn(n, generator=generator) * 0.2 * std)
            module.running_var.mul_(torch.rand(n, generator=generator) * 1.5 + 0.5)
            module.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1, ), generator=generator)))
            module.momentum = 0.1
    return model.eval()


def _relative_difference(a, b):
    return float((a.double() - b.double()).abs().max() / a.double().abs().max())


@pytest.fixture(scope='module')
def source():
    model = _randomize(GhostNetClassifier(1.0))
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(x)
    # A meaningful check: the two images' logits differ by far more than the widening may change them.
    assert _relative_difference(logits[0], logits[1]) > 1e-2
    return model.state_dict(), x, logits


@pytest.mark.parametrize('width', [1.1, 1.3])
def test_widened_classifier_keeps_the_source_logits(source, width):
    state_dict, x, logits = source
    widened = widen_ghostnet_weights(state_dict, ghostnet_weight_shapes(width))
    model = GhostNetClassifier(width).eval()
    model.load_state_dict(widened, strict=True)  # every key, every shape of the wider network
    assert model.conv_stem.out_channels >= 16 and model.conv_head.in_channels > 960  # really wider
    with torch.no_grad():
        wide_logits = model(x)
    assert _relative_difference(logits, wide_logits) < 1e-4
    # The dtype and the BN counters are carried over.
    assert all(v.dtype == state_dict[k].dtype for k, v in widened.items())
    assert torch.equal(widened['bn1.num_batches_tracked'], state_dict['bn1.num_batches_tracked'])


def test_widened_features_are_copies_of_the_source_features(source):
    """Each wider trunk output channel equals a source channel and each source channel is kept (that is what
    makes the consumers' division exact)."""
    state_dict, x, _ = source
    narrow = GhostNet(1.0, out_indices=(1, 2, 3, 4)).eval()
    narrow.load_state_dict(state_dict, strict=False)
    wide = GhostNet(1.1, out_indices=(1, 2, 3, 4)).eval()
    wide.load_state_dict(widen_ghostnet_weights(state_dict, ghostnet_weight_shapes(1.1)), strict=False)
    with torch.no_grad():
        for a, b in zip(narrow(x), wide(x)):
            assert b.shape[1] > a.shape[1]
            flat_a, flat_b = a.transpose(0, 1).flatten(1), b.transpose(0, 1).flatten(1)
            distance = torch.cdist(flat_b, flat_a, compute_mode='donot_use_mm_for_euclid_dist')  # [wide, narrow]
            scale = float(flat_a.norm(dim=1).max())
            assert float(distance.min(dim=1).values.max()) < 1e-4 * scale  # every new channel is an old one
            assert float(distance.min(dim=0).values.max()) < 1e-4 * scale  # every old channel survives
            # The intrinsic maps keep their places at the front (the ghost maps move behind the new ones).
            half = a.shape[1] // 2
            assert float((b[:, :half] - a[:, :half]).abs().max()) < 1e-5 * float(a.abs().max())


def test_noise_breaks_the_symmetry_but_stays_close(source):
    state_dict, x, logits = source
    shapes = ghostnet_weight_shapes(1.1)
    exact = widen_ghostnet_weights(state_dict, shapes, seed=3)
    noisy = widen_ghostnet_weights(state_dict, shapes, noise=0.01, seed=3)
    key = 'blocks.6.0.ghost1.primary_conv.0.weight'
    assert not torch.equal(exact[key], noisy[key])
    assert torch.equal(exact['bn1.running_var'], noisy['bn1.running_var'])  # only conv/linear weights move
    model = GhostNetClassifier(1.1).eval()
    model.load_state_dict(noisy)
    with torch.no_grad():
        difference = _relative_difference(logits, model(x))
    assert 1e-6 < difference < 0.2
    # Same seed, same result; another seed copies other channels.
    assert torch.equal(widen_ghostnet_weights(state_dict, shapes, noise=0.01, seed=3)[key], noisy[key])
    assert not torch.equal(widen_ghostnet_weights(state_dict, shapes, seed=4)[key], exact[key])


def test_widening_without_the_head_widens_the_trunk(source):
    state_dict, _, _ = source
    trunk = {k: v for k, v in state_dict.items() if not k.startswith(('conv_head.', 'classifier.'))}
    widened = widen_ghostnet_weights(trunk, ghostnet_weight_shapes(1.1))
    assert set(widened) == set(trunk)


def test_widening_to_a_narrower_or_foreign_model_is_refused(source):
    state_dict, _, _ = source
    with pytest.raises(ValueError, match='fewer'):
        widen_ghostnet_weights(state_dict, ghostnet_weight_shapes(0.5))
    with pytest.raises(ValueError, match='official layout'):
        widen_ghostnet_weights({'stem.conv.weight': torch.zeros(16, 3, 3, 3)}, ghostnet_weight_shapes(1.1))
    extra = dict(state_dict, **{'fc.weight': torch.zeros(3, 3)})
    with pytest.raises(ValueError, match='unexpected tensors'):
        widen_ghostnet_weights(extra, ghostnet_weight_shapes(1.1))
    with pytest.raises(ValueError, match='noise'):
        widen_ghostnet_weights(state_dict, ghostnet_weight_shapes(1.1), noise=-1)


def test_widen_weights_tool_writes_weights_for_the_classifier_and_the_detection_backbone(source, tmp_path, capsys):
    import widen_weights
    state_dict, x, logits = source
    src, dst = tmp_path / 'ghostnet_1.0x.pth', tmp_path / 'out' / 'ghostnet_1.1x_widened.pth'
    torch.save({'state_dict': {'module.' + k: v for k, v in state_dict.items()}}, src)  # a wrapped file
    widen_weights.main([str(src), str(dst), '--width', '1.1'])
    out = capsys.readouterr().out
    assert 'function kept' in out, out
    model = GhostNetClassifier(1.1).eval()
    model.load_state_dict(torch.load(dst, map_location='cpu'), strict=True)
    with torch.no_grad():
        assert _relative_difference(logits, model(x)) < 1e-4
    # The detection backbone reads the same file through init_cfg (the head and unbuilt stages are skipped).
    backbone = GhostNet(1.1, out_indices=(2, 3, 4), init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    backbone.init_weights()
    assert torch.equal(backbone.blocks[4][0].ghost2.primary_conv[0].weight,
                       model.blocks[4][0].ghost2.primary_conv[0].weight)


def test_widen_weights_matches_timm_wider_ghostnet():
    """timm's GhostNet(width=1.1) has exactly the target's keys and shapes, and computes the source's logits."""
    ghostnet = pytest.importorskip('timm.models.ghostnet', reason='timm is installed in .venv-torch21 only')
    source = _randomize(ghostnet._create_ghostnet('ghostnet_100', width=1.0), seed=5)
    target = ghostnet._create_ghostnet('ghostnet_100', width=1.1).eval()
    shapes = {k: v.shape for k, v in target.state_dict().items()}
    assert shapes == dict(ghostnet_weight_shapes(1.1))
    target.load_state_dict(widen_ghostnet_weights(source.state_dict(), shapes), strict=True)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert _relative_difference(source(x), target(x)) < 1e-4
