"""Every tool's deploy flag is ``mmghost.models.deploy_model``, on each detector kind we ship: a GhostNet backbone, a
Ghost head (GhostConv + batch norm in neck and head) and a Ghost-ResNet (mmdet's ResNet with GhostConv, no
``switch_to_deploy`` of its own). Tiny versions of the three (tests/fixtures/tiny_config.py) on the shapes dataset.

``tools/export_onnx.py`` runs in this process (onnx and onnxruntime are test extras); ``tools/infer.py`` and
``tools/test.py`` run as a user runs them (slow); ``tools/deploy.py`` needs mmdeploy: tests/deploy_stack.
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from fixtures.backbone_training import randomize_bn
from fixtures.tiny_config import TINY_DETECTORS, make_dataset, tiny_config_text

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
KINDS = sorted(TINY_DETECTORS)
# What deploy_model logs for each kind: a family backbone switched, GhostConv norms folded, or both.
DEPLOY_LOG = {
    'ghostnet': ['folded batch norms into convs (deploy mode)'],
    'ghost-head': ['folded batch norms into convs (deploy mode)', 'batch norms into GhostConv layers'],
    'ghost-resnet': ['batch norms into GhostConv layers'],
}


@pytest.fixture(scope='module')
def detectors(tmp_path_factory):
    """kind -> dict(config, checkpoint (weights with non-trivial norm statistics), image)."""
    from mmghost.engine import build_detector, load_config
    base = tmp_path_factory.mktemp('tool_deploy')
    data = make_dataset(str(base / 'shapes'), images=2, size=96)
    image = sorted(glob.glob(osp.join(data, 'val', '*.png')))[0]
    out = {}
    for kind, model_text in TINY_DETECTORS.items():
        config = base / f'{kind}.py'
        # the Ghost head with batch norms, so that there are norms after GhostConv layers to fold
        extra = model_text + ("model['bbox_head']['norm_cfg'] = dict(type='BN', requires_grad=True)\n"
                              if kind == 'ghost-head' else '')
        config.write_text(tiny_config_text(data, epochs=1, val_batch_size=1, extra=extra))
        model = randomize_bn(build_detector(load_config(str(config))))
        checkpoint = base / f'{kind}.pth'
        torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
        out[kind] = dict(config=str(config), checkpoint=str(checkpoint), image=image)
    return out


# ---- tools/export_onnx.py ----
onnx = pytest.importorskip('onnx', reason='onnx is an optional test extra (pip install onnx)')
pytest.importorskip('onnxruntime', reason='onnxruntime is an optional test extra (pip install onnxruntime)')
import export_onnx  # noqa: E402  tools/export_onnx.py


def op_types(path):
    return [node.op_type for node in onnx.load(path).graph.node]


@pytest.mark.parametrize('backbone_only', [False, True], ids=['detector', 'backbone'])
@pytest.mark.parametrize('kind', KINDS)
def test_export_onnx_deploy_exports_nchw_and_matches_pytorch(kind, backbone_only, detectors, tmp_path, capsys):
    """--deploy on every kind, --backbone-only included (mmdet's ResNet.train() returns None); --verify compares
    onnxruntime with the deployed PyTorch model; no Transpose: the graph is NCHW, not the CPU's channels_last."""
    d = detectors[kind]
    out = str(tmp_path / f'{kind}.onnx')
    # atol 1e-3: float32 rounding between runtimes on outputs of magnitude ~10 (random weights, randomised norms)
    args = [d['config'], d['checkpoint'], out, '--deploy', '--verify', '--atol', '1e-3', '--shape', '64', '96']
    export_onnx.main(args + (['--backbone-only'] if backbone_only else []))
    printed = capsys.readouterr().out
    assert 'in deploy mode' in printed and '(ok, atol' in printed, printed
    assert 'Transpose' not in op_types(out)


def test_export_onnx_deploy_equals_eval_mode(detectors, tmp_path):
    """The deployed graph computes what the model in eval mode computes (not only what the deployed model does)."""
    d = detectors['ghost-resnet']
    model = export_onnx.build_model(d['config'], d['checkpoint'])
    eval_module, _ = export_onnx.exportable(model)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = eval_module(x)
    out = str(tmp_path / 'deploy.onnx')
    export_onnx.main([d['config'], d['checkpoint'], out, '--deploy', '--shape', '64', '96'])
    import onnxruntime as ort
    got = ort.InferenceSession(out, providers=['CPUExecutionProvider']).run(None, {'input': x.numpy()})
    for g, e in zip(got, expected):
        torch.testing.assert_close(torch.from_numpy(g), e, rtol=1e-3, atol=1e-4)


def test_export_onnx_backbone_only_handles_backbones_whose_train_returns_none(tmp_path):
    """mmdet's MobileNetV2 and ResNet override train() without returning the module."""
    from mmdet.models.backbones import MobileNetV2, ResNet
    for backbone in (MobileNetV2(out_indices=(7, )), ResNet(18, out_indices=(3, ))):
        assert backbone.train(False) is None  # the upstream behaviour this guards against
        model = torch.nn.Module()
        backbone.train()
        model.backbone = backbone
        module, kind = export_onnx.exportable(model, backbone_only=True)
        assert module is backbone and kind == 'feat' and not module.training


# ---- tools/infer.py and tools/test.py, as a user runs them ----


def run_tool(tool, *args):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', tool), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, f'{tool} {args}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
    return proc.stdout + proc.stderr


def scores(out_dir, image):
    with open(osp.join(out_dir, osp.splitext(osp.basename(image))[0] + '.json')) as f:
        return sorted((d['score'] for d in json.load(f)['detections']), reverse=True)


@pytest.mark.slow
@pytest.mark.parametrize('kind', KINDS)
def test_infer_deploy_gives_the_scores_of_eval_mode(kind, detectors, tmp_path):
    d = detectors[kind]
    run_tool('infer.py', d['config'], d['checkpoint'], d['image'], '--out-dir', tmp_path / 'eval')
    output = run_tool('infer.py', d['config'], d['checkpoint'], d['image'], '--out-dir', tmp_path / 'deploy',
                      '--deploy')
    assert all(line in output for line in DEPLOY_LOG[kind]), output[-3000:]
    eval_scores, deploy_scores = scores(tmp_path / 'eval', d['image']), scores(tmp_path / 'deploy', d['image'])
    assert len(eval_scores) == len(deploy_scores) > 0
    # sorted scores: immune to the order of near-ties, sensitive to any score that changed
    torch.testing.assert_close(torch.tensor(deploy_scores), torch.tensor(eval_scores), rtol=0, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize('kind', KINDS)
def test_test_py_deploy_runs_on_every_detector_kind(kind, detectors, tmp_path):
    d = detectors[kind]
    output = run_tool('test.py', d['config'], d['checkpoint'], '--work-dir', tmp_path / 'work', '--deploy')
    assert all(line in output for line in DEPLOY_LOG[kind]), output[-3000:]
    assert 'coco/bbox_mAP' in output
