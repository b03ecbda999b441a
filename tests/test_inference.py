"""Upscaler and the one-call `upscale` API: every input kind, against independent references."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fake_models import TINY, random_variables, reference_sr
from PIL import Image

import srgan_jax
from srgan_jax.imresize import imresize
from srgan_jax.models import ModelConfig
from srgan_jax.upscaling import inference
from srgan_jax.upscaling.inference import Upscaler, upscale
from srgan_jax.upscaling.model_file import save_model

LUMA = np.array([0.299, 0.587, 0.114])


@pytest.fixture(scope="module")
def variables():
    return random_variables(TINY, seed=0)


@pytest.fixture(scope="module")
def upscaler(variables) -> Upscaler:
    return Upscaler(variables, TINY)


def reference(variables, rgb: np.ndarray) -> np.ndarray:
    """float64 SR in [0, 1] from the Flax module on the mirrored image (`reference_sr`)."""
    return reference_sr(TINY, variables, rgb)


def rgb01(h=12, w=17, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3))


def test_upscaler_matches_the_module(upscaler, variables):
    image = rgb01()
    sr = upscaler(image)
    assert sr.dtype == np.float32 and sr.shape == (48, 68, 3)
    assert sr.min() >= 0.0 and sr.max() <= 1.0
    np.testing.assert_allclose(sr, reference(variables, image), atol=1e-5)


def test_batch_equals_single_images(upscaler):
    batch = np.stack([rgb01(seed=i) for i in range(3)])
    sr = upscaler(batch)
    assert sr.shape == (3, 48, 68, 3)
    for image, out in zip(batch, sr, strict=True):
        np.testing.assert_allclose(out, upscaler(image), atol=1e-5)


def test_automatic_tiling_under_a_small_memory_budget(variables, upscaler):
    """An image too large for the budget is tiled automatically, with the same result."""
    small = Upscaler(variables, TINY, memory_budget=int(upscaler.bytes_per_pixel * 40 * 40))
    assert 2 * small.receptive_field < small.max_tile() < 48
    image = rgb01(70, 60, seed=1)
    np.testing.assert_allclose(small(image), upscaler(image), atol=1e-4)


def test_calls_are_capped_in_output_pixels(variables):
    """However large the budget, one call never produces more than MAX_OUTPUT_PIXELS."""
    huge = Upscaler(variables, TINY, memory_budget=1 << 50)
    assert huge.max_pixels * TINY.scale**2 <= inference.MAX_OUTPUT_PIXELS
    assert (huge.max_tile() * TINY.scale) ** 2 <= inference.MAX_OUTPUT_PIXELS


def test_architecture_is_read_off_the_variables():
    config = ModelConfig(num_blocks=3, channels=8, scale=2)
    up = Upscaler(random_variables(config))
    assert (up.config.num_blocks, up.config.channels, up.scale) == (3, 8, 2)
    assert up(rgb01(5, 6)).shape == (10, 12, 3)


def test_bfloat16_is_close_to_float32(upscaler):
    image = rgb01()
    bf16 = upscaler.with_dtype("bfloat16")
    assert bf16.model.dtype == jnp.bfloat16
    out = bf16(image)
    assert out.dtype == np.float32
    assert np.abs(out - upscaler(image)).mean() < 2e-2


@pytest.mark.parametrize("dtype, peak", [(np.uint8, 255), (np.uint16, 65535)])
def test_integer_rgb(upscaler, variables, dtype, peak):
    pixels = np.random.default_rng(1).integers(0, peak + 1, (9, 11, 3)).astype(dtype)
    out = upscale(upscaler, pixels)
    assert out.dtype == dtype and out.shape == (36, 44, 3)
    expected = np.round(reference(variables, pixels / peak) * peak)
    assert np.abs(out.astype(np.float64) - expected).max() <= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_rgb_keeps_its_dtype(upscaler, variables, dtype):
    image = rgb01().astype(dtype)
    out = upscale(upscaler, image)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, reference(variables, image), atol=1e-5)


@pytest.mark.parametrize("shape", [(10, 13), (10, 13, 1)])
def test_gray_goes_through_rgb_and_back(upscaler, variables, shape):
    gray = np.random.default_rng(2).integers(0, 256, shape).astype(np.uint8)
    out = upscale(upscaler, gray)
    assert out.shape == (40, 52, *shape[2:]) and out.dtype == np.uint8
    rgb = np.repeat(gray.reshape(10, 13, 1), 3, axis=-1) / 255.0
    expected = np.round(reference(variables, rgb) @ LUMA * 255).reshape(out.shape)
    assert np.abs(out.astype(np.float64) - expected).max() <= 1


def test_rgba_alpha_by_bicubic(upscaler, variables):
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (16, 18, 4)).astype(np.uint8)
    rgba[..., 3] = np.linspace(0, 255, 18).astype(np.uint8)[None]  # smooth alpha ramp
    out = upscale(upscaler, rgba)
    assert out.shape == (64, 72, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., :3], upscale(upscaler, rgba[..., :3]))
    # Interior pixels against MATLAB bicubic (the two differ only in their border handling).
    expected = np.clip(imresize(rgba[..., 3] / 255.0, 4), 0, 1) * 255
    assert np.abs(out[8:-8, 8:-8, 3] - expected[8:-8, 8:-8]).max() <= 1


def test_alpha_by_the_model(upscaler, variables):
    la = np.random.default_rng(4).random((8, 9, 2)).astype(np.float32)
    out = upscale(upscaler, la, alpha="model")
    assert out.shape == (32, 36, 2)
    alpha_rgb = np.repeat(la[..., 1:], 3, axis=-1)
    np.testing.assert_allclose(out[..., 1], reference(variables, alpha_rgb) @ LUMA, atol=1e-5)


@pytest.mark.parametrize(
    "make, mode",
    [
        (lambda a: Image.fromarray(a), "RGB"),
        (lambda a: Image.fromarray(a).convert("L"), "L"),
        (lambda a: Image.fromarray(a).convert("RGBA"), "RGBA"),
        (lambda a: Image.fromarray(a).convert("LA"), "LA"),
        (lambda a: Image.fromarray(a[..., 0].astype(np.uint16) * 257), "I;16"),
        (lambda a: Image.fromarray(a[..., 0].astype(np.int32) * 257, mode="I"), "I"),
        (lambda a: Image.fromarray(a).convert("P"), "RGB"),
        (lambda a: Image.fromarray(a).convert("CMYK"), "RGB"),
        (lambda a: Image.fromarray(a).convert("1"), "L"),
        (lambda a: Image.fromarray(a[..., 0] / np.float32(255)), "F"),
    ],
    ids=["RGB", "L", "RGBA", "LA", "I;16", "I", "P", "CMYK", "1", "F"],
)
def test_pil_images(upscaler, variables, make, mode):
    """Each PIL mode comes back in its mode, with the float64 reference's pixels: the input as
    Pillow converts it to that mode, over its peak (65535 for the 16-bit modes, 1 for F), the
    module, gray as luma, alpha by bicubic (all 255 here, so 255). Within a level of the mode's
    rounding, 2 for 16 bits (the module's float32 error, 1e-5, is 0.7 of 65535's levels); wrong
    16-bit scaling is off by thousands."""
    image = make(np.random.default_rng(5).integers(0, 256, (6, 7, 3)).astype(np.uint8))
    out = upscale(upscaler, image)
    assert isinstance(out, Image.Image)
    assert out.mode == mode and out.size == (28, 24)
    peak = {"I;16": 65535, "I": 65535, "F": 1}.get(mode, 255)
    seen = np.asarray(image.convert(mode) if image.mode != mode else image, np.float64) / peak
    seen = seen.reshape(6, 7, -1)
    colours = 3 if seen.shape[-1] >= 3 else 1
    rgb = np.broadcast_to(seen[..., :colours], (6, 7, 3))
    sr = reference(variables, rgb)
    expected = sr if colours == 3 else (sr @ LUMA)[..., None]
    if seen.shape[-1] in (2, 4):  # the alpha channel
        assert (seen[..., -1] == 1).all()
        expected = np.concatenate([expected, np.ones((24, 28, 1))], axis=-1)
    expected = expected * peak if mode == "F" else np.round(expected * peak)
    got = np.asarray(out, np.float64).reshape(expected.shape)
    tolerance = {"I;16": 2, "I": 2, "F": 1e-5}.get(mode, 1)
    assert np.abs(got - expected).max() <= tolerance


def test_pil_palette_with_transparency_keeps_it(upscaler):
    image = Image.fromarray(np.zeros((5, 5), np.uint8), mode="P")
    image.info["transparency"] = 0
    assert upscale(upscaler, image).mode == "RGBA"


def test_pil_icc_profile_is_carried_over(upscaler):
    image = Image.fromarray(np.zeros((4, 4, 3), np.uint8))
    image.info["icc_profile"] = b"profile bytes"
    assert upscale(upscaler, image).info["icc_profile"] == b"profile bytes"


@pytest.mark.parametrize(
    "image, error, match",
    [
        ([[0.5]], TypeError, "numpy array or PIL image"),
        ("image.png", TypeError, "numpy array or PIL image"),
        (np.zeros(5), ValueError, "shape"),
        (np.zeros((2, 4, 4, 3)), ValueError, "shape"),
        (np.zeros((4, 4, 5)), ValueError, "shape"),
        (np.zeros((0, 4, 3)), ValueError, "empty"),
        (np.full((4, 4, 3), 255.0), ValueError, r"\[0, 1\]"),
        (np.full((4, 4, 3), np.nan), ValueError, "NaN"),
        (np.zeros((4, 4, 3), bool), TypeError, "dtype"),
        (np.zeros((4, 4, 3), np.int64), TypeError, "dtype"),
    ],
)
def test_clear_errors_for_non_images(upscaler, image, error, match):
    with pytest.raises(error, match=match):
        upscale(upscaler, image)


def test_bad_options(upscaler):
    with pytest.raises(ValueError, match="alpha"):
        upscale(upscaler, np.zeros((4, 4, 4), np.uint8), alpha="nearest")
    with pytest.raises(ValueError, match="dtype"):
        upscale(upscaler, np.zeros((4, 4, 3), np.uint8), dtype="float16")
    with pytest.raises(TypeError, match="Upscaler, a shipped model"):
        upscale(42, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="no such model"):
        upscale("/nonexistent/model.msgpack", np.zeros((4, 4, 3), np.uint8))


def test_programmatic_one_call_with_variables_path_and_upscaler(tmp_path, variables, upscaler):
    path = tmp_path / "tiny.msgpack"
    save_model(path, variables, TINY)
    pixels = np.random.default_rng(6).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    expected = upscale(upscaler, pixels)
    np.testing.assert_array_equal(srgan_jax.upscale(variables, pixels), expected)
    np.testing.assert_array_equal(srgan_jax.upscale(str(path), pixels), expected)
    np.testing.assert_array_equal(srgan_jax.upscale(path, pixels, tile=25), expected)
    assert isinstance(srgan_jax.load_generator(path), Upscaler)


def test_memory_estimate_covers_the_compiled_need(upscaler):
    stats = inference._forward.lower(
        upscaler.variables, jax.ShapeDtypeStruct((1, 96, 80, 3), jnp.float32), TINY, "float32"
    ).compile().memory_analysis()
    if stats is None:
        pytest.skip("backend without a memory analysis")
    assert stats.temp_size_in_bytes <= upscaler.bytes_per_pixel * 96 * 80


def test_upscale_never_imports_tensorflow(tmp_path, variables):
    path = tmp_path / "tiny.msgpack"
    save_model(path, variables, TINY)
    code = (
        "import sys, numpy as np, srgan_jax\n"
        f"out = srgan_jax.upscale({str(path)!r}, np.zeros((4, 5, 3), np.uint8))\n"
        "assert out.shape == (16, 20, 3), out.shape\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'orbax'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"JAX_PLATFORMS": "cpu"})


def test_with_variables_swaps_the_generator_and_keeps_the_memory_plan(upscaler, variables):
    other_variables = random_variables(TINY, seed=1)
    image = rgb01()
    _ = upscaler.bytes_per_pixel
    swapped = upscaler.with_variables(other_variables)
    assert swapped.__dict__["bytes_per_pixel"] == upscaler.bytes_per_pixel
    np.testing.assert_allclose(swapped(image), Upscaler(other_variables, TINY)(image), atol=1e-6)
    assert not np.allclose(swapped(image), upscaler(image), atol=1e-3)
    with pytest.raises(ValueError):
        upscaler.with_variables({"params": {}, "batch_stats": {}})
