"""uint8 batches and LR made on the device: as the host's MATLAB bicubic and float batches."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax import imresize, value_ranges
from srgan_jax.training import batches


def _crops(shape, seed=0):
    """Natural-ish uint8 crops: smooth gradients plus noise, spanning 0..255 and flat areas."""
    rng = np.random.default_rng(seed)
    n, height, width = shape[:3]
    y, x = np.mgrid[0:height, 0:width]
    base = 127.5 + 127.5 * np.sin(x[None, ..., None] / 7.0 + y[None, ..., None] / 5.0
                                  + rng.uniform(0, 6, (n, 1, 1, 3)))
    noisy = base + rng.normal(0, 20, shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("scale,size", [(4, 96), (2, 16), (4, 24)])
def test_device_degradation_matches_matlab_bicubic_on_the_host(scale, size):
    hr = _crops((6, size, size, 3))
    expected = np.stack([imresize.degrade(image, scale) for image in hr])
    got = np.asarray(jax.jit(functools.partial(batches.degrade, scale=scale))(jnp.asarray(hr)))
    assert got.dtype == np.uint8 and got.shape == expected.shape
    difference = np.abs(got.astype(int) - expected)
    # float32 against float64 sums: a pixel may round the other way only at a half-way point.
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3


def test_prepare_converts_uint8_and_keeps_float_batches():
    hr = _crops((2, 16, 16, 3))
    lr = np.stack([imresize.degrade(image, 4) for image in hr])
    prepared = batches.prepare({"hr": jnp.asarray(hr), "lr": jnp.asarray(lr)}, scale=4)
    np.testing.assert_array_equal(prepared["hr"], value_ranges.hr_from_uint8(hr))
    np.testing.assert_array_equal(prepared["lr"], value_ranges.lr_from_uint8(lr))
    made = batches.prepare({"hr": jnp.asarray(hr)}, scale=4)
    assert np.abs(np.asarray(made["lr"]) - prepared["lr"]).max() <= 1 / 255 + 1e-7
    floats = {"hr": prepared["hr"], "lr": prepared["lr"]}
    assert batches.prepare(floats, scale=None) == floats
    with pytest.raises(ValueError, match="uint8 LR"):
        batches.prepare({"hr": jnp.asarray(hr), "lr": prepared["lr"]}, scale=4)
    with pytest.raises(ValueError, match="not divisible by scale 4"):
        batches.degrade(jnp.zeros((1, 10, 12, 3), jnp.uint8), 4)


def test_device_augmentation_is_the_hosts_eight_flips_and_rotations():
    images = _crops((8, 12, 12, 3), seed=3)
    transform = np.arange(8, dtype=np.int32)  # each variant once
    got = np.asarray(jax.jit(batches.augment)(jnp.asarray(images), jnp.asarray(transform)))
    for image, code, out in zip(images, transform, got, strict=True):
        flip, rotations = divmod(int(code), 4)
        np.testing.assert_array_equal(out, np.rot90(image[:, ::-1] if flip else image, rotations))
    assert len({out.tobytes() for out in got}) == 8


def test_hr_only_batches_train_on_what_host_batches_hold():
    """The iterator's HR-only batches (crops as cut + 'transform'), prepared on the device, equal
    its host-made batches (augmented on the host, LR by the host's bicubic)."""
    from srgan_jax.data import input_pipeline as ip
    from srgan_jax.data.image_source import ImageSource

    images = [_crops((1, 40 + 3 * k, 36 + 5 * k, 3), seed=k)[0] for k in range(5)]
    source = ImageSource("test", images, tuple(f"{k}" for k in range(5)),
                         tuple(image.shape[:2] for image in images))
    options = dict(global_batch_size=8, crop_size=16, scale=4, seed=1, layout="global",
                   prefetch=0)
    on_host = ip.create_train_iterator(source, **options).batch(2)
    hr_only = ip.create_train_iterator(source, degrade_on_host=False, **options).batch(2)
    assert set(hr_only) == {"hr", "transform"} and hr_only["transform"].dtype == np.int32
    assert len(set(hr_only["transform"].tolist())) > 1
    prepared = jax.jit(functools.partial(batches.prepare, scale=4))(hr_only)
    np.testing.assert_array_equal(prepared["hr"], value_ranges.hr_from_uint8(on_host["hr"]))
    expected_lr = value_ranges.lr_from_uint8(on_host["lr"])
    assert np.abs(np.asarray(prepared["lr"]) - expected_lr).max() <= 1 / 255 + 1e-7
