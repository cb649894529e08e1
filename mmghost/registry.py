"""mmghost registers into MMDetection's registries, so configs name its classes like mmdet's own.

``RUNNERS`` is mmengine's root registry: mmdet's tools build ``runner_type`` from it before any default scope
exists, so a runner registered only under the ``mmdet`` scope would not be found there.
"""
from mmdet.registry import DATASETS, HOOKS, METRICS, MODELS, TRANSFORMS
from mmengine.registry import RUNNERS

__all__ = ['MODELS', 'HOOKS', 'DATASETS', 'TRANSFORMS', 'METRICS', 'RUNNERS']
