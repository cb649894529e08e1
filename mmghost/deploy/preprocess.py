"""The test-time preprocessing of an mmdeploy model folder (its ``pipeline.json``), in numpy and OpenCV.

It reproduces what mmdet does before the network so that the ONNX model gets the same input as the PyTorch one:
mmcv's ``imrescale``/``imresize`` (OpenCV bilinear, the same size rounding), mmdet's ``DetDataPreprocessor``
(BGR to RGB, ``(x - mean) / std`` in float32, then zero padding to a multiple of ``size_divisor`` or to a fixed
size).
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

_INTERPOLATION = {
    'nearest': cv2.INTER_NEAREST,
    'bilinear': cv2.INTER_LINEAR,
    'bicubic': cv2.INTER_CUBIC,
    'area': cv2.INTER_AREA,
    'lanczos': cv2.INTER_LANCZOS4,
}


@dataclass(frozen=True)
class Preprocess:
    """Resize, normalise and pad one BGR image the way the exported model's test pipeline does.

    Args:
        scale: ``(width, height)`` of the Resize step (mmdet's ``scale``; pipeline.json's ``size``).
        keep_ratio: Keep the aspect ratio (mmcv ``imrescale``: the largest size that fits the long and the
            short side of ``scale``), else stretch to exactly ``scale`` (mmdeploy's static-shape models).
        mean: Per-channel mean, in the channel order after ``to_rgb``.
        std: Per-channel standard deviation.
        to_rgb: Convert the BGR image to RGB before normalising.
        size_divisor: Pad the bottom and right to a multiple of this (None: no such padding).
        pad_size: Pad to this fixed ``(width, height)`` instead (None: no fixed size).
        pad_value: Value of the padding, in normalised units (mmdet pads after normalising, with 0).
        interpolation: Resize interpolation, one of mmcv's names.
    """

    scale: Optional[Tuple[int, int]]
    keep_ratio: bool = True
    mean: Tuple[float, ...] = (0., 0., 0.)
    std: Tuple[float, ...] = (1., 1., 1.)
    to_rgb: bool = False
    size_divisor: Optional[int] = None
    pad_size: Optional[Tuple[int, int]] = None
    pad_value: float = 0.
    interpolation: str = 'bilinear'

    @classmethod
    def from_pipeline(cls, pipeline: dict) -> 'Preprocess':
        """Read the ``Preprocess`` task of an mmdeploy ``pipeline.json`` (already parsed)."""
        tasks = pipeline['pipeline']['tasks']
        transforms = next(t for t in tasks if t.get('module') == 'Transform')['transforms']
        kwargs = {}
        for transform in transforms:
            kind = transform['type']
            if kind == 'Resize':
                size = transform.get('size') or transform.get('scale')
                kwargs['scale'] = tuple(int(v) for v in size) if size is not None else None
                kwargs['keep_ratio'] = bool(transform.get('keep_ratio', True))
                kwargs['interpolation'] = transform.get('interpolation', 'bilinear')
            elif kind == 'Normalize':
                kwargs.update(mean=tuple(transform['mean']), std=tuple(transform['std']),
                              to_rgb=bool(transform.get('to_rgb', False)))
            elif kind == 'Pad':
                if transform.get('size_divisor'):
                    kwargs['size_divisor'] = int(transform['size_divisor'])
                if transform.get('size'):
                    kwargs['pad_size'] = tuple(int(v) for v in transform['size'])
                pad_val = transform.get('pad_val', 0)
                kwargs['pad_value'] = float(pad_val if np.isscalar(pad_val) else pad_val.get('img', 0))
            elif kind not in ('LoadImageFromFile', 'DefaultFormatBundle', 'Collect', 'ImageToTensor',
                              'PackDetInputs', 'LoadAnnotations'):
                raise ValueError(f'pipeline.json has a {kind!r} transform, which mmghost.deploy does not implement')
        if 'scale' not in kwargs:
            raise ValueError('pipeline.json has no Resize transform')
        return cls(**kwargs)

    def resize(self, image: np.ndarray) -> Tuple[np.ndarray, Tuple[float, float]]:
        """Resize ``image`` (H, W, C); returns it and the ``(w_scale, h_scale)`` that maps boxes back."""
        height, width = image.shape[:2]
        if self.scale is None:
            return image, (1., 1.)
        if self.keep_ratio:
            # mmcv.rescale_size: fit the long side in max(scale) and the short side in min(scale).
            factor = min(max(self.scale) / max(height, width), min(self.scale) / min(height, width))
            new_size = (int(width * factor + 0.5), int(height * factor + 0.5))
        else:
            new_size = self.scale
        resized = cv2.resize(image, new_size, interpolation=_INTERPOLATION[self.interpolation])
        return resized, (new_size[0] / width, new_size[1] / height)

    def __call__(self, image: np.ndarray) -> Tuple[np.ndarray, dict]:
        """Turn one BGR uint8 image (H, W, 3) into the network input (1, 3, H', W') float32 and its meta
        (``ori_shape``, ``img_shape``, ``pad_shape`` as (h, w); ``scale_factor`` as (w_scale, h_scale))."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'expected an (H, W, 3) BGR image, got shape {image.shape}')
        resized, scale_factor = self.resize(image)
        if self.to_rgb:
            resized = resized[..., ::-1]
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        normalised = (resized.astype(np.float32) - mean) / std
        height, width = normalised.shape[:2]
        if self.pad_size is not None:
            pad_h, pad_w = self.pad_size[1], self.pad_size[0]
        elif self.size_divisor:
            pad_h = -(-height // self.size_divisor) * self.size_divisor
            pad_w = -(-width // self.size_divisor) * self.size_divisor
        else:
            pad_h, pad_w = height, width
        batch = np.full((1, 3, pad_h, pad_w), self.pad_value, dtype=np.float32)
        batch[0, :, :height, :width] = normalised.transpose(2, 0, 1)
        meta = dict(ori_shape=image.shape[:2], img_shape=(height, width), pad_shape=(pad_h, pad_w),
                    scale_factor=scale_factor)
        return batch, meta
