"""PSNR/SSIM: known values, an independent loop-based SSIM, and JAX (float32) against numpy."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax.metrics import psnr, psnr_jax, rgb_to_y, ssim


def reference_ssim_plane(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al.'s ssim_index.m written out with explicit windows, float64, 0..255 planes."""
    offsets = np.arange(11) - 5.0
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (window * px).sum(), (window * py).sum()
            vx = (window * (px - mx) ** 2).sum()
            vy = (window * (py - my) ** 2).sum()
            cov = (window * (px - mx) * (py - my)).sum()
            values.append(
                (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
            )
    return float(np.mean(values))


def luma(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return 16 + 65.481 * r + 128.553 * g + 24.966 * b


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    hr = rng.random((19, 23, 3))
    sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1)
    return sr, hr


def test_rgb_to_y_bt601_studio_range():
    rgb = np.array([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    np.testing.assert_allclose(rgb_to_y(rgb), [16, 235, 81.481, 144.553, 40.966], atol=1e-12)


def test_psnr_known_values():
    hr = np.zeros((8, 8))
    assert psnr(np.full((8, 8), 1 / 255), hr) == pytest.approx(20 * math.log10(255))
    # A uniform RGB offset of one level changes Y by 219/255 of a level.
    rgb = np.zeros((8, 8, 3))
    expected = 10 * math.log10(255**2 / (219 / 255) ** 2)
    assert psnr(rgb + 1 / 255, rgb) == pytest.approx(expected)
    # RGB variant: mean over all channels, here one of three channels is off by 3 levels.
    sr = rgb.copy()
    sr[..., 1] = 3 / 255
    assert psnr(sr, rgb, y_channel=False) == pytest.approx(10 * math.log10(255**2 / 3))


def test_psnr_matches_direct_formula_with_border(pair):
    sr, hr = pair
    diff = luma(sr)[3:-3, 3:-3] - luma(hr)[3:-3, 3:-3]
    assert psnr(sr, hr, border=3) == pytest.approx(10 * math.log10(255**2 / np.mean(diff**2)))


def test_identical_images_are_infinite_psnr_and_unit_ssim(pair):
    _, hr = pair
    assert psnr(hr, hr) == math.inf
    assert ssim(hr, hr) == pytest.approx(1.0)
    batch = jnp.asarray(hr[None], jnp.float32)
    assert np.isposinf(np.asarray(psnr_jax(batch, batch))).all()


def test_border_crops_each_side():
    hr = np.zeros((20, 20))
    sr = hr.copy()
    sr[:2], sr[-2:], sr[:, :2], sr[:, -2:] = 1, 1, 1, 1
    assert psnr(sr, hr, border=2) == math.inf
    assert psnr(sr, hr, border=1) < 10


def test_gray_images_compared_on_gray_values():
    rng = np.random.default_rng(1)
    hr = rng.random((16, 17))
    sr = np.clip(hr + 0.02, 0, 1)
    diff = (sr - hr) * 255
    assert psnr(sr, hr) == pytest.approx(10 * math.log10(255**2 / np.mean(diff**2)))
    assert psnr(sr[..., None], hr[..., None]) == psnr(sr, hr)
    assert ssim(sr, hr) == pytest.approx(reference_ssim_plane(sr * 255, hr * 255), abs=1e-12)


def test_ssim_of_constant_images_closed_form():
    a, b = 0.2, 0.6
    x, y = np.full((12, 12), a), np.full((12, 12), b)
    c1 = (0.01 * 255) ** 2
    mx, my = a * 255, b * 255
    assert ssim(x, y) == pytest.approx((2 * mx * my + c1) / (mx**2 + my**2 + c1), rel=1e-12)


def test_ssim_matches_window_loops(pair):
    sr, hr = pair
    expected_y = reference_ssim_plane(luma(sr)[2:-2, 2:-2], luma(hr)[2:-2, 2:-2])
    assert ssim(sr, hr, border=2) == pytest.approx(expected_y, abs=1e-12)
    per_channel = [reference_ssim_plane(sr[..., c] * 255, hr[..., c] * 255) for c in range(3)]
    expected_rgb = np.mean(per_channel)
    assert ssim(sr, hr, y_channel=False) == pytest.approx(expected_rgb, abs=1e-12)


def test_shape_and_size_errors(pair):
    sr, hr = pair
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(sr[:-1], hr)
    with pytest.raises(ValueError, match="11x11"):
        ssim(sr, hr, border=5)
    with pytest.raises(ValueError, match="border 12"):
        psnr(sr, hr, border=12)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        psnr(np.zeros((4, 4, 2)), np.zeros((4, 4, 2)))


def smooth_batch(n: int, height: int, width: int, channels: int, noise: float, seed: int):
    """Natural-ish images (smooth gradients plus texture) and a close reconstruction."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    base = 0.5 + 0.4 * np.sin(3 * xx + 2 * yy)[None, ..., None] * rng.random((n, 1, 1, channels))
    hr = np.clip(base + 0.05 * rng.random((n, height, width, channels)), 0, 1)
    sr = np.clip(hr + rng.normal(0, noise, hr.shape), 0, 1)
    # The JAX functions get float32 inputs; compare both on the same (float32-rounded) values.
    return sr.astype(np.float32), hr.astype(np.float32)


@pytest.mark.parametrize(
    ("channels", "y_channel", "border", "noise"),
    [(3, True, 4, 0.03), (3, True, 0, 0.002), (3, False, 2, 0.03), (1, True, 3, 0.01)],
)
def test_jax_psnr_matches_float64_numpy(channels, y_channel, border, noise):
    sr, hr = smooth_batch(3, 40, 33, channels, noise, seed=channels + border)
    got_psnr = np.asarray(psnr_jax(jnp.asarray(sr), jnp.asarray(hr), border, y_channel))
    assert got_psnr.shape == (3,)
    want_psnr = [psnr(s, h, border, y_channel) for s, h in zip(sr, hr, strict=True)]
    np.testing.assert_allclose(got_psnr, want_psnr, atol=5e-5)


def test_jax_errors_name_the_problem():
    images = jnp.zeros((2, 8, 8, 3))
    with pytest.raises(ValueError, match="shapes differ"):
        psnr_jax(images, images[:1])
    with pytest.raises(ValueError, match=r"\[N, H, W, 1 or 3\]"):
        psnr_jax(images[0], images[0])
    with pytest.raises(ValueError, match="border 4 leaves nothing"):
        psnr_jax(images, images, border=4)


def test_uint8_and_uint16_images_are_taken_by_their_range(pair):
    sr, hr = pair
    sr8, hr8 = (np.floor(x * 255 + 0.5).astype(np.uint8) for x in (sr, hr))
    sr16, hr16 = (x.astype(np.uint16) * 257 for x in (sr8, hr8))
    want_psnr = psnr(sr8 / 255.0, hr8 / 255.0, border=2)
    want_ssim = ssim(sr8 / 255.0, hr8 / 255.0, border=2)
    assert 20 < want_psnr < 40  # a good reconstruction (it used to read -21.9 dB as uint8)
    for a, b in [(sr8, hr8), (sr16, hr16), (sr8, hr16), (sr8, hr8 / 255.0)]:
        assert psnr(a, b, border=2) == pytest.approx(want_psnr, abs=1e-9)
        assert ssim(a, b, border=2) == pytest.approx(want_ssim, abs=1e-12)
    np.testing.assert_allclose(rgb_to_y(hr8), luma(hr8 / 255.0), atol=1e-12)
    batch = [jnp.asarray(x[None]) for x in (sr8, hr8)]
    np.testing.assert_allclose(psnr_jax(*batch, border=2), [want_psnr], atol=1e-4)


@pytest.mark.parametrize(("values", "error", "message"), [
    (np.full((12, 12), 3, np.int32), TypeError, "uint8, uint16 or float in \\[0, 1\\], got int32"),
    (np.full((12, 12), True), TypeError, "got bool"),
    (np.full((12, 12), 200.0), ValueError, "must be in \\[0, 1\\], got values in \\[200, 200\\]"),
    (np.full((12, 12), -0.5), ValueError, "must be in \\[0, 1\\]"),
    (np.full((12, 12), np.nan), ValueError, "NaN or infinite"),
])
def test_other_sample_types_and_out_of_range_floats_are_rejected(values, error, message):
    good = np.full((12, 12), 0.5)
    for function in (psnr, ssim):
        with pytest.raises(error, match=message):
            function(values, good)
        with pytest.raises(error, match=message):
            function(good, values)


def test_jax_psnr_rejects_other_integer_types():
    images = jnp.zeros((1, 12, 12, 3), jnp.int32)
    with pytest.raises(TypeError, match="got int32"):
        psnr_jax(images, images)
