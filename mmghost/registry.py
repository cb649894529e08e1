"""mmghost registers into MMDetection's registries, so configs name its classes like mmdet's own."""
from mmdet.registry import DATASETS, HOOKS, METRICS, MODELS, TRANSFORMS

__all__ = ['MODELS', 'HOOKS', 'DATASETS', 'TRANSFORMS', 'METRICS']
