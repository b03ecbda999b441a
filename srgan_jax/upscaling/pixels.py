"""Real images through the float RGB core: pixel types, channel layouts, alpha and output scale.

`upscale_pixels` is the one path from stored pixels to upscaled pixels, shared by
`srgan_jax.upscale` and `srgan-jax upscale`: uint8, uint16 or float [0, 1] samples; gray, gray +
alpha, RGB or RGBA; any output scale. The model only ever sees RGB in [0, 1]: gray goes through it
replicated to RGB and comes back as BT.601 luma, and alpha goes around it (MATLAB bicubic) or
through it as a gray image.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from srgan_jax import metrics
from srgan_jax.imresize import imresize

ALPHA_MODES = ("bicubic", "model")
GRAY_WEIGHTS = metrics.LUMA_WEIGHTS.astype(np.float32)  # BT.601 luma, as PIL's "L"
SIZE_EPSILON = 1e-9  # so that a product such as 10 * 0.7 = 7.000000000000001 is not one pixel off


class PixelType:
    """How one pixel dtype maps to float [0, 1]: uint8 and uint16 by their peak, floats as is."""

    def __init__(self, dtype: np.dtype):
        dtype = np.dtype(dtype)
        if dtype in (np.uint8, np.uint16):
            self.peak = float(np.iinfo(dtype).max)
        elif np.issubdtype(dtype, np.floating):
            self.peak = None
        else:
            raise TypeError(
                f"upscale: unsupported pixel dtype {dtype}; use uint8, uint16 or float in [0, 1]"
            )
        self.dtype = dtype

    def to_unit(self, pixels: np.ndarray) -> np.ndarray:
        """float32 values in [0, 1] of `pixels` (float pixels must already be in [0, 1])."""
        if self.peak is not None:
            return pixels.astype(np.float32) / np.float32(self.peak)
        values = pixels.astype(np.float32)
        if not np.isfinite(values).all():
            raise ValueError("upscale: float image contains NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"upscale: float images must be in [0, 1], got values in [{low:g}, {high:g}]"
            )
        return values

    def from_unit(self, values: np.ndarray) -> np.ndarray:
        """Pixels of float `values`, clipped to [0, 1] in place (images can be gigabytes)."""
        np.clip(values, 0.0, 1.0, out=values)
        if self.peak is None:
            return values.astype(self.dtype, copy=False)
        values *= self.peak
        return np.rint(values, out=values).astype(self.dtype)


def output_size(height: int, width: int, outscale: float) -> tuple[int, int]:
    """The (height, width) of a `height` x `width` image upscaled `outscale` times (rounded down,
    as Real-ESRGAN's --outscale; at least one pixel)."""
    if not (isinstance(outscale, int | float) and math.isfinite(outscale) and outscale > 0):
        raise ValueError(f"outscale must be a positive number, got {outscale!r}")
    return (max(1, math.floor(height * outscale + SIZE_EPSILON)),
            max(1, math.floor(width * outscale + SIZE_EPSILON)))


def resize_planes(images: np.ndarray, size: tuple[int, int], scale: float) -> np.ndarray:
    """(N, H, W, C) float images resized to `size` by MATLAB's bicubic `imresize` (antialiased
    when shrinking), plane by plane to bound the float64 working memory; clipped to [0, 1]."""
    out = np.empty((len(images), *size, images.shape[-1]), np.float32)
    for i, image in enumerate(images):
        for c in range(images.shape[-1]):
            out[i, ..., c] = imresize(image[..., c], scale=scale, output_shape=size)
    return np.clip(out, 0.0, 1.0, out=out)


def upscale_pixels(
    upscaler: Callable[..., np.ndarray],
    images: np.ndarray,
    *,
    alpha: str = "bicubic",
    outscale: float | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Upscales same-size images: (N, H, W) or (N, H, W, C) pixels -> the same type and layout.

    Args:
      upscaler: an `Upscaler` (float RGB [0, 1] core with a `scale`).
      images: uint8, uint16 or float [0, 1] pixels; C is 1 (gray), 2 (gray + alpha), 3 (RGB) or
        4 (RGBA).
      alpha: 'bicubic' (MATLAB bicubic, around the model) or 'model' (the alpha plane through
        the model as a gray image, in the same batch as the colour planes).
      outscale: output size relative to the input (default: the model's scale); the model's
        output is resized to `output_size` with MATLAB's bicubic.
      tile, tile_overlap, progress: passed to the upscaler (see `Upscaler.__call__`).

    Returns:
      (N, H', W') or (N, H', W', C) pixels of `images`' dtype.
    """
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {ALPHA_MODES}, got {alpha!r}")
    pixel_type = PixelType(images.dtype)
    plain_gray = images.ndim == 3
    values = pixel_type.to_unit(images[..., None] if plain_gray else images)
    n, height, width, channels = values.shape
    has_alpha = channels in (2, 4)
    color = values[..., : channels - has_alpha]
    gray = color.shape[-1] == 1
    planes = np.repeat(color, 3, axis=-1) if gray else color
    if has_alpha and alpha == "model":
        planes = np.concatenate([planes, np.repeat(values[..., -1:], 3, axis=-1)])
    sr = upscaler(planes, tile=tile, tile_overlap=tile_overlap, progress=progress)
    scale = upscaler.scale
    sr_color = sr[:n] @ GRAY_WEIGHTS[:, None] if gray else sr[:n]
    if has_alpha:
        if alpha == "model":
            sr_alpha = sr[n:] @ GRAY_WEIGHTS[:, None]
        else:
            sr_alpha = resize_planes(values[..., -1:], (height * scale, width * scale), scale)
        sr_color = np.concatenate([sr_color, sr_alpha], axis=-1)
    if outscale is not None:
        size = output_size(height, width, outscale)
        if size != sr_color.shape[1:3]:
            sr_color = resize_planes(sr_color, size, outscale / scale)
    result = pixel_type.from_unit(sr_color)
    return result[..., 0] if plain_gray else result

