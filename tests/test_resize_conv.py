"""`model.upsampler='resize_conv'` (nearest-neighbour x2, then a convolution) and
`pretrain.reinit_upsampling`, which gives a trained SRResNet fresh upsampling layers."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fake_models import TINY, random_variables
from test_models import _bn, _conv, _prelu

from srgan_jax import models
from srgan_jax.configs import test as test_config
from srgan_jax.training import config_validation, phases
from srgan_jax.upscaling import model_file, registry
from srgan_jax.upscaling.inference import Upscaler

RESIZE = dataclasses.replace(TINY, upsampler="resize_conv")


def test_resize_conv_generator_is_nearest_neighbour_then_convolution():
    model = RESIZE.generator()
    variables = random_variables(RESIZE, seed=0)
    p, s = variables["params"], variables["batch_stats"]
    lr = jax.random.uniform(jax.random.key(1), (2, 6, 5, 3))
    x = _prelu(_conv(lr, p["Conv_0"]), p["PReLU_0"])
    skip = x
    for b in range(TINY.num_blocks):
        block, stats = p[f"ResidualBlock_{b}"], s[f"ResidualBlock_{b}"]
        y = _prelu(_bn(_conv(x, block["Conv_0"]), block["BatchNorm_0"], stats["BatchNorm_0"]),
                   block["PReLU_0"])
        x = x + _bn(_conv(y, block["Conv_1"]), block["BatchNorm_1"], stats["BatchNorm_1"])
    x = _bn(_conv(x, p["Conv_1"]), p["BatchNorm_0"], s["BatchNorm_0"]) + skip
    for stage in range(2):
        upsampled = np.asarray(x).repeat(2, axis=1).repeat(2, axis=2)  # nearest neighbour x2
        x = _prelu(_conv(jnp.asarray(upsampled), p[f"Conv_{2 + stage}"]), p[f"PReLU_{1 + stage}"])
        assert p[f"Conv_{2 + stage}"]["kernel"].shape == (3, 3, TINY.channels, TINY.channels)
    expected = _conv(x, p["Conv_4"])
    np.testing.assert_allclose(model.apply(variables, lr, train=False), expected, rtol=1e-5,
                               atol=1e-5)


def test_a_flat_image_stays_flat_through_resize_conv_not_through_pixel_shuffle():
    """What the upsampler can do cheaply: away from the borders, a constant LR image gives a
    constant SR image after a resize-convolution (one kernel for every output pixel), while a
    sub-pixel convolution whose kernels differ between sub-pixel positions (ICNR starts them
    equal; training does not keep them so) paints a fixed 4x4 pattern over it."""
    lr = jnp.full((1, 64, 64, 3), 0.4)  # the centre is further than the receptive field from
    # the zero padding at the borders
    rng = np.random.default_rng(0)
    for config, periodic in ((RESIZE, False), (TINY, True)):
        variables = random_variables(config, seed=3)
        for name in ("Conv_2", "Conv_3"):
            kernel = variables["params"][name]["kernel"]
            variables["params"][name]["kernel"] = kernel + rng.normal(0, 0.05, kernel.shape)
        sr = np.asarray(config.generator().apply(variables, lr))[0]
        inner = sr[112:144, 112:144, 0]
        assert bool(np.ptp(inner) > 1e-3) == periodic, config.upsampler
        np.testing.assert_allclose(inner[:4, :4], inner[4:8, 8:12], atol=1e-5)  # period 4


def test_model_files_and_tiles_of_a_resize_conv_generator(tmp_path):
    variables = random_variables(RESIZE, seed=4)
    assert models.ModelConfig.from_variables(variables) == RESIZE
    path = tmp_path / "resize.msgpack"
    model_file.save_model(path, variables)
    loaded = model_file.load_model(path)
    assert loaded.config == RESIZE and RESIZE.to_dict()["upsampler"] == "resize_conv"
    assert "upsampler" not in TINY.to_dict()  # the paper's files are what they were
    with pytest.raises(model_file.ModelFileError, match="upsampler must be one of"):
        model_file.config_from_dict(dict(RESIZE.to_dict(), upsampler="bilinear"), "x.msgpack")
    image = np.random.default_rng(0).uniform(0, 1, (37, 29, 3)).astype(np.float32)
    upscaler = Upscaler(loaded)
    # The sub-pixel generator's receptive field bounds this one's: tiles stay exact.
    np.testing.assert_allclose(upscaler(image, tile=8), upscaler(image), atol=1e-5)


def start_config(init_from: str, upsampler: str):
    config = test_config.get_config()
    config.model.num_blocks, config.model.channels, config.model.scale = 16, 64, 4
    config.model.upsampler = upsampler
    config.pretrain.init_from, config.pretrain.reinit_upsampling = init_from, True
    return config


@pytest.mark.parametrize("upsampler", ["resize_conv", "pixel_shuffle"])
def test_reinit_upsampling_keeps_the_trained_body_and_tail(upsampler):
    config = start_config(registry.DEFAULT_MODEL, upsampler)
    generator, _ = phases.enter_phase(config, "pretrain", jax.random.key(0), None, None)
    shipped = registry.load_weights(registry.DEFAULT_MODEL).variables
    for name, value in shipped["params"].items():
        if name in ("Conv_2", "Conv_3"):
            kernel = np.asarray(generator.params[name]["kernel"])
            if upsampler == "resize_conv":
                assert kernel.shape == (3, 3, 64, 64)
            else:  # ICNR: the kernel of one sub-pixel position repeated for all four
                np.testing.assert_array_equal(kernel[..., :64], kernel[..., 192:])
                assert not np.array_equal(kernel, value["kernel"])
        else:
            for a, b in zip(jax.tree.leaves(generator.params[name]), jax.tree.leaves(value),
                            strict=True):
                np.testing.assert_array_equal(np.asarray(a), b)
    for a, b in zip(jax.tree.leaves(generator.batch_stats), jax.tree.leaves(shipped["batch_stats"]),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_another_upsampler_without_reinit_is_named_and_reinit_needs_a_source():
    config = start_config(registry.DEFAULT_MODEL, "resize_conv")
    config.pretrain.reinit_upsampling = False
    with pytest.raises(ValueError, match=r"config.pretrain.init_from='srresnet_mse_x4' is a "
                                         r"16-block.*asks for a 16-block, 64-channel x4 "
                                         r"resize_conv generator"):
        phases.enter_phase(config, "pretrain", jax.random.key(0), None, None)
    config = start_config("", "resize_conv")
    with pytest.raises(ValueError, match="config.pretrain.reinit_upsampling=True .* init_from is "
                                         "empty"):
        config_validation.validate(config)
