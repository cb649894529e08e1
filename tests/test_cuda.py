"""The CUDA path (issue 14): the family's backbones, AMP training of the paper configs, deploy mode, mmcv's CUDA
ops through a detector, and deploy mode's memory-format choice, all on the GPU.

Every test here is marked ``cuda`` and skipped where ``torch.cuda.is_available()`` is False.
``bash benchmarks/gpu_check.sh`` runs them (``pytest -m cuda``) on a fresh GPU machine, then the GPU benchmark.
A family member missing from mmdet's ``MODELS`` after ``import mmghost`` is a failure (a registration
regression), never a skip.
"""
import copy
import os.path as osp

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

import mmghost  # noqa: F401  registers the family into mmdet's MODELS
from benchmarks.gpu_benchmark import detection_batch, time_interleaved
from fixtures.backbone_training import randomize_bn
from mmghost.engine import build_detector, load_config, mmcv_ops_in_float32

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason='needs a CUDA GPU (torch.cuda.is_available() is False here); '
                       'benchmarks/gpu_check.sh runs these on a GPU machine'),
]

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FAMILY = ['GhostNet', 'GhostNetV2', 'GhostNetV3']
PAPER = ['configs/retinanet_ghostnet_fpn.py', 'configs/faster_rcnn_ghostnet_fpn.py']
DTYPES = {'float16': torch.float16, 'bfloat16': torch.bfloat16}


def build_backbone(name, **kwargs):
    from mmdet.registry import MODELS
    assert MODELS.get(name) is not None, f'{name} is not registered in mmdet MODELS after `import mmghost`'
    return MODELS.build(dict(type=name, **kwargs))


def relative_error(expected, got):
    return ((expected.float() - got.float()).abs().max() / expected.float().abs().max()).item()


@pytest.fixture
def exact_fp32():
    """fp32 convolutions and matmuls without TF32 (on by default for cuDNN convs), so tolerances mean what
    they say; the previous flags are restored afterwards."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize('name', FAMILY)
def test_family_forward_backward_fp32_matches_cpu(name, exact_fp32):
    """Train-mode forward/backward on CUDA (odd input size, every out index): finite outputs, a gradient for
    every trainable parameter, and the same outputs and input gradient as the same model on the CPU."""
    torch.manual_seed(0)
    cpu_model = build_backbone(name, out_indices=(0, 1, 2, 3, 4, 5)).train()
    gpu_model = copy.deepcopy(cpu_model).cuda()
    x = torch.rand(2, 3, 225, 301)
    results = {}
    for device, model in (('cpu', cpu_model), ('cuda', gpu_model)):
        inp = x.to(device).requires_grad_(True)
        outs = model(inp)
        sum((o * o).mean() for o in outs).backward()
        results[device] = (outs, inp.grad)
    outs, input_grad = results['cuda']
    assert len(outs) == 6 and [o.shape[1] for o in outs] == gpu_model.out_channels
    assert all(o.is_cuda and torch.isfinite(o).all() for o in outs)
    trainable = {n: p for n, p in gpu_model.named_parameters() if p.requires_grad}
    assert trainable
    assert [n for n, p in trainable.items() if p.grad is None] == []
    assert [n for n, p in trainable.items() if not torch.isfinite(p.grad).all()] == []
    for expected, got in zip(results['cpu'][0], outs):
        assert relative_error(expected, got.cpu()) <= 1e-4
    assert relative_error(results['cpu'][1], input_grad.cpu()) <= 1e-3


@pytest.mark.parametrize('name', FAMILY)
@pytest.mark.parametrize('channels_last', [None, True, False])
def test_family_deploy_equals_eval_on_gpu(name, channels_last, exact_fp32):
    model = build_backbone(name, out_indices=(0, 1, 2, 3, 4, 5))
    randomize_bn(model)  # folding identity statistics would prove little
    model = model.cuda().eval()
    x = torch.rand(2, 3, 224, 320, device='cuda')
    with torch.no_grad():
        expected = model(x)
        deploy = copy.deepcopy(model).switch_to_deploy(channels_last=channels_last)
        got = deploy(x)
    assert not any(isinstance(m, _BatchNorm) for m in deploy.modules())
    if channels_last is not None:
        assert deploy.channels_last == channels_last
    for e, g in zip(expected, got):
        assert g.is_cuda and g.is_contiguous(memory_format=torch.channels_last) == deploy.channels_last
        assert relative_error(e, g) <= 1e-4


@pytest.mark.parametrize('config', PAPER)
@pytest.mark.parametrize('dtype', sorted(DTYPES))
def test_paper_config_amp_train_step(config, dtype):
    """Under autocast in fp16/bf16: finite losses and a finite gradient for every trainable parameter; then one
    step through mmengine's AmpOptimWrapper (what ``tools/train.py --amp`` builds) leaves finite parameters.
    Inside ``mmcv_ops_in_float32()``, as MMGhostRunner trains: mmcv 2.1's CUDA focal loss, RoIAlign and NMS
    kernels take no bf16."""
    from mmengine.optim import AmpOptimWrapper
    torch.manual_seed(0)
    model = build_detector(load_config(osp.join(ROOT, config))).cuda().train()
    data = detection_batch(2, 256, 320, 'cuda')
    with mmcv_ops_in_float32():
        with torch.autocast('cuda', dtype=DTYPES[dtype]):
            losses = model(**model.data_preprocessor(data, True), mode='loss')
        loss, log_vars = model.parse_losses(losses)
        assert torch.isfinite(loss), log_vars
        loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert [n for n, p in trainable.items() if p.grad is None] == []
    assert [n for n, p in trainable.items() if not torch.isfinite(p.grad).all()] == []

    model.zero_grad(set_to_none=True)
    optimizer = torch.optim.SGD(trainable.values(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    with mmcv_ops_in_float32():
        log_vars = model.train_step(data, AmpOptimWrapper(optimizer=optimizer, dtype=dtype))
    assert all(torch.isfinite(torch.as_tensor(v)) for v in log_vars.values()), log_vars
    assert all(torch.isfinite(p).all() for p in trainable.values())


def test_mmcv_cuda_nms_and_roi_align_match_cpu():
    from mmcv.ops import nms, roi_align
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 10 + torch.rand(300, 2, generator=g) * 60], 1)
    scores = torch.randperm(300, generator=g).float() / 300  # distinct: one right order
    keep_cpu = nms(boxes, scores, 0.5)[1]
    keep_gpu = nms(boxes.cuda(), scores.cuda(), 0.5)[1]
    assert keep_gpu.is_cuda and torch.equal(keep_gpu.cpu(), keep_cpu)
    feats = torch.rand(2, 16, 32, 40, generator=g)
    rois = torch.cat([torch.tensor([[0.], [1.], [1.]]), boxes[:3] / 2], 1)
    expected = roi_align(feats, rois, (7, 7), 0.25, 2, 'avg', True)
    got = roi_align(feats.cuda(), rois.cuda(), (7, 7), 0.25, 2, 'avg', True)
    assert got.is_cuda
    torch.testing.assert_close(got.cpu(), expected, atol=1e-5, rtol=1e-4)


def test_faster_rcnn_predict_runs_mmcv_cuda_ops(monkeypatch):
    """A Faster R-CNN predict on CUDA goes through mmcv's CUDA NMS (RPN and final) and RoIAlign kernels."""
    import importlib
    mmcv_nms = importlib.import_module('mmcv.ops.nms')  # the module: `mmcv.ops.nms` the attribute is the function
    cfg = load_config(osp.join(ROOT, 'configs/faster_rcnn_ghostnet_fpn.py'))
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # random weights score ~1/81: let every box reach the final NMS
    model = build_detector(cfg).cuda().eval()
    nms_devices, roi_devices = [], []
    original_nms = mmcv_nms.ext_module.nms

    def spy_nms(boxes, scores, **kwargs):
        nms_devices.append(boxes.device.type)
        return original_nms(boxes, scores, **kwargs)

    monkeypatch.setattr(mmcv_nms.ext_module, 'nms', spy_nms)
    for layer in model.roi_head.bbox_roi_extractor.roi_layers:
        layer.register_forward_hook(lambda m, inputs, out: roi_devices.append((inputs[0].device.type,
                                                                               out.device.type)))
    data = detection_batch(2, 320, 416, 'cuda')
    with torch.no_grad():
        results = model.test_step(data)
    assert nms_devices and set(nms_devices) == {'cuda'}
    assert roi_devices and set(roi_devices) == {('cuda', 'cuda')}
    assert len(results) == 2
    for result in results:
        pred = result.pred_instances
        assert 0 < len(pred) <= cfg.model.test_cfg.rcnn.max_per_img
        assert torch.isfinite(pred.bboxes).all() and ((pred.scores >= 0) & (pred.scores <= 1)).all()
        assert (pred.bboxes[:, 0::2] >= 0).all() and (pred.bboxes[:, 0::2] <= 416).all()
        assert (pred.bboxes[:, 1::2] >= 0).all() and (pred.bboxes[:, 1::2] <= 320).all()
        assert ((pred.labels >= 0) & (pred.labels < 80)).all()


@pytest.fixture
def cudnn_benchmark():
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # each layout gets its fastest kernels, as in any real deployment
    yield
    torch.backends.cudnn.benchmark = saved


@pytest.mark.parametrize('name', FAMILY)
@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_deploy_channels_last_default_is_the_faster_layout_on_gpu(name, dtype, cudnn_benchmark, record_property):
    """switch_to_deploy()'s default memory format on CUDA is a fixed rule (NCHW; default_channels_last), checked
    here against a measurement: both layouts timed at the benchmark's input (800x1344; batch 4 here), interleaved;
    the default may be at most 10% slower than the other (a tie within noise is no wrong choice). A failure
    means the rule is wrong for this GPU and dtype (tools/deploy_layout.py measures it), not a broken model.
    The times go into the JUnit XML."""
    model = build_backbone(name, widen_factor=1.1 if name == 'GhostNet' else 1.0).cuda().eval()
    amp = torch.autocast('cuda', dtype=torch.bfloat16, enabled=dtype == 'bfloat16')
    with amp:
        default = copy.deepcopy(model).switch_to_deploy()
    x = torch.rand(4, 3, 800, 1344, device='cuda')

    def run(deployed, inp):
        def fn():
            with torch.no_grad(), amp:
                return deployed(inp)
        return fn

    cases = {'channels_last': run(copy.deepcopy(model).switch_to_deploy(channels_last=True),
                                  x.contiguous(memory_format=torch.channels_last)),
             'nchw': run(copy.deepcopy(model).switch_to_deploy(channels_last=False), x)}
    rows = time_interleaved(cases, 'cuda', iters=10, repeats=5, warmup=3, batch=4)
    ms = {layout: row['ms_per_batch'] for layout, row in rows.items()}
    chosen = 'channels_last' if default.channels_last else 'nchw'
    faster = min(ms, key=ms.get)
    record_property('deploy_layout_ms', ms)
    record_property('deploy_layout_default', chosen)
    print(f'{name} {dtype} on {torch.cuda.get_device_name()}: {ms}; switch_to_deploy() chose {chosen}')
    assert ms[chosen] <= 1.10 * ms[faster], (
        f'switch_to_deploy() chose {chosen} on {torch.cuda.get_device_name()} in {dtype}, but {faster} is '
        f'faster: {ms}')
