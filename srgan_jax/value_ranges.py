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


def lr_from_uint8(pixels: Array) -> Array:
    """uint8 samples -> float32 LR in [0, 1]."""
    return pixels.astype(np.float32) / np.float32(UINT8_PEAK)


def hr_from_uint8(pixels: Array) -> Array:
    """uint8 samples -> float32 HR in [-1, 1] (exact: k / 127.5 - 1)."""
    return pixels.astype(np.float32) / np.float32(UINT8_PEAK / 2) - np.float32(1.0)


def unit_from_sr(images: Array) -> Array:
    """SR/HR in [-1, 1] -> [0, 1], clipped (generator outputs are not bounded)."""
    return ((images + 1.0) * 0.5).clip(0.0, 1.0)
