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
    loaded = phases.initial_generator_variables(_config(str(path)), "gan", previous_generator=None)
    for x, y in zip(jax.tree.leaves(loaded), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(np.asarray(x), y)
    with pytest.raises(ValueError, match=r"config.gan.init_from=.* 2-block.*asks for a 3-block"):
        phases.initial_generator_variables(_config(str(path), num_blocks=3), "gan", None)


def test_gan_phase_starts_from_the_shipped_srresnet():
    config = _config(registry.DEFAULT_MODEL)
    config.model.num_blocks, config.model.channels = 16, 64
    loaded = phases.initial_generator_variables(config, "gan", previous_generator=None)
    shipped = registry.load_weights(registry.DEFAULT_MODEL).variables
    for x, y in zip(jax.tree.leaves(loaded), jax.tree.leaves(shipped), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(FileNotFoundError, match="shipped models"):
        phases.initial_generator_variables(_config("no_such_model"), "gan", None)


def test_pretrain_phase_trains_a_given_generator_further(tmp_path):
    variables = random_variables(TINY, seed=5)
    path = tmp_path / "srresnet.msgpack"
    model_file.save_model(path, variables, TINY)
    config = _config("")
    config.pretrain.steps, config.pretrain.init_from = 10, str(path)
    generator, discriminator = phases.enter_phase(config, "pretrain", jax.random.key(0), None, None)
    assert discriminator is None and int(generator.step) == 0
    loaded = {"params": generator.params, "batch_stats": generator.batch_stats}
    for x, y in zip(jax.tree.leaves(loaded), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(np.asarray(x), y)
    config.pretrain.init_from = ""
    fresh, _ = phases.enter_phase(config, "pretrain", jax.random.key(0), None, None)
    assert not all(np.array_equal(np.asarray(x), y) for x, y in
                   zip(jax.tree.leaves(fresh.params), jax.tree.leaves(variables["params"]),
                       strict=True))
    config.model.num_blocks, config.pretrain.init_from = 3, str(path)
    with pytest.raises(ValueError, match=r"config.pretrain.init_from=.* 2-block"):
        phases.enter_phase(config, "pretrain", jax.random.key(0), None, None)
