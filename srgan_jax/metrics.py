"""PSNR and SSIM as super-resolution papers measure them, in numpy (float64) and in JAX.

Conventions (those of the MATLAB scripts behind the published tables):
- Images are uint8 or uint16 (taken by their range, 0..255 or 0..65535) or floats in [0, 1],
  shaped (H, W, 3) for RGB or (H, W) / (H, W, 1) for grayscale (the JAX versions take a batch:
  [N, H, W, 3] or [N, H, W, 1]). Other sample types, and floats outside [0, 1] (often 0..255
  values in a float array, which would silently give PSNRs ~48 dB too low), are rejected.
- With `y_channel=True`, RGB images are compared on the ITU-R BT.601 luma of MATLAB's
  `rgb2ycbcr`, Y = 16 + 65.481 R + 128.553 G + 24.966 B (0..255 scale); grayscale images on their
  gray value x 255. With `y_channel=False`, on all channels x 255.
- `border` pixels are cropped at each side first (papers use border = scale).
- SSIM is Wang et al.'s `ssim_index.m`: 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
  L = 255, statistics over the 'valid' region only, mean of the SSIM map; over RGB channels,
  the mean of the per-channel SSIMs.

The metrics do not quantize; the published pipeline stores SR images as uint8 first, which
`srgan_jax.evaluation.protocol` does before measuring (see `srgan_jax.imresize.im2uint8`).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

PEAK = 255.0
Y_WEIGHTS = (65.481, 128.553, 24.966)  # BT.601 studio-swing luma for RGB in [0, 1]
Y_OFFSET = 16.0
# The same weights normalised to sum to one (0.299, 0.587, 0.114): gray value of an RGB image.
LUMA_WEIGHTS = np.asarray(Y_WEIGHTS) / sum(Y_WEIGHTS)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * PEAK) ** 2
SSIM_C2 = (0.03 * PEAK) ** 2
INTEGER_PEAKS = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def unit_float(image: np.ndarray) -> np.ndarray:
    """`image` as float64 in [0, 1]: uint8/uint16 divided by their peak, floats checked.

    Raises `TypeError` for other sample types and `ValueError` for floats that are not finite or
    lie outside [0, 1] (clip model outputs first; pass 8/16-bit images as they are).
    """
    image = np.asarray(image)
    if image.dtype in INTEGER_PEAKS:
        return image.astype(np.float64) / INTEGER_PEAKS[image.dtype]
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"images must be uint8, uint16 or float in [0, 1], got {image.dtype}")
    image = image.astype(np.float64)
    if not np.isfinite(image).all():
        raise ValueError("image has NaN or infinite values")
    if image.size and (image.min() < 0.0 or image.max() > 1.0):
        raise ValueError(
            f"float images must be in [0, 1], got values in [{image.min():g}, {image.max():g}]; "
            "clip them, or pass 8/16-bit images as uint8/uint16 arrays"
        )
    return image


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma on the 0..255 scale (16..235) of RGB (see `unit_float`) with channels last."""
    return Y_OFFSET + unit_float(rgb) @ np.asarray(Y_WEIGHTS, dtype=np.float64)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's fspecial('gaussian', size, sigma)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _measured_planes(image: np.ndarray, border: int, y_channel: bool) -> np.ndarray:
    """[C, H', W'] float64 planes on the 0..255 scale that the metrics compare."""
    image = unit_float(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        planes = image[None] * PEAK
    elif image.ndim == 3 and image.shape[-1] == 3:
        planes = rgb_to_y(image)[None] if y_channel else np.moveaxis(image, -1, 0) * PEAK
    else:
        raise ValueError(f"expected an (H, W), (H, W, 1) or (H, W, 3) image, got {image.shape}")
    if border:
        planes = planes[:, border:-border, border:-border]
    if min(planes.shape[1:]) < 1:
        raise ValueError(f"border {border} leaves nothing of an image shaped {image.shape}")
    return planes


def y_plane(image: np.ndarray, border: int = 0) -> np.ndarray:
    """The float64 plane (0..255) the metrics measure: BT.601 Y of RGB, or the gray values,
    `border` pixels cropped at each side."""
    return _measured_planes(image, border, y_channel=True)[0]


def _check_shapes(sr: np.ndarray, hr: np.ndarray) -> None:
    if np.shape(sr) != np.shape(hr):
        raise ValueError(f"SR and HR shapes differ: {np.shape(sr)} vs {np.shape(hr)}")


def psnr(sr: np.ndarray, hr: np.ndarray, border: int = 0, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB (peak 255); inf for identical images."""
    _check_shapes(sr, hr)
    diff = _measured_planes(sr, border, y_channel) - _measured_planes(hr, border, y_channel)
    mse = float(np.mean(diff * diff))
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(PEAK * PEAK / mse))


def _filter_valid(plane: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of the last two axes with outer(window, window)."""
    size = window.size
    rows = np.lib.stride_tricks.sliding_window_view(plane, size, axis=-2) @ window
    return np.lib.stride_tricks.sliding_window_view(rows, size, axis=-1) @ window


def ssim(sr: np.ndarray, hr: np.ndarray, border: int = 0, y_channel: bool = True) -> float:
    """Structural similarity, MATLAB `ssim_index` style; mean over channels when comparing RGB."""
    _check_shapes(sr, hr)
    x = _measured_planes(sr, border, y_channel)
    y = _measured_planes(hr, border, y_channel)
    if min(x.shape[1:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after the border")
    window = gaussian_window()
    mu_x, mu_y = _filter_valid(x, window), _filter_valid(y, window)
    var_x = _filter_valid(x * x, window) - mu_x * mu_x
    var_y = _filter_valid(y * y, window) - mu_y * mu_y
    cov = _filter_valid(x * y, window) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)
    )
    return float(np.mean(ssim_map.mean(axis=(-2, -1))))


# ----------------------------------------------------------------------------------------------
# JAX PSNR for training batches: [N, H, W, C], jit-able (border and y_channel are static),
# float32-safe. (A JAX SSIM was used only by tests; the protocol's SSIM is `ssim` above.)
# Sample types are checked as in `unit_float`; float values cannot be checked under jit.


def _unit_float_jax(images: jax.Array) -> jax.Array:
    """uint8/uint16 batches divided by their peak, float batches as float32 (taken as [0, 1])."""
    dtype = np.dtype(images.dtype)
    if dtype in INTEGER_PEAKS:
        return images.astype(jnp.float32) / jnp.float32(INTEGER_PEAKS[dtype])
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"images must be uint8, uint16 or float in [0, 1], got {dtype}")
    return images.astype(jnp.float32)


def _measured_planes_jax(images: jax.Array, border: int, y_channel: bool) -> jax.Array:
    """[N, C, H', W'] float32 planes on the 0..255 scale, without Y's +16.

    Without the offset the map is linear, so it maps a difference of images to the difference
    of their planes, which PSNR uses to avoid float32 cancellation.
    """
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected images shaped [N, H, W, 1 or 3], got {images.shape}")
    if images.shape[-1] == 3 and y_channel:
        weights = jnp.asarray(Y_WEIGHTS, jnp.float32)
        # Elementwise products, not a matmul, so TPU/GPU matmul precision cannot round them.
        planes = (images * weights).sum(axis=-1)[:, None]
    else:
        planes = jnp.moveaxis(images, -1, 1) * PEAK
    if border:
        planes = planes[..., border:-border, border:-border]
    if min(planes.shape[-2:]) < 1:
        raise ValueError(f"border {border} leaves nothing of images shaped {images.shape}")
    return planes


def _check_batches(sr: jax.Array, hr: jax.Array) -> None:
    if sr.shape != hr.shape:
        raise ValueError(f"SR and HR shapes differ: {sr.shape} vs {hr.shape}")


@functools.partial(jax.jit, static_argnames=("border", "y_channel"))
def psnr_jax(sr: jax.Array, hr: jax.Array, border: int = 0, y_channel: bool = True) -> jax.Array:
    """Per-image PSNR in dB, [N] float32; inf where an SR image equals its HR image.

    Training-batch metric (float SR, unquantised); published numbers come from
    `srgan_jax.evaluation.protocol`.
    """
    _check_batches(sr, hr)
    diff = _measured_planes_jax(_unit_float_jax(sr) - _unit_float_jax(hr), border, y_channel)
    mse = jnp.mean(diff * diff, axis=(1, 2, 3))
    return 10.0 * jnp.log10(PEAK * PEAK / mse)
