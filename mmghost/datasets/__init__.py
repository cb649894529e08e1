"""Data-side safety: ``SafeCocoDataset`` (clear handling of bad annotations/images), ``DataProblemsHook`` (the
main process reports what dataloader workers met), ``ClassChecksHook`` (the heads' classes against the data's,
before training) and ``CheckedDetDataPreprocessor`` (refuses NaN/Inf inputs).

Imports mmdet's datasets and models (hence compiled mmcv ops), so ``import mmghost`` does not import it; configs
name it explicitly. Importing it registers these classes and changes nothing else::

    custom_imports = dict(imports=['mmghost', 'mmghost.datasets'], allow_failed_imports=False)
"""
from .class_checks import ClassChecksHook
from .preprocessor import CheckedDetDataPreprocessor, NonFiniteInputError
from .problems_hook import DataProblemsHook
from .safe_coco import SafeCocoDataset, check_coco_file, image_problem

__all__ = ['SafeCocoDataset', 'ClassChecksHook', 'DataProblemsHook', 'CheckedDetDataPreprocessor', 'NonFiniteInputError',
           'check_coco_file', 'image_problem']
