"""Hooks that mmghost configs and tools can name."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmghost.registry import HOOKS


@HOOKS.register_module()
class BackboneDeployHook(Hook):
    """Before testing (after the checkpoint is loaded), fold the backbone's BNs: ``switch_to_deploy()``."""

    def before_test(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        backbone = getattr(model, 'backbone', None)
        if not hasattr(backbone, 'switch_to_deploy'):
            raise TypeError(f'BackboneDeployHook: {type(backbone).__name__} has no switch_to_deploy()')
        backbone.switch_to_deploy()
