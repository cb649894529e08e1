"""Data-side safety: ``SafeCocoDataset`` (clear handling of bad annotations/images) and
``CheckedDetDataPreprocessor`` (refuses NaN/Inf inputs), and float32 NMS under CPU fp16/bf16 autocast.

Imports mmdet's datasets and models (hence compiled mmcv ops), so ``import mmghost`` does not import it; configs
name it explicitly::

    custom_imports = dict(imports=['mmghost', 'mmghost.datasets'], allow_failed_imports=False)
"""
from . import cpu_amp
from .preprocessor import CheckedDetDataPreprocessor, NonFiniteInputError
from .safe_coco import SafeCocoDataset, check_coco_file, image_problem

cpu_amp.apply()  # mmcv's CPU NMS is float32-only: fp16/bf16 autocast inference on CPU needs this

__all__ = ['SafeCocoDataset', 'CheckedDetDataPreprocessor', 'NonFiniteInputError', 'check_coco_file',
           'image_problem']
