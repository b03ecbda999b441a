"""Where the GAN phase's generator comes from: a workdir, a model file or a shipped model."""
from __future__ import annotations

import jax
import numpy as np
import pytest
from fake_models import TINY, random_variables

from srgan_jax.configs import test as test_config
from srgan_jax.training import phases
from srgan_jax.upscaling import model_file, registry


def _config(init_from: str, num_blocks: int = TINY.num_blocks):
    config = test_config.get_config()
    config.model.num_blocks, config.model.channels = num_blocks, TINY.channels
    config.model.scale = TINY.scale
    config.pretrain.steps, config.gan.init_from = 0, init_from
    return config


def test_gan_phase_starts_from_a_model_file(tmp_path):
    variables = random_variables(TINY, seed=3)
    path = tmp_path / "srresnet.msgpack"
    model_file.save_model(path, variables, TINY)
    loaded = phases.gan_generator_variables(_config(str(path)), previous_generator=None)
    for x, y in zip(jax.tree.leaves(loaded), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(np.asarray(x), y)
    with pytest.raises(ValueError, match=r"config.gan.init_from=.* 2-block.*asks for 3 blocks"):
        phases.gan_generator_variables(_config(str(path), num_blocks=3), None)


def test_gan_phase_starts_from_the_shipped_srresnet():
    config = _config(registry.DEFAULT_MODEL)
    config.model.num_blocks, config.model.channels = 16, 64
    loaded = phases.gan_generator_variables(config, previous_generator=None)
    shipped = registry.load_weights(registry.DEFAULT_MODEL).variables
    for x, y in zip(jax.tree.leaves(loaded), jax.tree.leaves(shipped), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(FileNotFoundError, match="shipped models"):
        phases.gan_generator_variables(_config("no_such_model"), None)
