"""The texture measure of the model card: HF energy above the LR Nyquist limit, grid apart."""
from __future__ import annotations

import numpy as np
import pytest

from srgan_jax import imresize
from srgan_jax.evaluation import texture


def _smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    return 120 + 40 * np.sin(7 * x + 3 * y) + 20 * np.cos(5 * y) + rng.normal(0, 0.1, (h, w))


def test_grid_energy_is_the_added_periodic_pattern_exactly():
    base = _smooth_image(64, 48)
    base = texture.without_grid(base)  # no periodic part left
    assert texture.grid_energy(base) == pytest.approx(0.0, abs=1e-20)
    pattern = np.random.default_rng(1).normal(0, 3, (4, 4))
    pattern -= pattern.mean()
    gridded = base + np.tile(pattern, (16, 12))
    np.testing.assert_allclose(texture.periodic_component(gridded), pattern, atol=1e-10)
    assert texture.grid_energy(gridded) == pytest.approx(np.mean(pattern**2), rel=1e-10)
    np.testing.assert_allclose(texture.without_grid(gridded), base, atol=1e-10)


def test_high_frequency_energy_matches_a_direct_dft():
    y = _smooth_image(20, 24) + np.random.default_rng(2).normal(0, 5, (20, 24))
    h, w = y.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    centred = (y - y.mean()) * window
    # the DFT written out as two matrix products, in float64, with its frequencies by index
    dft = lambda n: np.exp(-2j * np.pi * np.outer(np.arange(n), np.arange(n)) / n)  # noqa: E731
    power = np.abs(dft(h) @ centred @ dft(w).T) ** 2 / np.sum(window**2)
    freq = lambda n: np.minimum(np.arange(n), n - np.arange(n)) / n  # noqa: E731
    high = (freq(h)[:, None] > 1 / 8) | (freq(w)[None, :] > 1 / 8)
    expected = power[high].sum() / (h * w)
    assert texture.high_frequency_energy(y, scale=4) == pytest.approx(expected, rel=1e-10)


def test_high_frequency_energy_counts_what_lies_above_the_lr_nyquist_limit():
    _, x = np.mgrid[0:96, 0:96]
    fine = 10 * np.cos(2 * np.pi * x / 3)  # 1/3 cycle per pixel: above x4's 1/8
    coarse = 10 * np.cos(2 * np.pi * x / 16)  # 1/16: below it
    assert texture.high_frequency_energy(fine, 4) == pytest.approx(50.0, rel=0.03)
    assert texture.high_frequency_energy(coarse, 4) < 0.01 * 50.0


def test_bicubic_has_less_texture_than_hr_and_a_grid_is_reported_apart():
    rng = np.random.default_rng(3)
    hr = np.clip(_smooth_image(96, 96)[..., None] + rng.normal(0, 20, (96, 96, 3)), 0, 255)
    hr = hr.astype(np.uint8)
    same = texture.texture_energy(hr, hr, scale=4)
    assert same.high_frequency == pytest.approx(1.0)
    bicubic = imresize.imresize(imresize.imresize(hr, 1 / 4), 4.0)
    smooth = texture.texture_energy(np.clip(np.round(bicubic), 0, 255).astype(np.uint8), hr, 4)
    assert smooth.high_frequency < 0.3
    pattern = np.tile(np.array([[12.0, -12.0, 0.0, 0.0]] * 2 + [[0.0, 0.0, -12.0, 12.0]] * 2),
                      (24, 24))[..., None]
    gridded = np.clip(np.round(bicubic + pattern), 0, 255).astype(np.uint8)
    with_grid = texture.texture_energy(gridded, hr, 4)
    assert with_grid.grid > 10 * smooth.grid
    # the grid's energy is counted as grid, not as texture
    assert with_grid.high_frequency == pytest.approx(smooth.high_frequency, rel=0.1, abs=0.02)
    with pytest.raises(ValueError, match="shapes differ"):
        texture.texture_energy(hr[:-1], hr, 4)


def test_a_flat_hr_image_is_a_clear_error():
    flat = np.full((16, 16, 3), 7, np.uint8)
    with pytest.raises(ValueError, match="no detail above the LR Nyquist limit"):
        texture.texture_energy(flat, flat, 4)
