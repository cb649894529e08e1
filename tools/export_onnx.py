"""Export a GhostNet-family backbone, or a single-stage detector's tensor forward, to ONNX; optionally check it.

    python tools/export_onnx.py CONFIG [CHECKPOINT] OUT.onnx [--backbone-only] [--deploy] [--shape H W]
        [--opset 17] [--verify] [--cfg-options KEY=VALUE ...]

* The detector graph is mmdet's ``mode='tensor'`` forward: backbone + neck + head, no box decoding and no NMS.
  Its outputs are the per-level maps ``cls_score_0..L-1`` (N, A*C, H_l, W_l) and then ``bbox_pred_0..L-1``
  (N, A*4, H_l, W_l), in the order of ``model._forward``. Only single-stage detectors (RetinaNet, FCOS, ...)
  can be exported this way: a two-stage detector's RoI head needs NMS'd proposals; export its backbone.
* The backbone graph's outputs are ``feat_0..`` (one per ``out_indices``).
* The input ``input`` is the batch *after* mmdet's data preprocessor: RGB, normalised with the config's
  ``data_preprocessor`` mean/std, padded to a multiple of its ``pad_size_divisor``. Batch, height and width are
  dynamic axes (so are every output's).
* ``--deploy`` puts the model in deploy mode first (``mmghost.models.deploy_model``, as every tool: the
  backbone's ``switch_to_deploy``, V3's re-parameterisation branches fused, batch norms folded into the convs,
  those after ``GhostConv`` layers anywhere in the model included), in NCHW layout (channels_last would only
  add Transpose nodes to the graph). GhostNetV2's DFC attention (2x2 average
  pooling, nearest upsampling to the feature's size) exports with dynamic, odd sizes too
  (tests/test_onnx_export.py).
* ``--verify`` runs the file with onnxruntime (CPU) on an input with another batch size and image size than
  the export example, and fails if any output differs from PyTorch by more than ``--atol`` (default 1e-4).
* CHECKPOINT is an mmdet checkpoint of the detector (``state_dict`` with ``backbone.``, ``neck.``, ... keys).
  Without it the model has random weights; the config's backbone ``init_cfg`` is never used (its checkpoint
  file may not exist).

The legacy TorchScript exporter (``torch.onnx.export(..., dynamo=False)``; the only one in torch 2.1) is used:
it needs only the ``onnx`` package, and it traces the dynamic shapes of FPN's upsampling correctly. The
backbone skips its input checks while being traced; other TracerWarnings (mmdet's heads) are silenced.
"""
import argparse
import inspect
import os.path as osp
import sys
import warnings
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.config import DictAction

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:  # run as `python tools/export_onnx.py` from a checkout without an install
    sys.path.insert(0, ROOT)

import mmghost  # noqa: E402,F401  registers the GhostNet family
from mmghost.engine import build_detector, load_config, load_detector_checkpoint  # noqa: E402
from mmghost.utils import exit_on_user_error  # noqa: E402

DEFAULT_OPSET = 17
# torch >= 2.5 has a `dynamo` switch (and defaults it to True from 2.9); torch 2.1 has only the legacy exporter.
LEGACY_EXPORTER = dict(dynamo=False) if 'dynamo' in inspect.signature(torch.onnx.export).parameters else {}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export a GhostNet backbone or detector to ONNX',
                                     usage='%(prog)s CONFIG [CHECKPOINT] OUT.onnx [options]')
    parser.add_argument('config', help='config file path')
    parser.add_argument('first', metavar='CHECKPOINT', help='detector checkpoint (optional; random weights without)')
    parser.add_argument('second', nargs='?', metavar='OUT.onnx', help='output file')
    parser.add_argument('--backbone-only', action='store_true', help='export the backbone alone')
    parser.add_argument('--deploy', action='store_true', help='fold batch norms into convs before export')
    parser.add_argument('--shape', type=int, nargs=2, default=[320, 320], metavar=('H', 'W'),
                        help='height and width of the example input used for tracing (default: 320 320)')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET, help=f'ONNX opset (default {DEFAULT_OPSET})')
    parser.add_argument('--verify', action='store_true',
                        help='check the file with onnxruntime against PyTorch on another batch and image size')
    parser.add_argument('--atol', type=float, default=1e-4, help='largest absolute difference --verify accepts')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, as key=value pairs')
    args = parser.parse_args(argv)
    args.checkpoint, args.out = (None, args.first) if args.second is None else (args.first, args.second)
    if not args.out.endswith('.onnx'):
        parser.error(f'the output file must end with .onnx, got {args.out!r}')
    if min(args.shape) < 32:
        parser.error('--shape must be at least 32 pixels')
    return args


def build_model(config, checkpoint=None, cfg_options=None) -> nn.Module:
    """The config's detector in eval mode, with the checkpoint's weights or random ones (never ``init_cfg``)."""
    model = build_detector(load_config(config, cfg_options))
    if checkpoint is not None:
        # Read safely (weights_only semantics on every torch), then mmengine's key handling.
        load_detector_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.eval()
    return model


class DetectorTensorForward(nn.Module):
    """A single-stage detector's ``_forward`` (backbone + neck + head) with its nested outputs flattened."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        from mmdet.models.detectors import SingleStageDetector
        if not isinstance(detector, SingleStageDetector):
            raise ValueError(f'{type(detector).__name__} is not a single-stage detector: its tensor forward needs '
                             'proposals after NMS and cannot be exported as one graph; use --backbone-only')
        self.detector = detector

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outs = self.detector._forward(x)
        return tuple(t for level_outputs in outs for t in level_outputs)

    def output_names(self, example: torch.Tensor) -> List[str]:
        with torch.no_grad():
            outs = self.detector._forward(example)
        kinds = ['cls_score', 'bbox_pred', 'centerness', 'objectness']
        return [f'{kinds[k] if k < len(kinds) else f"out{k}"}_{level}'
                for k, level_outputs in enumerate(outs) for level in range(len(level_outputs))]


def exportable(model: nn.Module, backbone_only: bool = False, deploy: bool = False) -> Tuple[nn.Module, str]:
    """The module to export (backbone or wrapped detector) and the kind of its outputs' names."""
    if deploy:  # the deploy mode of every tool (tools/test.py --deploy, tools/infer.py, tools/deploy.py)
        from mmghost.models import deploy_model
        try:
            # NCHW: an ONNX graph has no memory layout; tracing the channels_last mode adds a Transpose per
            # layout change (96 in a GhostNet backbone) that ONNX Runtime then executes.
            deploy_model(model, channels_last=False, strict=True)
        except TypeError as e:
            raise ValueError(str(e)) from e
    # Not `module.eval()` as a value: mmdet's ResNet and MobileNetV2 override train() and return None.
    module = model.backbone if backbone_only else DetectorTensorForward(model)
    module.eval()
    return module, 'feat' if backbone_only else 'detector'


def export(module: nn.Module, out: str, shape: Sequence[int] = (320, 320), opset: int = DEFAULT_OPSET,
           batch: int = 1) -> Dict:
    """Trace ``module`` on a ``batch x 3 x H x W`` example and write ``out`` with dynamic batch/height/width."""
    example = torch.randn(batch, 3, *shape, generator=torch.Generator().manual_seed(0))
    if isinstance(module, DetectorTensorForward):
        output_names = module.output_names(example)
    else:
        with torch.no_grad():
            output_names = [f'feat_{i}' for i in range(len(module(example)))]
    dynamic_axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
    for name in output_names:
        dynamic_axes[name] = {0: 'batch', 2: f'{name}_height', 3: f'{name}_width'}
    with warnings.catch_warnings():
        # Channel-count checks in the backbone: static in the graph, harmless. And the legacy exporter's notice.
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', message='.*legacy TorchScript-based ONNX export.*')
        with torch.no_grad():
            torch.onnx.export(module, (example, ), out, opset_version=opset, input_names=['input'],
                              output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True,
                              **LEGACY_EXPORTER)
    return dict(out=out, input_shape=list(example.shape), output_names=output_names)


def verify(onnx_path: str, module: nn.Module, inputs: Sequence[torch.Tensor]) -> Dict[str, float]:
    """Run ``onnx_path`` with onnxruntime (CPU) on each input; the largest |ONNX - PyTorch| per output name."""
    import onnx
    import onnxruntime as ort
    onnx.checker.check_model(onnx.load(onnx_path))
    session = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    diffs = {name: 0.0 for name in names}
    for x in inputs:
        with torch.no_grad():
            expected = module(x)
        got = session.run(None, {'input': x.numpy()})
        if len(got) != len(expected):
            raise AssertionError(f'ONNX gave {len(got)} outputs, PyTorch {len(expected)}')
        for name, g, e in zip(names, got, expected):
            if tuple(g.shape) != tuple(e.shape):
                raise AssertionError(f'{name}: ONNX shape {g.shape} != PyTorch {tuple(e.shape)} for input '
                                     f'{tuple(x.shape)}')
            diffs[name] = max(diffs[name], float((torch.from_numpy(g) - e).abs().max()))
    return diffs


def verification_inputs(shape: Sequence[int]) -> List[torch.Tensor]:
    """Inputs unlike the export example: batch 2 and an odd size not a multiple of 32, and batch 1 and another."""
    g = torch.Generator().manual_seed(1)
    h, w = shape
    return [torch.randn(2, 3, max(33, h // 2 + 13), w + 37, generator=g),
            torch.randn(1, 3, h + 64, max(33, w // 2 - 9), generator=g)]


def main(argv=None):
    args = parse_args(argv)
    model = build_model(args.config, args.checkpoint, args.cfg_options)
    try:
        module, _ = exportable(model, args.backbone_only, args.deploy)
    except ValueError as e:
        sys.exit(f'export_onnx: {e}')
    info = export(module, args.out, args.shape, args.opset)
    what = 'backbone' if args.backbone_only else 'detector tensor forward (backbone+neck+head, no NMS)'
    print(f'Exported the {what}{" in deploy mode" if args.deploy else ""} to {args.out} '
          f'(opset {args.opset}, traced at {"x".join(map(str, info["input_shape"]))}; dynamic batch, height, '
          f'width)')
    print(f'outputs: {", ".join(info["output_names"])}')
    if args.verify:
        inputs = verification_inputs(args.shape)
        diffs = verify(args.out, module, inputs)
        worst = max(diffs.values())
        shapes = ', '.join('x'.join(map(str, x.shape)) for x in inputs)
        print(f'onnxruntime vs PyTorch on inputs {shapes}: max |difference| {worst:.3g} '
              f'({"ok" if worst <= args.atol else "FAILED"}, atol {args.atol:g})')
        if worst > args.atol:
            for name, d in diffs.items():
                print(f'  {name}: {d:.3g}')
            sys.exit(1)
    return info


if __name__ == '__main__':
    with exit_on_user_error():
        main()
