"""Hooks that mmghost configs and tools can name."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmghost.models.fold import deploy_model
from mmghost.registry import HOOKS


@HOOKS.register_module()
class BackboneDeployHook(Hook):
    """Before testing (after the checkpoint is loaded), put the model in deploy mode with
    :func:`mmghost.models.deploy_model`: the backbone's ``switch_to_deploy()`` (family backbones) and the norms
    after ``GhostConv`` layers folded (any model). TypeError if the model has neither."""

    def before_test(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        try:
            deploy_model(model, strict=True)
        except TypeError as e:
            raise TypeError(f'BackboneDeployHook: {e}') from e
