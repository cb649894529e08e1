"""Bad inputs to the demo detector (RetinaNet + GhostNet-1.0x): odd sizes, batch 1, CPU autocast, NaN/Inf."""
import copy
import os.path as osp

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='module')
def model():
    """The demo model, with mmghost's CheckedDetDataPreprocessor; score_thr=0 so predict always returns boxes."""
    from mmengine.config import Config
    import mmghost.datasets  # noqa: F401
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'demo', 'retinanet_ghostnet_shapes.py'))
    cfg.model.data_preprocessor.type = 'CheckedDetDataPreprocessor'
    cfg.model.test_cfg.update(score_thr=0.0, nms_pre=50, max_per_img=20)
    torch.manual_seed(0)
    m = MODELS.build(cfg.model)
    m.init_weights()
    return m


def make_batch(sizes, dtype=torch.uint8, poison=None):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for i, (h, w) in enumerate(sizes):
        img = torch.randint(0, 255, (3, h, w), dtype=torch.uint8, generator=g).to(dtype)
        if poison is not None and i == len(sizes) - 1:
            img[1, h // 2, w // 2] = poison
        inputs.append(img)
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.),
                                             img_path=f'img_{i}_{h}x{w}.png'))
        sample.gt_instances = InstanceData(bboxes=torch.tensor([[2., 3., min(w - 1, 30.), min(h - 1, 40.)]]),
                                           labels=torch.tensor([1]))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def cpu_autocast(dtype=None):
    """CPU autocast to ``dtype``, or a disabled one when ``dtype`` is None."""
    return torch.autocast('cpu', dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def train_step(model, sizes, autocast_dtype=None):
    model.train()
    model.zero_grad()
    data = model.data_preprocessor(make_batch(sizes), True)
    with cpu_autocast(autocast_dtype):
        losses = model.loss(data['inputs'], data['data_samples'])
    total = sum(v if torch.is_tensor(v) else sum(v) for v in losses.values())
    assert torch.isfinite(total), losses
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    return data


def predict(model, sizes, autocast_dtype=None):
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(make_batch(sizes), False)
        with cpu_autocast(autocast_dtype):
            results = model.predict(data['inputs'], data['data_samples'])
    for (h, w), result in zip(sizes, results):
        boxes = result.pred_instances.bboxes.float()
        assert len(boxes) > 0 and torch.isfinite(boxes).all()
        assert boxes[:, 0::2].min() >= 0 and boxes[:, 0::2].max() <= w  # clipped to the original image
        assert boxes[:, 1::2].min() >= 0 and boxes[:, 1::2].max() <= h
    return results


@pytest.mark.parametrize('sizes', [[(65, 97)], [(33, 47), (70, 41)], [(64, 31)]], ids=['65x97', 'mixed', '64x31'])
def test_odd_sizes_are_padded_to_32_and_train_and_predict(model, sizes):
    data = train_step(model, sizes)
    h, w = data['inputs'].shape[-2:]
    assert h % 32 == 0 and w % 32 == 0
    assert h >= max(s[0] for s in sizes) and w >= max(s[1] for s in sizes)
    predict(model, sizes)


def test_unpadded_odd_input_runs_backbone_and_neck(model):
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 65, 97))
    assert [tuple(f.shape[-2:]) for f in feats] == [(9, 13), (5, 7), (3, 4)]  # ceil(65/s), ceil(97/s)


def test_batch_of_one_trains_and_predicts(model):
    """Batch 1 (96x80: the stride-32 map is 3x3, so train-mode batch norm has 9 values per channel): the loss is
    finite, gradients reach the backbone (every trainable backbone parameter, non-zero for most), batch norm
    statistics move, and predict returns one result of the documented structure."""
    backbone_norm = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    mean_before = backbone_norm.running_mean.clone()
    data = train_step(model, [(96, 80)])
    assert data['inputs'].shape[0] == 1 and len(data['data_samples']) == 1
    grads = {n: p.grad for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads.values()), \
        [n for n, g in grads.items() if g is None]
    nonzero = sum(bool(g.abs().sum() > 0) for g in grads.values())
    assert nonzero >= 0.9 * len(grads), f'{nonzero} of {len(grads)} backbone parameters got a non-zero gradient'
    assert model.bbox_head.retina_cls.weight.grad.abs().sum() > 0
    assert not torch.equal(mean_before, backbone_norm.running_mean)
    results = predict(model, [(96, 80)])
    assert len(results) == 1
    pred = results[0].pred_instances
    n = len(pred.bboxes)
    assert n > 0 and pred.bboxes.shape == (n, 4) and pred.scores.shape == (n, ) and pred.labels.shape == (n, )
    num_classes = model.bbox_head.num_classes
    assert ((pred.labels >= 0) & (pred.labels < num_classes)).all()
    assert ((pred.scores >= 0) & (pred.scores <= 1)).all()
    assert results[0].metainfo['img_shape'] == (96, 80)


def test_batch_of_one_with_a_32px_image_is_a_batchnorm_error_in_training(model):
    """Deepest feature 1x1 and batch 1: BN cannot compute batch statistics (as with any BN backbone)."""
    with pytest.raises(ValueError, match='Expected more than 1 value per channel when training'):
        train_step(model, [(32, 32)])
    predict(model, [(32, 32)])  # eval mode uses running statistics: fine
    train_step(model, [(32, 32), (32, 32)])  # batch 2: fine


def _cpu_autocast_supports(dtype):
    try:
        with torch.autocast('cpu', dtype=dtype):
            return True
    except RuntimeError:  # torch 2.1: "AutocastCPU only support Bfloat16"
        return False


@pytest.mark.parametrize('dtype', [
    torch.bfloat16,
    pytest.param(torch.float16, marks=pytest.mark.skipif(
        not _cpu_autocast_supports(torch.float16),
        reason=f'torch {torch.__version__} has no float16 autocast on CPU (bfloat16 only)'))], ids=['bf16', 'fp16'])
def test_cpu_autocast_trains_and_predicts(model, dtype):
    """Needs float32 NMS on CPU (mmcv's kernel rejects fp16/bf16): mmcv_ops_in_float32, as in MMGhostRunner."""
    from mmghost.engine import mmcv_ops_in_float32
    with mmcv_ops_in_float32():
        train_step(model, [(65, 97), (64, 64)], autocast_dtype=dtype)
        results = predict(model, [(65, 97)], autocast_dtype=dtype)
    assert results[0].pred_instances.scores.float().max() <= 1


def test_float32_mmcv_ops_are_scoped_to_their_context(model):
    """Outside the context mmcv's own NMSop.forward is in place (the same object) and rejects bf16 on CPU."""
    from mmcv.ops.nms import NMSop
    from mmghost.engine import mmcv_ops_in_float32
    original = NMSop.__dict__['forward']
    with mmcv_ops_in_float32():
        with mmcv_ops_in_float32():  # nested: still patched when the inner one exits
            pass
        assert NMSop.__dict__['forward'] is not original
        predict(model, [(64, 64)], autocast_dtype=torch.bfloat16)
    assert NMSop.__dict__['forward'] is original
    with pytest.raises(RuntimeError):
        predict(model, [(64, 64)], autocast_dtype=torch.bfloat16)


def test_roi_align_takes_bf16_cpu_inputs_inside_the_context():
    """Faster R-CNN's RoIAlign under CPU bf16 autocast (mmcv's CPU kernel has fp32/fp16 only); the gradient
    comes back in the input's dtype."""
    dtype = torch.bfloat16
    from mmcv.ops import roi_align
    from mmghost.engine import mmcv_ops_in_float32
    feats = torch.arange(2 * 64, dtype=torch.float32).reshape(1, 2, 8, 8).to(dtype).requires_grad_()
    rois = torch.tensor([[0, 0, 0, 4, 4]], dtype=dtype)
    with pytest.raises(RuntimeError):
        roi_align(feats, rois, (2, 2), 1.0, 2, 'avg', False)
    with mmcv_ops_in_float32():
        out = roi_align(feats, rois, (2, 2), 1.0, 2, 'avg', False)
    expected = roi_align(feats.detach().float(), rois.float(), (2, 2), 1.0, 2, 'avg', False)
    assert torch.equal(out, expected)
    out.sum().backward()
    assert feats.grad.dtype == dtype and float(feats.grad.float().sum()) == pytest.approx(8.0)


def test_mmghost_runner_runs_its_loops_inside_float32_mmcv_ops(monkeypatch):
    from mmcv.ops.nms import NMSop
    from mmengine.runner import Runner
    from mmghost.engine import MMGhostRunner
    original, seen = NMSop.__dict__['forward'], []
    for loop in ('train', 'val', 'test'):
        monkeypatch.setattr(Runner, loop, lambda self: seen.append(NMSop.__dict__['forward'] is not original))
        getattr(MMGhostRunner, loop)(object.__new__(MMGhostRunner))
    assert seen == [True, True, True] and NMSop.__dict__['forward'] is original


@pytest.mark.parametrize('poison', [float('nan'), float('inf')], ids=['nan', 'inf'])
def test_non_finite_input_is_refused_before_the_model_runs(model, poison):
    from mmghost.datasets import NonFiniteInputError
    before = copy.deepcopy(model.state_dict())
    batch = make_batch([(64, 64), (48, 80)], dtype=torch.float32, poison=poison)
    with pytest.raises(NonFiniteInputError, match=r'1 of 2 image\(s\): img_1_48x80.png \(1 values\)'):
        model.data_preprocessor(batch, True)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_finite_float_input_passes_the_check(model):
    data = model.data_preprocessor(make_batch([(64, 64)], dtype=torch.float32), True)
    assert torch.isfinite(data['inputs']).all()


@pytest.mark.upstream
def test_upstream_nan_input_with_plain_mmdet_gives_nan_loss_caught_by_check_invalid_loss_hook(model):
    """Upstream behaviour (why CheckedDetDataPreprocessor exists): with mmdet's own DetDataPreprocessor a NaN
    input runs through the model, the losses are NaN, and only CheckInvalidLossHook stops it afterwards."""
    from fixtures.upstream import fail_upstream_changed, upstream_changed
    from mmdet.engine.hooks import CheckInvalidLossHook
    from mmdet.models.data_preprocessors import DetDataPreprocessor
    plain = DetDataPreprocessor(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                                pad_size_divisor=32)
    model.train()
    data = plain(make_batch([(64, 64)], dtype=torch.float32, poison=float('nan')), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    loss = sum(v if torch.is_tensor(v) else sum(v) for v in losses.values())
    assert torch.isnan(loss), upstream_changed(f'mmdet gives a {loss.item()} loss for a NaN input, not NaN')

    class Runner:
        iter = 0

        class logger:
            info = staticmethod(lambda msg: None)

    try:
        CheckInvalidLossHook(interval=1).after_train_iter(Runner, 0, outputs=dict(loss=loss))
    except AssertionError:
        pass
    else:
        fail_upstream_changed("mmdet's CheckInvalidLossHook no longer raises on a NaN loss")


def test_faster_rcnn_trains_and_predicts_under_cpu_bf16_autocast_inside_the_context():
    """RoIAlign's float32 result goes back to bf16 for mmdet's RoI extractor (``roi_feats[inds] = ...`` needs the
    buffer's dtype); the same code path runs on CUDA bf16, where mmcv has no bf16 RoIAlign kernel either."""
    from fixtures.detection_batch import total_loss, training_batch
    from mmghost.engine import build_detector, load_config, mmcv_ops_in_float32
    torch.manual_seed(0)
    model = build_detector(load_config(osp.join(ROOT, 'configs', 'faster_rcnn_ghostnet_fpn.py')))
    model.init_weights()
    data = training_batch(model)
    model.train()
    with mmcv_ops_in_float32(), cpu_autocast(torch.bfloat16):
        total = total_loss(model(**data, mode='loss'))
    assert torch.isfinite(total)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad(), mmcv_ops_in_float32(), cpu_autocast(torch.bfloat16):
        results = model(**data, mode='predict')
    assert len(results) == 1 and torch.isfinite(results[0].pred_instances.bboxes.float()).all()
