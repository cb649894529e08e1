"""tools/visualize_features.py: the Ghost-module and per-stage feature pictures."""
import cv2
import numpy as np
import pytest
import torch

import visualize_features  # tools/visualize_features.py


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    """A synthetic picture: noisy background, a bright square and a dark disc."""
    rng = np.random.default_rng(0)
    img = (rng.normal(120, 12, (96, 128, 3))).clip(0, 255).astype(np.uint8)
    cv2.rectangle(img, (10, 10), (50, 60), (40, 200, 230), -1)
    cv2.circle(img, (92, 55), 25, (150, 30, 60), -1)
    path = tmp_path_factory.mktemp('img') / 'shapes.png'
    cv2.imwrite(str(path), img)
    return str(path)


def _png_size(path):
    img = cv2.imread(path)
    assert img is not None, path
    return img.shape[1], img.shape[0]


def test_capture_gets_intrinsic_maps_and_the_ghosts_made_from_them(image):
    backbone, (mean, std) = visualize_features.build_backbone(seed=0)
    _, x = visualize_features.load_image(image, 96, mean, std)
    assert x.shape == (1, 3, 72, 96)
    intrinsic, ghost, stages = visualize_features.capture(backbone, 'blocks.1.0.ghost1', x)
    module = backbone.blocks[1][0].ghost1
    assert intrinsic.shape == ghost.shape == (24, 36, 48)
    # The ghosts are exactly the cheap operation applied to the intrinsic maps...
    with torch.no_grad():
        torch.testing.assert_close(module.cheap_operation(intrinsic[None])[0], ghost)
    # ...and the stages are the backbone's outputs (strides 2-32).
    assert [tuple(s.shape[1:]) for s in stages] == [(36, 48), (18, 24), (9, 12), (5, 6), (3, 3)]
    with torch.no_grad():
        for out, index in zip(backbone(x), backbone.out_indices):
            torch.testing.assert_close(out[0], stages[index])
    pairs = visualize_features.select_pairs(intrinsic, ghost, 8)
    assert len(pairs) == 8 and all(p['source'] == p['ghost'] for p in pairs)  # ratio 2: ghost i from map i
    assert all(intrinsic[p['source']].std() > 0 and ghost[p['ghost']].std() > 0 for p in pairs)
    # Ghosts are not copies of their source.
    assert all(p['r'] < 0.999 for p in pairs)


def test_cli_writes_both_pictures(image, tmp_path, capsys):
    result = visualize_features.main([image, '--out-dir', str(tmp_path), '--size', '96', '--num', '4',
                                      '--topk', '3'])
    out = capsys.readouterr().out
    assert 'wrote' in out and 'correlation of each drawn ghost with its source' in out
    w, h = _png_size(result['ghost_png'])
    assert w > 2 * h > 0  # two grids side by side, next to the input
    w, h = _png_size(result['stages_png'])
    assert h > 300 and w > 400  # one row per stage (5), 1 + 1 + 3 columns
    assert len(result['pairs']) == 4 and len(result['stage_shapes']) == 5


def test_config_checkpoint_and_module_choice(image, tmp_path, capsys):
    cfg = 'configs/retinanet_ghostnet_fpn.py'  # GhostNet-1.1x; its init_cfg's file does not exist: not used
    backbone, _ = visualize_features.build_backbone(cfg, seed=3)
    ckpt = tmp_path / 'bb.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in backbone.state_dict().items()}}, ckpt)
    result = visualize_features.visualize(image, str(tmp_path / 'out'), cfg, str(ckpt), 'blocks.6.4.ghost1',
                                          num=2, topk=2, size=64)
    assert result['intrinsic_shape'][0] == backbone.blocks[6][4].ghost1.intrinsic_channels
    assert len(result['stage_shapes']) == 5  # stem + 4 stages
    visualize_features.main([image, '--list-modules', '--config', cfg])
    assert 'blocks.8.3.ghost2' in capsys.readouterr().out
    with pytest.raises(KeyError, match='not a Ghost module'):
        visualize_features.visualize(image, str(tmp_path), module='stem')
    with pytest.raises(ValueError, match='not a GhostNet'):
        visualize_features.build_backbone('configs/demo/retinanet_mobilenetv2_shapes.py')
    with pytest.raises(FileNotFoundError):
        visualize_features.visualize(str(tmp_path / 'missing.png'), str(tmp_path))


@pytest.mark.parametrize('backbone_type', ['GhostNetV2', 'GhostNetV3'])
def test_family_backbones(backbone_type, image):
    """The tool serves every family member: V2's Ghost modules (with DFC attention), V3's after
    re-parameterisation (one primary and one cheap conv each)."""
    from mmdet.registry import MODELS
    assert MODELS.get(backbone_type) is not None, f'{backbone_type} is not registered after `import mmghost`'
    torch.manual_seed(0)
    backbone = visualize_features.prepare_backbone(MODELS.build(dict(type=backbone_type)))
    modules = visualize_features.ghost_modules(backbone)
    assert 'blocks.1.0.ghost1' in modules and 'blocks.8.3.ghost2' in modules
    _, x = visualize_features.load_image(image, 96, visualize_features.MEAN, visualize_features.STD)
    intrinsic, ghost, stages = visualize_features.capture(backbone, 'blocks.6.4.ghost1', x)
    module = modules['blocks.6.4.ghost1']
    with torch.no_grad():
        torch.testing.assert_close(module.cheap_operation(intrinsic[None])[0], ghost)
    assert [tuple(s.shape[1:]) for s in stages] == [(36, 48), (18, 24), (9, 12), (5, 6), (3, 3)]
    with torch.no_grad():
        for out, index in zip(backbone(x), backbone.out_indices):
            torch.testing.assert_close(out[0], stages[index])
