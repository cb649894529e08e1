"""What differs between the torch versions mmghost supports (2.1 to 2.13), in one place.

Every other module asks here instead of testing ``torch.__version__`` itself.
"""
import torch

TORCH_VERSION = tuple(int(part) for part in torch.__version__.split('+')[0].split('.')[:2])


def is_compiling() -> bool:
    """True while ``torch.compile`` traces the caller.

    ``torch.compiler.is_compiling`` exists from torch 2.3; torch 2.1/2.2 have ``torch._dynamo.is_compiling``
    (dynamo treats both as constants while tracing, so neither breaks the graph).
    """
    compiler_check = getattr(torch.compiler, 'is_compiling', None)
    if compiler_check is not None:
        return compiler_check()
    # torch < 2.3. Imported on first use only (slow to import); `from torch import` binds no local `torch`.
    from torch import _dynamo
    return _dynamo.is_compiling()


# The oldest torch `make test` runs on (.venv-torch21). Older ones miss APIs mmghost uses (torch.compiler,
# weights_only loading of mmengine checkpoints...), so say it at import instead of failing somewhere deep.
TORCH_FLOOR = (2, 1)
if TORCH_VERSION < TORCH_FLOOR:
    raise ImportError(f'mmghost needs torch >= {TORCH_FLOOR[0]}.{TORCH_FLOOR[1]} (tested: 2.1.2 and 2.13.0), '
                      f'found {torch.__version__}')
