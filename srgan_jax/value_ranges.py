"""The value ranges images take on their way through the models, and the conversions between them.

The generator reads LR images in [0, 1] and writes SR images in [-1, 1]; HR targets, the
discriminator's inputs and the VGG loss's inputs are in [-1, 1] too (the paper's ranges). Files hold
uint8 (or uint16) samples, and measurements are made on [0, 1] or uint8 images. Every conversion
between these is written here once; the functions take numpy or JAX arrays alike.
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np

LR_RANGE = (0.0, 1.0)  # generator input
SR_RANGE = (-1.0, 1.0)  # generator output, HR targets, discriminator and VGG inputs
UINT8_PEAK = 255.0

Array = TypeVar("Array")

# Every uint8 value's float32 in each range, computed once in numpy: looking values up (rather
# than dividing) gives bit-identical floats on the host and inside compiled JAX code, where XLA
# may turn a division by a constant into a multiplication by its rounded reciprocal.
_LR_OF_UINT8 = np.arange(256, dtype=np.float32) / np.float32(UINT8_PEAK)
_HR_OF_UINT8 = np.arange(256, dtype=np.float32) / np.float32(UINT8_PEAK / 2) - np.float32(1.0)


def _lookup(table: np.ndarray, pixels: Array) -> Array:
    if isinstance(pixels, np.ndarray):
        return table[pixels]
    import jax.numpy as jnp  # only for JAX arrays: this module stays importable without JAX

    return jnp.asarray(table)[pixels]


def lr_from_uint8(pixels: Array) -> Array:
    """uint8 samples -> float32 LR in [0, 1] (k / 255)."""
    return _lookup(_LR_OF_UINT8, pixels)


def hr_from_uint8(pixels: Array) -> Array:
    """uint8 samples -> float32 HR in [-1, 1] (k / 127.5 - 1)."""
    return _lookup(_HR_OF_UINT8, pixels)


def unit_from_sr(images: Array) -> Array:
    """SR/HR in [-1, 1] -> [0, 1], clipped (generator outputs are not bounded)."""
    return ((images + 1.0) * 0.5).clip(0.0, 1.0)
