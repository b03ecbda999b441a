"""MATLAB-compatible bicubic `imresize`, and the SR degradation built on it.

Published super-resolution numbers are measured on LR images made by MATLAB's
`imresize(hr, 1/scale, 'bicubic')`: Keys' cubic kernel with a = -0.5, widened by 1/scale when
shrinking (antialiasing), and MATLAB's `contributions()` rules for kernel support and symmetric
boundary mirroring. A plain (non-antialiased) bicubic costs 0.4-0.9 dB, so this module reproduces
MATLAB's arithmetic exactly, in float64.

Each 1-D resize is a dense [out, in] weight matrix built once per (in, out, scale) and cached, so
resizing is two matrix products; resizing a 96x96 training crop costs a few microseconds of set-up.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

KERNEL_WIDTH = 4.0  # support of Keys' cubic kernel, in input pixels at scale 1


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's `cubic`)."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    inner = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1.0)
    outer = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1.0) & (absx <= 2.0))
    return inner + outer


@functools.lru_cache(maxsize=256)
def resize_matrix(in_length: int, out_length: int, scale: float) -> np.ndarray:
    """The [out_length, in_length] float64 matrix of one 1-D MATLAB bicubic resize.

    Follows MATLAB's `contributions()`: output pixel x (1-based) samples input coordinate
    u = x / scale + (1 - 1/scale) / 2 with ceil(width) + 2 taps starting at floor(u - width/2),
    weights normalised to sum to one, and out-of-range taps mirrored symmetrically
    (..., 2, 1 | 1, 2, ..., n | n, n-1, ...). Mirrored taps that land on the same input pixel
    add up. The result is cached and read-only.
    """
    if scale < 1.0:  # antialiasing: stretch the kernel to a low-pass filter for the new rate
        width = KERNEL_WIDTH / scale
        kernel = lambda d: scale * cubic(scale * d)
    else:
        width = KERNEL_WIDTH
        kernel = cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = math.ceil(width) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    weights = kernel(u[:, None] - indices)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])  # 0-based
    columns = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_length)[:, None], columns.shape)
    np.add.at(matrix, (rows, columns), weights)
    matrix.setflags(write=False)
    return matrix


def round_to_dtype(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Clip and round half away from zero into an integer dtype, as MATLAB's conversions do."""
    info = np.iinfo(dtype)
    rounded = np.clip(image, info.min, info.max)
    rounded += np.copysign(0.5, rounded) if info.min < 0 else 0.5
    return np.trunc(rounded, out=rounded).astype(dtype)


def im2uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8, clipped and rounded like MATLAB's `im2uint8`."""
    return round_to_dtype(np.asarray(image, dtype=np.float64) * 255.0, np.dtype(np.uint8))


def _pair(value: float | Sequence[float], name: str) -> tuple[float, float]:
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or not all(float(v) > 0 for v in pair):
        raise ValueError(f"imresize: {name} must be a positive number or pair, got {value}")
    return float(pair[0]), float(pair[1])


def imresize(
    image: np.ndarray,
    scale: float | Sequence[float] | None = None,
    output_shape: Sequence[int] | None = None,
) -> np.ndarray:
    """Bicubic resize of an (H, W) or (H, W, C) image, numerically the same as MATLAB's imresize.

    Give `scale` (a number or a (rows, cols) pair), `output_shape` (rows, cols), or both. With only
    `scale` the output is ceil(scale * size), as in MATLAB; with only `output_shape` the scale of
    each axis is out/in; with both, `scale` sets the kernel and `output_shape` the size, which
    avoids ceil() of a product such as 99 * (1/3) landing one pixel high.

    The axis with the smaller scale is resized first (rows first on ties), as MATLAB does. The
    arithmetic is float64. Float images come back in their own float dtype, unclipped. Integer
    images (uint8, uint16, ...) come back in their dtype, rounded and clipped after each 1-D pass,
    exactly as MATLAB's `imresizemex` stores its intermediate result in the input class.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"imresize: expected an (H, W) or (H, W, C) image, got {image.shape}")
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise TypeError(f"imresize: unsupported dtype {image.dtype}")
    if scale is None and output_shape is None:
        raise ValueError("imresize: give scale, output_shape or both")
    in_shape = image.shape[:2]
    if output_shape is None:
        scales = _pair(scale, "scale")
        out_shape = tuple(math.ceil(s * n) for s, n in zip(scales, in_shape, strict=True))
    else:
        out_shape = tuple(int(n) for n in output_shape)
        if len(out_shape) != 2 or min(out_shape) < 1:
            raise ValueError(f"imresize: output_shape must be 2 positive sizes, got {output_shape}")
        if scale is None:
            scales = tuple(o / n for o, n in zip(out_shape, in_shape, strict=True))
        else:
            scales = _pair(scale, "scale")

    is_integer = np.issubdtype(image.dtype, np.integer)
    result = image.astype(np.float64)
    for axis in (0, 1) if scales[0] <= scales[1] else (1, 0):
        matrix = resize_matrix(in_shape[axis], out_shape[axis], scales[axis])
        # einsum's own loops, not BLAS: a multi-threaded BLAS called from several input-pipeline
        # threads on these small products oversubscribes the cores (10-20x slower when loaded).
        moved = np.einsum("oi,i...->o...", matrix, np.moveaxis(result, axis, 0))
        result = np.moveaxis(moved, 0, axis)
        if is_integer:
            result = round_to_dtype(result, image.dtype).astype(np.float64)
    return result.astype(image.dtype)


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crops the bottom/right so height and width are multiples of `scale` (MATLAB `modcrop`)."""
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]


def degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """LR image of an HR one: MATLAB `imresize(hr, 1/scale, 'bicubic')` (antialiased).

    `hr` must already have height and width divisible by `scale` (see `modcrop`), so that LR and HR
    stay pixel-aligned. uint8 in gives uint8 out (as MATLAB, and as stored LR benchmark files);
    float in gives float out.
    """
    height, width = np.shape(hr)[:2]
    if height % scale or width % scale:
        raise ValueError(
            f"degrade: HR size {height}x{width} is not divisible by scale {scale}; modcrop it first"
        )
    return imresize(hr, scale=1.0 / scale, output_shape=(height // scale, width // scale))
