"""NIQE against the MATLAB release's value and an independent per-block float64 computation."""
import hashlib

import niqe_reference
import numpy as np
import pytest
from PIL import Image

from srgan_jax.evaluation import niqe

# MATLAB's NIQE of BasicSR's test_scripts/data/baboon.png (Set14's baboon cropped to 492 columns,
# which the 96x96 blocks crop further to 480x480), as BasicSR's calculate_niqe documents it.
MATLAB_BABOON = 5.72957338


def reference(plane: np.ndarray) -> float:
    model = niqe.pristine_model()
    return niqe_reference.niqe(plane, model.mean, model.covariance, model.window)


def textured(shape, seed):
    """A photo-like plane: smooth shading, edges and noise, integer 0..255."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    plane = 128 + 60 * np.sin(x / 17.0) * np.cos(y / 23.0) + 40 * (x > shape[1] // 3)
    plane += rng.normal(0, 8, shape)
    return np.clip(np.round(plane), 0, 255)


def test_baboon_matches_matlab(shared_data):
    baboon = np.asarray(Image.open(shared_data / "benchmarks" / "Set14" / "baboon.png"))
    assert niqe.niqe(baboon[:, :492]) == pytest.approx(MATLAB_BABOON, abs=1e-3)
    assert niqe.niqe(baboon) == niqe.niqe(baboon[:, :492])  # the same 480x480 blocks


def test_pristine_model_is_the_release():
    digest = hashlib.sha256(niqe.MODEL_FILE.read_bytes()).hexdigest()
    assert digest == "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"  # BasicSR's
    model = niqe.pristine_model()
    assert model.mean.shape == (36,) and model.covariance.shape == (36, 36)
    np.testing.assert_allclose(model.covariance, model.covariance.T)
    # MATLAB fspecial('gaussian', 7, 7/6), normalised
    x = np.arange(7) - 3.0
    g = np.exp(-(x[:, None] ** 2 + x[None] ** 2) / (2 * (7 / 6) ** 2))
    np.testing.assert_allclose(model.window, g / g.sum(), rtol=1e-12)


@pytest.mark.parametrize("shape, seed", [((96, 96), 0), ((200, 300), 1), ((290, 197), 2)])
def test_synthetic_images_match_the_reference(shape, seed):
    plane = textured(shape, seed)
    assert niqe.distance(niqe.niqe_features(plane)) == pytest.approx(reference(plane), rel=1e-9)


def test_flat_blocks_are_left_out_of_the_covariance_as_the_release_does():
    plane = textured((192, 288), 3)
    plane[:96, :96] = 77.0  # a constant block: its fits are undefined (NaN scales)
    plane[96:, 192:] = 200.0 + (np.arange(96)[None, :] % 2)  # a nearly constant one
    plane[96:, :96] = 50.0 + np.arange(96)[None, :]  # a ramp: each pixel is its window's mean
    features = niqe.niqe_features(plane)
    assert np.isnan(features[0]).any() and not np.isnan(np.delete(features, 0, 0)).any()
    value = niqe.distance(features)
    assert np.isfinite(value)
    assert value == pytest.approx(reference(plane), rel=1e-9)


def test_a_pixel_equal_to_its_weighted_mean_is_exactly_zero_not_rounding_noise():
    window = niqe.pristine_model().window
    ramp = np.tile(np.arange(20.0, 60.0), (40, 1)) * 0.37
    coefficients = niqe.mscn(ramp, window)[4:-4, 4:-4]  # inside, away from replicated borders
    assert (coefficients == 0.0).all()
    noisy = ramp + np.random.default_rng(0).normal(0, 1e-3, ramp.shape)
    assert (niqe.mscn(noisy, window) != 0.0).all()


def test_benchmark_images_match_the_reference(shared_data):
    for name in ("Set5/bird.png", "Set14/bridge.png", "BSD100/8023.png"):
        image = np.asarray(Image.open(shared_data / "benchmarks" / name))
        plane = niqe.luminance(image)
        assert niqe.niqe(image) == pytest.approx(reference(plane), rel=1e-9), name


def test_closest_candidate_is_the_first_minimum_of_all_candidates():
    rho = niqe_reference.RHO
    rng = np.random.default_rng(0)
    targets = np.concatenate([rng.uniform(rho[0] - 0.05, rho[-1] + 0.05, 2000),
                              rho[[0, 1, 500, 9800]], (rho[10:12].mean(),), (np.nan,)])
    found = niqe._closest_candidate(targets)
    for target, index in zip(targets, found, strict=True):
        squared = (rho - target) ** 2
        expected = 0 if np.isnan(target) else int(np.argmin(squared))
        assert index == expected, target


def test_luminance_is_matlab_rounded_bt601_y():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 30]]], np.uint8)
    y = 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255
    np.testing.assert_array_equal(niqe.luminance(rgb), np.floor(y + 0.5))
    gray = np.full((4, 4), 100, np.uint8)
    np.testing.assert_array_equal(niqe.luminance(gray), 100.0)


def test_lower_for_a_sharp_image_than_for_its_blurred_copy(shared_data):
    image = np.asarray(Image.open(shared_data / "benchmarks" / "Set14" / "baboon.png"))
    blurred = np.asarray(Image.fromarray(image).resize((125, 120), Image.BICUBIC)
                         .resize((500, 480), Image.BICUBIC))
    assert niqe.niqe(blurred) > niqe.niqe(image) + 1.0


@pytest.mark.parametrize("shape", [(95, 300), (300, 95), (1, 1)])
def test_smaller_than_one_block_is_an_error(shape):
    with pytest.raises(ValueError, match="at least 96x96"):
        niqe.niqe(np.zeros(shape, np.uint8))


def test_border_is_cropped_before_the_blocks():
    plane = textured((104, 104), 4).astype(np.uint8)
    assert niqe.niqe(plane, border=4) == niqe.distance(niqe.niqe_features(plane[4:-4, 4:-4]))
    with pytest.raises(ValueError, match="at least 96x96"):
        niqe.niqe(plane, border=5)


def test_flat_image_is_an_error_not_a_nan():
    with pytest.raises(ValueError, match="no 96x96 block has any contrast"):
        niqe.niqe(np.full((200, 200, 3), 128, np.uint8))
