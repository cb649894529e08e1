"""Deploy forms (mmghost.models.deploy_forms): the padded and split trunks equal eval mode, and deploy_model picks
them only for the NCHW deploy mode on the CPU."""
import copy

import pytest
import torch
import torch.nn as nn

from mmghost.models import GhostNet, GhostNetV2, GhostNetV3, deploy_model
from mmghost.models.deploy_forms import TrunkForm, apply_deploy_form, ghost_layout

FAMILY = [(GhostNet, dict(widen_factor=1.1)), (GhostNetV2, dict(widen_factor=1.0)),
          (GhostNetV3, dict(widen_factor=0.5))]


def _random_norms(model, seed=0):
    """Norms that are not the identity (random statistics and affine), so that folding them does something."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=generator) * 0.6 - 0.3)
    return model.eval()


def _assert_close_to_scale(outs, refs):
    assert len(outs) == len(refs)
    for out, ref in zip(outs, refs):
        assert out.shape == ref.shape
        scale = float(ref.abs().max())
        assert float((out - ref).abs().max()) <= 1e-4 * scale, (float((out - ref).abs().max()), scale)


@pytest.mark.parametrize('cls,kwargs', FAMILY, ids=lambda v: getattr(v, '__name__', ''))
@pytest.mark.parametrize('form', ['padded', 'split', 'dup', 'delta'])
@pytest.mark.parametrize('out_indices', [(1, 2, 3, 4), (0, 5)])
def test_deploy_form_equals_eval_mode(cls, kwargs, form, out_indices):
    torch.manual_seed(0)
    model = _random_norms(cls(out_indices=out_indices, **kwargs))
    x = torch.randn(1, 3, 70, 90)  # odd sizes after the strides: the DFC gate's floor pooling
    with torch.no_grad():
        refs = model(x)
        deployed = deploy_model(copy.deepcopy(model), channels_last=False, form=form)
        assert isinstance(deployed.deploy_form, TrunkForm)
        _assert_close_to_scale(deployed(x), refs)


@pytest.mark.parametrize('block', [1, 8])
def test_deploy_form_other_blocks_equal_eval_mode(block):
    torch.manual_seed(1)
    model = _random_norms(GhostNetV2(out_indices=(2, 3, 4)))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        refs = model(x)
        _assert_close_to_scale(deploy_model(copy.deepcopy(model), channels_last=False, form='split', block=block)(x),
                               refs)


def test_ghost_layout_pads_each_half_to_the_block():
    first, second = ghost_layout(14, 16, 'split')
    assert first.tolist() == list(range(14)) + [-1, -1]
    assert second.tolist() == list(range(14, 28)) + [-1, -1]
    (whole, ) = ghost_layout(14, 16, 'padded')
    assert whole.tolist() == first.tolist() + second.tolist()


def test_split_form_has_no_concat_inside_the_trunk():
    """The split form concatenates only at the taps; the padded form's Ghost halves are whole blocks."""
    model = deploy_model(_random_norms(GhostNet(widen_factor=1.1, out_indices=(2, 3, 4))), channels_last=False,
                         form='split')
    form = model.deploy_form
    x = torch.randn(1, 3, 64, 64)
    calls = []
    original = torch.cat

    def counting_cat(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    torch.cat = counting_cat
    try:
        with torch.no_grad():
            form(x)
    finally:
        torch.cat = original
    assert len(calls) == 3  # one per tap
    padded = deploy_model(_random_norms(GhostNet(widen_factor=1.1)), channels_last=False, form='padded')
    for module in padded.deploy_form.modules():
        if isinstance(module, nn.Conv2d) and module.groups > 1:
            assert module.out_channels % 16 == 0, module


def test_deploy_model_auto_form_only_for_nchw():
    model = _random_norms(GhostNet())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        refs = model(x)
        nchw = deploy_model(copy.deepcopy(model), channels_last=False)
        assert nchw.deploy_form.form == 'split'
        channels_last = deploy_model(copy.deepcopy(model), channels_last=True)
        assert getattr(channels_last, 'deploy_form', None) is None
        outs = channels_last(x)
        assert all(o.is_contiguous(memory_format=torch.channels_last) for o in outs)
        _assert_close_to_scale(outs, refs)
        plain = deploy_model(copy.deepcopy(model), channels_last=False, form='plain')
        assert getattr(plain, 'deploy_form', None) is None
        # Switching a formed backbone to channels_last drops the NCHW form.
        nchw.switch_to_deploy(channels_last=True)
        assert getattr(nchw, 'deploy_form', None) is None
        _assert_close_to_scale(nchw(x), refs)


def test_deploy_model_form_on_a_detector_backbone_and_other_indices():
    """A form is built for out_indices; other tap requests (tools) run the deployed modules."""
    model = deploy_model(_random_norms(GhostNet(out_indices=(2, 3))), channels_last=False, form='padded')
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        taps = model.forward_taps(x, (1, 2))
        assert [t.shape[1] for t in taps] == [24, 40]


def test_unsupported_ratio_keeps_the_plain_form():
    model = _random_norms(GhostNet(ratio=3))
    auto = deploy_model(copy.deepcopy(model), channels_last=False)
    assert getattr(auto, 'deploy_form', None) is None
    with pytest.raises(ValueError, match='ratio'):
        deploy_model(copy.deepcopy(model), channels_last=False, form='split')


def test_repghostnet_keeps_the_plain_form_and_equals_eval_mode():
    """RepGhost's module adds instead of concatenating: `auto` leaves it plain, an explicit form is refused."""
    from mmghost.models import RepGhostNet
    model = _random_norms(RepGhostNet(out_indices=(2, 3, 4)))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        refs = model(x)
        auto = deploy_model(copy.deepcopy(model), channels_last=False)
        assert getattr(auto, 'deploy_form', None) is None
        _assert_close_to_scale(auto(x), refs)
    with pytest.raises(ValueError, match='concatenation'):
        deploy_model(copy.deepcopy(model), channels_last=False, form='split')


def test_bad_form_arguments():
    model = deploy_model(GhostNet().eval(), channels_last=False, form='plain')
    with pytest.raises(ValueError, match='form'):
        apply_deploy_form(model, 'fast')
    with pytest.raises(ValueError, match='block'):
        apply_deploy_form(model, 'split', block=0)
    with pytest.raises(ValueError, match='form'):
        deploy_model(GhostNet().eval(), form='fast')
    with pytest.raises(ValueError, match='channels_last'):
        apply_deploy_form(deploy_model(GhostNet().eval(), channels_last=True), 'split')


@pytest.mark.parametrize('cls', [GhostNet, GhostNetV2], ids=lambda c: c.__name__)
@pytest.mark.parametrize('form', ['padded', 'split'])
def test_deploy_form_exports_to_onnx_and_onnxruntime_equals_eval_mode(tmp_path, cls, form):
    """Standard ONNX ops only (default domain), and ONNX Runtime's outputs equal the eval-mode model's."""
    onnx = pytest.importorskip('onnx', reason='onnx is an optional test extra')
    ort = pytest.importorskip('onnxruntime', reason='onnxruntime is an optional test extra')
    import export_onnx  # tools/export_onnx.py (its exporter switch for torch >= 2.5)
    torch.manual_seed(0)
    model = _random_norms(cls(out_indices=(1, 2, 3, 4)))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        refs = model(x)
        deployed = deploy_model(copy.deepcopy(model), channels_last=False, form=form)
        path = str(tmp_path / 'backbone.onnx')
        torch.onnx.export(deployed, x, path, opset_version=13, input_names=['input'], **export_onnx.LEGACY_EXPORTER)
    graph = onnx.load(path).graph
    assert {node.domain for node in graph.node} <= {''}
    if cls is GhostNet and form == 'split':  # (V2's gates concatenate shapes for their upsampling)
        assert sum(node.op_type == 'Concat' for node in graph.node) == 4  # one per tap
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    outs = session.run(None, {'input': x.numpy()})
    _assert_close_to_scale([torch.from_numpy(o) for o in outs], refs)
