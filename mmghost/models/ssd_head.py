"""mmdet's ``SSDHead``, able to predict under mmdet 3.3.0 (for ``configs/ssdlite_ghostnet-1.0x_320.py``).

mmdet 3.3.0's ``BaseDenseHead._predict_by_feat_single`` reads ``self.loss_cls`` (for v3det's custom class
channels), which ``SSDHead`` never sets (it computes its loss itself), so every SSD / SSDLite model fails in
predict with "'SSDHead' object has no attribute 'loss_cls'" (open-mmlab/mmdetection issues #11063, #11305,
#11780; fix proposed in PR #11524, not released). :class:`SSDHeadCompat` is ``SSDHead`` with that attribute
set to None, which takes the branch SSD had before. Not imported by ``mmghost`` itself (it imports mmdet's
heads): configs name it in ``custom_imports``.
"""
from mmdet.models.dense_heads import SSDHead

from mmghost.registry import MODELS


@MODELS.register_module()
class SSDHeadCompat(SSDHead):
    """``SSDHead`` (same arguments, same weights) that also predicts under mmdet 3.3.0."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not hasattr(self, 'loss_cls'):
            # ``getattr(None, 'custom_cls_channels', False)`` is False: the softmax branch, as SSD always used.
            self.loss_cls = None
