"""``CheckedDetDataPreprocessor``: mmdet's ``DetDataPreprocessor`` that refuses NaN/Inf inputs with a clear error.

mmdet 3.3 lets a non-finite input run through the model: the losses turn NaN, the optimizer step writes NaN into
the weights, and only ``CheckInvalidLossHook`` (if configured) stops training afterwards, with a bare
``AssertionError``. Images decoded from files are uint8 and cannot hold NaN, but float inputs (custom loading,
``to_float32`` pipelines, direct ``model.data_preprocessor(...)`` calls) can. This preprocessor checks the
normalised batch before the model sees it and raises :class:`NonFiniteInputError` naming the images, so the
weights stay intact and the latest checkpoint stays a good place to resume from.

    # custom_imports = dict(imports=['mmghost', 'mmghost.datasets'])
    model = dict(data_preprocessor=dict(type='CheckedDetDataPreprocessor', ...))
"""
import torch

from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.registry import MODELS
from mmghost.utils.errors import UserFacingError


class NonFiniteInputError(UserFacingError, ValueError):
    """The input batch holds NaN or Inf values."""


@MODELS.register_module()
class CheckedDetDataPreprocessor(DetDataPreprocessor):
    """``DetDataPreprocessor`` + a finiteness check of the (float) batch it returns."""

    def forward(self, data: dict, training: bool = False) -> dict:
        out = super().forward(data, training)
        inputs = out['inputs']
        if torch.is_tensor(inputs) and inputs.is_floating_point():
            finite = torch.isfinite(inputs).flatten(1).all(1)
            if not bool(finite.all()):
                samples = out.get('data_samples') or []
                bad = [int(i) for i in (~finite).nonzero().flatten()]
                names = [samples[i].metainfo.get('img_path', f'#{i}') if i < len(samples) else f'#{i}'
                         for i in bad]
                counts = [int((~torch.isfinite(inputs[i])).sum()) for i in bad]
                raise NonFiniteInputError(
                    f'the input batch has NaN/Inf values in {len(bad)} of {len(finite)} image(s): '
                    + ', '.join(f'{n} ({c} values)' for n, c in zip(names, counts))
                    + '; check the loading pipeline / the images. The model was not run on it.')
        return out
