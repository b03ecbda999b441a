"""How much fine detail an upscaler adds, with a fixed sub-pixel grid counted apart from texture.

PSNR rewards smooth outputs; SRGAN's point is texture. NIQE (`niqe`) says how natural an output
looks without a reference; this module says, against the HR image, how much detail an output has
and how much of it is a fixed grid: energy on the Y channel (BT.601, 0..255) with the protocol's
border cropped:

- `high_frequency_energy`: mean power per pixel above the LR image's Nyquist frequency (a
  spatial frequency above 1/(2*scale) cycles per pixel along x or y), i.e. detail the LR input
  cannot carry and the upscaler had to make. A Hann window keeps the image's edges out of it.
- `grid_energy`: the power of the image's exactly `period`-periodic component (the mean over all
  pixels with the same (y mod period, x mod period), minus the image mean). A sub-pixel
  convolution's checkerboard is such a component (x4 = two x2 shuffles: period 4); natural
  images have almost none. It is removed before the high-frequency energy is measured, so a
  grid cannot pass for texture.

`texture_energy` reports an output's high-frequency energy relative to its HR image's, and its
grid power in grey levels squared (compare it with the HR image's own, which JPEG blocking and
fabric patterns can make non-zero). The grid measure sees a checkerboard that keeps its sign
over the image; it is a lower bound where the pattern's phase varies with the content.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from srgan_jax import metrics

GRID_PERIOD = 4


def periodic_component(y: np.ndarray, period: int = GRID_PERIOD) -> np.ndarray:
    """The [period, period] pattern whose tiling is `y`'s exactly periodic part (zero mean).

    `y` is trimmed at its bottom and right to a multiple of `period`.
    """
    h, w = (s - s % period for s in y.shape)
    if h == 0 or w == 0:
        raise ValueError(f"a {y.shape} image is smaller than one {period}x{period} period")
    pattern = y[:h, :w].reshape(h // period, period, w // period, period).mean(axis=(0, 2))
    return pattern - pattern.mean()


def grid_energy(y: np.ndarray, period: int = GRID_PERIOD) -> float:
    """Mean power per pixel of `y`'s exactly `period`-periodic component."""
    return float(np.mean(periodic_component(y, period) ** 2))


def high_frequency_energy(y: np.ndarray, scale: int) -> float:
    """Mean power per pixel of `y` (Hann-windowed) above the x`scale` LR image's Nyquist limit."""
    h, w = y.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    spectrum = np.fft.fft2((y - y.mean()) * window)
    power = np.abs(spectrum) ** 2 / np.sum(window**2)
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    cutoff = 0.5 / scale
    high = (np.abs(fy) > cutoff) | (np.abs(fx) > cutoff)
    return float(power[high].sum() / (h * w))


def without_grid(y: np.ndarray, period: int = GRID_PERIOD) -> np.ndarray:
    """`y` (trimmed to a multiple of `period`) minus its exactly periodic component."""
    pattern = periodic_component(y, period)
    h, w = (s - s % period for s in y.shape)
    return y[:h, :w] - np.tile(pattern, (h // period, w // period))


@dataclasses.dataclass(frozen=True)
class TextureEnergy:
    """An output's texture (relative to its HR image's: HR = 1.0) and its grid power."""

    high_frequency: float  # above the LR Nyquist limit, the periodic grid removed first; / HR's
    grid: float  # power of the exactly 4-pixel-periodic component, grey levels^2 (0..255 Y)


def texture_energy(sr: np.ndarray, hr: np.ndarray, scale: int, border: int | None = None
                   ) -> TextureEnergy:
    """`sr`'s texture energy relative to `hr`'s, and its grid power (Y channel)."""
    if np.shape(sr) != np.shape(hr):
        raise ValueError(f"SR and HR shapes differ: {np.shape(sr)} vs {np.shape(hr)}")
    border = scale if border is None else border
    y_sr, y_hr = metrics.y_plane(sr, border), metrics.y_plane(hr, border)
    reference = high_frequency_energy(without_grid(y_hr), scale)
    if reference < 1e-9:  # (0..255)^2 units: float rounding of a flat image
        raise ValueError("the HR image has no detail above the LR Nyquist limit to compare with")
    return TextureEnergy(
        high_frequency=high_frequency_energy(without_grid(y_sr), scale) / reference,
        grid=grid_energy(y_sr),
    )
