"""fp16/bf16 autocast with mmcv 2.1's compiled ops: run the ops that lack low-precision kernels in float32 — while
asked to, and only then.

mmcv 2.1's CPU ``nms`` takes float32 only and its CPU ``roi_align`` has no bfloat16 kernel; its CUDA kernels of
``nms``, ``roi_align`` and ``sigmoid_focal_loss`` have no bfloat16 dispatch. Under ``torch.autocast`` (``--amp``, a
val/test loop with ``fp16=True``, your own inference code) boxes, scores, features and logits come out in low
precision and these ops fail (``RuntimeError: expected scalar type Float but found BFloat16``, ``"..." not
implemented for 'BFloat16'``). Inside :func:`mmcv_ops_in_float32` the tensor inputs of ``NMSop``,
``RoIAlignFunction`` and ``SigmoidFocalLossFunction`` are cast to float32 when they are fp16/bf16 on CPU or bf16 on
CUDA; everything else is left alone (CUDA fp16 has kernels). Outputs stay float32 (NMS returns indices; autocast
casts what follows; autograd hands the gradient back in the input's dtype), except that ``RoIAlign`` modules
return their input's dtype, which mmdet's RoI extractors need. On leaving, mmcv's own ``forward``
methods are put back (the very same objects): nothing stays changed. :class:`MMGhostRunner` runs its train/val/test
loops inside it; other code can use it directly::

    with mmcv_ops_in_float32(), torch.autocast('cpu', dtype=torch.bfloat16):
        results = model.test_step(data)

Nested and concurrent uses are counted: the patch is in place while at least one is active. While active it is
process-wide (mmcv looks ``forward`` up on the class), which only changes calls that would fail otherwise. Without
mmcv's compiled ops it does nothing. Measured on CPU (NMS, RoIAlign); the CUDA bf16 path has not been run here.
"""
import importlib
import threading
from contextlib import contextmanager
from typing import Iterator, List, Tuple

import torch

# (module, autograd Function, positions of the forward arguments after ctx that hold float tensors)
_OPS = (('mmcv.ops.nms', 'NMSop', (0, 1)),  # bboxes, scores
        ('mmcv.ops.roi_align', 'RoIAlignFunction', (0, 1)),  # input, rois
        ('mmcv.ops.focal_loss', 'SigmoidFocalLossFunction', (0, 4)))  # input, weight
# (module, function) that modules call through their module's globals, wrapped so that the result goes back to the
# input's dtype: mmdet's RoI extractors write RoIAlign's output into a buffer of the features' dtype
# (``roi_feats[inds] = ...`` fails for float32 into bf16). The cast back is outside the autograd Function, so its
# backward kernel still gets float32 gradients.
_DTYPE_KEEPING = (('mmcv.ops.roi_align', 'roi_align'), )
_lock = threading.Lock()
_active = 0
_originals: List[Tuple[object, str, object]] = []  # (owner, attribute, mmcv's own object)


def _lacks_kernel(t) -> bool:
    """True for a tensor mmcv 2.1's kernels cannot take: fp16/bf16 on CPU, bf16 on CUDA."""
    if not torch.is_tensor(t):
        return False
    if t.device.type == 'cpu':
        return t.dtype in (torch.float16, torch.bfloat16)
    return t.dtype == torch.bfloat16


def _float32_forward(original, positions):

    def forward(ctx, *args, **kwargs):
        if any(_lacks_kernel(args[i]) for i in positions if i < len(args)):
            args = tuple(a.float() if i in positions and torch.is_tensor(a) and a.is_floating_point() else a
                         for i, a in enumerate(args))
        return original(ctx, *args, **kwargs)

    return staticmethod(forward)


def _dtype_keeping(original):

    def function(input, rois, *args, **kwargs):
        if _lacks_kernel(input) or _lacks_kernel(rois):
            return original(input.float(), rois.float(), *args, **kwargs).to(input.dtype)
        return original(input, rois, *args, **kwargs)

    return function


def _module_functions():
    found = []
    for module_name, name in _DTYPE_KEEPING:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if callable(getattr(module, name, None)):
            found.append((module, name))
    return found


def _functions():
    found = []
    for module_name, class_name, positions in _OPS:
        try:
            found.append((getattr(importlib.import_module(module_name), class_name), positions))
        except (ImportError, AttributeError):  # mmcv without compiled ops, or another mmcv version
            pass
    return found


@contextmanager
def mmcv_ops_in_float32() -> Iterator[None]:
    """While active, mmcv's NMS, RoIAlign and sigmoid focal loss accept fp16/bf16 inputs (module docstring)."""
    global _active
    with _lock:
        if _active == 0:
            for function, positions in _functions():
                original = function.__dict__['forward']
                _originals.append((function, 'forward', original))
                function.forward = _float32_forward(function.forward, positions)
            for module, name in _module_functions():
                original = getattr(module, name)
                _originals.append((module, name, original))
                setattr(module, name, _dtype_keeping(original))
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                for owner, name, original in _originals:
                    setattr(owner, name, original)
                _originals.clear()
