"""The published protocol, image by image: crop, MATLAB degradation, uint8 SR, Y-channel scores."""
import math

import numpy as np
import pytest

from srgan_jax.evaluation import protocol
from srgan_jax.imresize import degrade, imresize
from srgan_jax.metrics import psnr, ssim

RNG = np.random.default_rng(0)
COLOUR = RNG.integers(0, 256, (30, 37, 3), dtype=np.uint8)
GRAY = RNG.integers(0, 256, (27, 37), dtype=np.uint8)


def test_prepare_crops_to_the_scale_and_degrades_the_uint8_hr():
    image = protocol.prepare_image("c.png", COLOUR, 4)
    np.testing.assert_array_equal(image.hr, COLOUR[:28, :36])
    np.testing.assert_array_equal(image.lr, degrade(COLOUR[:28, :36], 4))
    assert image.lr.dtype == np.uint8 and image.scale == 4 and image.origin == "c.png"
    gray = protocol.prepare_image("g.png", GRAY, 3, origin="/data/g.png")
    assert gray.hr.shape == (27, 36) and gray.lr.shape == (9, 12) and gray.origin == "/data/g.png"


def test_prepare_takes_the_datasets_own_lr_images():
    lr = RNG.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    image = protocol.prepare_image("c", COLOUR, 4, lr=lr)
    np.testing.assert_array_equal(image.lr, lr)
    with pytest.raises(protocol.ImageError, match=r"^c: the LR image is uint8 \(7, 8, 3\)"):
        protocol.prepare_image("c", COLOUR, 4, lr=lr[:, :8])
    with pytest.raises(protocol.ImageError, match="needs uint8"):
        protocol.prepare_image("c", COLOUR, 4, lr=lr.astype(np.float32))


@pytest.mark.parametrize(("hr", "scale", "message"), [
    (np.zeros((3, 40, 3), np.uint8), 4, r"^tiny\.png: 40x3 pixels is too small for scale 4$"),
    (np.zeros((8, 8, 3), np.float32), 2, r"^tiny\.png: HR images must be uint8"),
    (np.zeros((8, 8, 4), np.uint8), 2, r"^tiny\.png: HR images must be uint8 \(H, W\)"),
])
def test_prepare_errors_name_the_image(hr, scale, message):
    with pytest.raises(protocol.ImageError, match=message):
        protocol.prepare_image("tiny.png", hr, scale)


@pytest.mark.parametrize("scale", [0, -2, 2.0])
def test_prepare_refuses_bad_scales(scale):
    with pytest.raises(ValueError, match="scale must be a positive integer"):
        protocol.prepare_image("c", COLOUR, scale)


def test_super_resolve_gives_the_model_float_lr_and_stores_uint8_sr():
    image = protocol.prepare_image("c", COLOUR, 2)
    seen, outputs = [], []

    def model(lr):
        seen.append(lr)
        sr = np.repeat(np.repeat(lr, 2, axis=0), 2, axis=1) + RNG.normal(0, 0.02, (30, 36, 3))
        outputs.append(np.clip(sr, -0.1, 1.1))
        return outputs[-1]

    sr = protocol.super_resolve(image, model)
    assert seen[0].dtype == np.float32 and seen[0].shape == (15, 18, 3)
    np.testing.assert_array_equal(seen[0], image.lr.astype(np.float32) / np.float32(255))
    # MATLAB im2uint8: clip, then round half up.
    np.testing.assert_array_equal(sr, np.floor(np.clip(outputs[0], 0, 1) * 255 + 0.5))
    assert sr.dtype == np.uint8


def test_gray_images_go_through_the_rgb_model_and_come_back_as_luma():
    image = protocol.prepare_image("g", GRAY, 3)
    calls = []

    def rgb_only(lr):
        assert lr.ndim == 3 and lr.shape[-1] == 3
        calls.append(lr)
        big = np.repeat(np.repeat(lr, 3, axis=0), 3, axis=1)
        return np.stack([big[..., 0], big[..., 1] * 0.5, np.zeros_like(big[..., 2])], axis=-1)

    sr = protocol.super_resolve(image, rgb_only)
    lr = image.lr.astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(calls[0], np.repeat(lr[..., None], 3, axis=-1))
    luma = np.repeat(np.repeat(lr, 3, axis=0), 3, axis=1) * (0.299 + 0.587 * 0.5)
    np.testing.assert_array_equal(sr, np.floor(luma * 255 + 0.5))
    wrapped = protocol.gray_via_rgb(rgb_only)
    assert protocol.gray_via_rgb(wrapped)(image.lr / 255.0).shape == image.hr.shape


@pytest.mark.parametrize("hr", [COLOUR, GRAY], ids=["colour", "gray"])
def test_bicubic_baseline_is_matlabs_uint8_imresize(hr):
    image = protocol.prepare_image("x", hr, 4)
    sr = protocol.super_resolve(image, protocol.bicubic_upscaler(4))
    np.testing.assert_array_equal(sr, imresize(image.lr, scale=4))


def test_model_failures_name_the_image():
    image = protocol.prepare_image("/data/Set5/bird.png", COLOUR, 2)
    with pytest.raises(protocol.ImageError, match=r"^/data/Set5/bird\.png: the model made an SR "
                       r"image shaped \(60, 72, 3\).*model's scale 2\?"):
        protocol.super_resolve(image, protocol.bicubic_upscaler(4))
    with pytest.raises(protocol.ImageError, match=r"bird\.png: the model's output has NaN"):
        protocol.super_resolve(image, lambda lr: np.full((30, 36, 3), np.nan))

    def complaining(lr):
        raise ValueError("tile too large")

    with pytest.raises(protocol.ImageError, match=r"bird\.png: tile too large"):
        protocol.super_resolve(image, complaining)


def test_score_is_y_channel_psnr_ssim_with_border_scale():
    image = protocol.prepare_image("c.png", COLOUR, 2)
    sr = np.clip(image.hr.astype(int) + RNG.integers(-6, 7, image.hr.shape), 0, 255)
    sr = sr.astype(np.uint8)
    score = protocol.score(image, sr)
    assert score.name == "c.png"
    assert score.psnr == pytest.approx(psnr(sr / 255, image.hr / 255, border=2), abs=1e-12)
    assert score.ssim == pytest.approx(ssim(sr / 255, image.hr / 255, border=2), abs=1e-12)
    assert protocol.score(image, image.hr, border=0).psnr == math.inf
    assert protocol.score(image, sr, border=0).psnr != score.psnr


def test_score_errors_name_the_image():
    image = protocol.prepare_image("small.png", COLOUR[:16, :16], 4)
    with pytest.raises(protocol.ImageError, match=r"^small\.png: SSIM needs at least 11x11"):
        protocol.score(image, image.hr)
    with pytest.raises(protocol.ImageError, match=r"^small\.png: SR image is float64"):
        protocol.score(image, image.hr / 255.0)


def test_scores_are_means_of_the_images():
    images = [protocol.ImageScore("a", 30.0, 0.9), protocol.ImageScore("b", 20.0, 0.5)]
    scores = protocol.Scores.mean_of(images)
    assert (scores.psnr, scores.ssim, scores.images) == (25.0, 0.7, tuple(images))
    with pytest.raises(ValueError, match="no image scores"):
        protocol.Scores.mean_of([])
