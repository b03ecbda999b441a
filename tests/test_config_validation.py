"""`config_validation.validate`: shipped configs pass; a bad field is named in one line."""
from __future__ import annotations

import functools
import importlib

import pytest

from srgan_jax.configs import default
from srgan_jax.training import config_validation

SHIPPED = ["default", "demo", "test", "srresnet_mse", "srresnet_vgg22", "srgan_mse",
           "srgan_mse_gridfree", "srgan_vgg22", "srgan_vgg54"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_are_valid(name):
    config_validation.validate(importlib.import_module(f"srgan_jax.configs.{name}").get_config())


def _set(config, field, value):
    *parents, leaf = field.split(".")
    functools.reduce(lambda c, key: c[key], parents, config)[leaf] = value


@pytest.mark.parametrize("field,value,requirement", [
    ("batch_size", 0, "an integer >= 1"),
    ("batch_size", -1, "an integer >= 1"),
    ("crop_size", 9, "a multiple of model.scale=4"),
    ("crop_size", 4, "at least 12"),
    ("model.scale", 3, "one of (2, 4, 8)"),
    ("data.source", "nonsense", "one of ('folder', 'demo', 'tfds')"),
    ("data.train_dirs", [], "a list of image folders"),
    ("pretrain.learning_rate", float("nan"), "pretrain.learning_rate"),
    ("gan.adversarial_weight", -1e-3, "a number >= 0"),
    ("keep_checkpoints", 0, "an integer >= 1"),
    ("eval_every", 0, "an integer >= 1"),
    ("steps_per_call", 0, "an integer >= 1"),
    ("optimizer_name", "lamb", "one of ('adam', 'sgd')"),
    ("pretrain.content_loss", "vgg99", "one of"),
    ("gan.tv_weight", -1.0, "a number >= 0"),
    ("data.degradation", "gpu", "one of ('auto', 'host', 'device')"),
    ("optim.b1", 1.0, "in [0, 1)"),
    ("gan.adversarial_loss", "hinge", "one of ('standard', 'relativistic')"),
    ("gan.discriminator_normalization", "layer", "one of ('batch', 'spectral')"),
    ("gan.discriminator_lr_scale", 0.0, "a positive number"),
    ("gan.discriminator_random_shift", -1, "an integer >= 0"),
    ("gan.discriminator_random_shift", 48, "less than half of crop_size=96"),
])
def test_bad_field_is_named_with_what_it_must_be(field, value, requirement):
    config = default.get_config()
    config.data.source = "folder"
    config.data.train_dirs, config.data.eval_dirs = ["train"], ["eval"]
    _set(config, field, value)
    with pytest.raises(ValueError) as caught:
        config_validation.validate(config)
    message = str(caught.value)
    assert f"config.{field}" in message and requirement in message and "\n" not in message


def test_init_from_with_pretraining_is_refused():
    config = default.get_config()
    config.gan.init_from = "/runs/srresnet"
    with pytest.raises(ValueError, match="config.pretrain.steps=0"):
        config_validation.validate(config)
