"""ONNX export (tools/export_onnx.py): backbone and RetinaNet tensor forward, dynamic shapes, deploy mode.

onnx and onnxruntime are optional test extras (requirements/tests.txt installs them; CI has them).
"""
import copy

import pytest
import torch

onnx = pytest.importorskip('onnx', reason='onnx is an optional test extra (pip install onnx)')
ort = pytest.importorskip('onnxruntime', reason='onnxruntime is an optional test extra (pip install onnxruntime)')

import export_onnx  # noqa: E402  tools/export_onnx.py
from mmghost.models import GhostNet  # noqa: E402

ATOL = 1e-4
RETINANET = 'configs/retinanet_ghostnet_fpn.py'


def _randomize_norms(model, seed=0):
    """Non-trivial batch-norm statistics and affine parameters, so folding them (deploy) is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _inputs():
    """Unlike the export example (1x3x64x96): another batch size, sizes that are not multiples of 32."""
    g = torch.Generator().manual_seed(3)
    return [torch.randn(2, 3, 77, 130, generator=g), torch.randn(3, 3, 128, 45, generator=g)]


def test_backbone_export_is_dynamic_and_matches(tmp_path):
    backbone = _randomize_norms(GhostNet(1.0)).eval()
    out = str(tmp_path / 'backbone.onnx')
    info = export_onnx.export(backbone, out, shape=(64, 96))
    assert info['output_names'] == ['feat_0', 'feat_1', 'feat_2', 'feat_3']
    graph = onnx.load(out).graph
    assert _dims(graph.input[0]) == ['batch', 3, 'height', 'width']
    assert all(_dims(o)[0] == 'batch' and isinstance(_dims(o)[2], str) for o in graph.output)
    diffs = export_onnx.verify(out, backbone, _inputs())
    assert set(diffs) == set(info['output_names'])
    assert max(diffs.values()) <= ATOL, diffs


def test_retinanet_export_matches_and_deploy_too(tmp_path):
    model = export_onnx.build_model(RETINANET)
    _randomize_norms(model.backbone)
    module, _ = export_onnx.exportable(model)
    out = str(tmp_path / 'retinanet.onnx')
    info = export_onnx.export(module, out, shape=(64, 96))
    levels = 5  # P3-P7
    assert info['output_names'] == ([f'cls_score_{i}' for i in range(levels)] +
                                    [f'bbox_pred_{i}' for i in range(levels)])
    inputs = _inputs()
    diffs = export_onnx.verify(out, module, inputs)
    assert max(diffs.values()) <= ATOL, diffs
    # The graph really is the detector's tensor forward: 80 classes x 9 anchors, 4 x 9 box deltas per level.
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    got = session.run(None, {'input': inputs[0].numpy()})
    assert got[0].shape == (2, 720, 10, 17) and got[levels].shape == (2, 36, 10, 17)

    # Deploy mode: BN folded into the backbone's convs; the export still matches the *unfolded* model.
    with torch.no_grad():
        reference = [module(x) for x in inputs]
    deploy_model = copy.deepcopy(model)
    deploy_module, _ = export_onnx.exportable(deploy_model, deploy=True)
    assert deploy_model.backbone.deploy
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deploy_model.backbone.modules())
    deploy_out = str(tmp_path / 'retinanet_deploy.onnx')
    export_onnx.export(deploy_module, deploy_out, shape=(64, 96))
    session = ort.InferenceSession(deploy_out, providers=['CPUExecutionProvider'])
    for x, expected in zip(inputs, reference):
        for got, exp in zip(session.run(None, {'input': x.numpy()}), expected):
            assert float((torch.from_numpy(got) - exp).abs().max()) <= ATOL


def test_cli_backbone_deploy_verify(tmp_path, capsys):
    out = tmp_path / 'bb.onnx'
    export_onnx.main([RETINANET, str(out), '--backbone-only', '--deploy', '--shape', '64', '64', '--verify'])
    text = capsys.readouterr().out
    assert out.is_file()
    assert 'Exported the backbone in deploy mode' in text
    assert 'outputs: feat_0, feat_1, feat_2, feat_3' in text
    assert '(ok, atol 0.0001)' in text
    # GhostNet-1.1x channels at strides 4-32.
    graph = onnx.load(str(out)).graph
    assert [_dims(o)[1] for o in graph.output] == [28, 44, 124, 176]


def test_cli_checkpoint_is_loaded(tmp_path):
    torch.manual_seed(0)
    model = _randomize_norms(export_onnx.build_model(RETINANET), seed=1)
    ckpt = tmp_path / 'det.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)
    out = tmp_path / 'bb.onnx'
    torch.manual_seed(1)  # the tool builds the model with other random weights, then loads the checkpoint
    export_onnx.main([RETINANET, str(ckpt), str(out), '--backbone-only', '--shape', '64', '64'])
    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.backbone(x)
    got = session.run(None, {'input': x.numpy()})
    assert max(float((torch.from_numpy(g) - e).abs().max()) for g, e in zip(got, expected)) <= ATOL


def test_two_stage_detector_is_refused_with_advice():
    model = export_onnx.build_model('configs/faster_rcnn_ghostnet_fpn.py')
    with pytest.raises(ValueError, match='--backbone-only'):
        export_onnx.exportable(model)


def _tame_norms(model, seed=0):
    """Like _randomize_norms, with the norms' scales cut to 0.3x: a random GhostNetV3 (five summed branches per
    conv) otherwise grows its activations to ~1e8 by stride 32, where fp32 rounding differences are no longer
    small relative to anything."""
    _randomize_norms(model, seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.mul_(0.3)
    return model


@pytest.mark.parametrize('deploy', [False, True])
@pytest.mark.parametrize('backbone_type', ['GhostNetV2', 'GhostNetV3', 'RepGhostNet'])
def test_family_backbone_export_dynamic_odd_sizes(backbone_type, deploy, tmp_path):
    """Issue 12 item 5: V2's DFC pooling/upsampling is a known ONNX trap. Traced at 64x96, run at odd sizes and
    other batch sizes; every output (0-5) equals PyTorch's, in eval and in deploy mode."""
    from mmdet.registry import MODELS
    assert MODELS.get(backbone_type) is not None, f'{backbone_type} is not registered after `import mmghost`'
    backbone = _tame_norms(MODELS.build(dict(type=backbone_type, out_indices=(0, 1, 2, 3, 4, 5)))).eval()
    inputs = _inputs() + [torch.randn(1, 3, 65, 97, generator=torch.Generator().manual_seed(4))]
    with torch.no_grad():
        eval_outputs = [backbone(x) for x in inputs]
    if deploy:
        backbone.switch_to_deploy()
    out = str(tmp_path / f'{backbone_type}.onnx')
    info = export_onnx.export(backbone, out, shape=(64, 96))
    assert info['output_names'] == [f'feat_{i}' for i in range(6)]
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    for x, expected in zip(inputs, eval_outputs):
        got = session.run(None, {'input': x.numpy()})
        assert [g.shape for g in got] == [tuple(e.shape) for e in expected]
        for g, e in zip(got, expected):
            assert float((torch.from_numpy(g) - e).abs().max() / e.abs().max()) <= 1e-4
