"""Distributed training on CPU (gloo) with mmengine's runner.

mmengine 0.10.7 always passes ``device_ids=[LOCAL_RANK]`` to DistributedDataParallel, which torch rejects for
a CPU module. This wrapper drops them on CPU; on GPU it is mmengine's own wrapper.
"""
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUAwareDistributedDataParallel(MMDistributedDataParallel):

    def __init__(self, module, device_ids=None, **kwargs):
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        super().__init__(module=module, device_ids=None if on_cpu else device_ids, **kwargs)
