"""fp16/bf16 inference on CPU: mmcv's CPU NMS kernel only takes float32, so give it float32.

Under ``torch.autocast('cpu', dtype=torch.bfloat16 / torch.float16)`` (CPU ``--amp``, or a val loop with
``fp16=True``) the detector's boxes and scores come out in low precision and mmcv 2.1's ``nms`` fails with
``RuntimeError: expected scalar type Float but found BFloat16``. The patch casts the inputs of the NMS kernel to
float32 on CPU only; it returns indices, so the results keep the caller's dtype. Applied (once) by
``import mmghost.datasets``; CUDA tensors and float32 inputs are untouched.
"""
import torch

_LOW = (torch.float16, torch.bfloat16)


def apply() -> bool:
    from mmcv.ops.nms import NMSop
    if getattr(NMSop, '_mmghost_cpu_amp', False):
        return False
    original = NMSop.forward

    def forward(ctx, bboxes, scores, *args, **kwargs):
        if bboxes.device.type == 'cpu' and (bboxes.dtype in _LOW or scores.dtype in _LOW):
            bboxes, scores = bboxes.float(), scores.float()
        return original(ctx, bboxes, scores, *args, **kwargs)

    NMSop.forward = staticmethod(forward)
    NMSop._mmghost_cpu_amp = True
    return True
