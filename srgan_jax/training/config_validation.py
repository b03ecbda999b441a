"""Checks a training config before anything heavy starts, one error naming the field at fault.

`validate(config, devices=..., processes=...)` raises `ValueError("config.<field> must be ...,
got ...")` for the first field that cannot work, so that a typo costs a second, not a download,
a compilation or a day of training that dies at its first checkpoint.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import ml_collections

from srgan_jax import models
from srgan_jax.evaluation import evaluators
from srgan_jax.training import parallel, steps, train_state

SOURCES = ("folder", "demo", "tfds")
DEGRADATIONS = ("auto", "host", "device")
OPTIMIZERS = ("adam", "sgd")
SCALES = (2, 4, 8)
CADENCES = ("log_every", "eval_every", "checkpoint_every", "sample_every")


def _check(field: str, value: Any, ok: bool, requirement: str) -> None:
    if not ok:
        raise ValueError(f"config.{field} must be {requirement}, got {value!r}")


def _integer(field: str, value: Any, minimum: int) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    _check(field, value, ok, f"an integer >= {minimum}")


def _number(field: str, value: Any, accept: Callable[[float], bool], requirement: str) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    _check(field, value, ok and accept(value), requirement)


def _one_of(field: str, value: Any, allowed: tuple[Any, ...]) -> None:
    _check(field, value, value in allowed, f"one of {allowed}")


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises `ValueError` naming the first unusable field of a training `config`.

    Whether `batch_size` divides over the devices is `parallel.Parallel.create`'s check, made
    just before this one.
    """
    _one_of("parallelism", config.parallelism, parallel.PARALLELISMS)
    _one_of("dtype", config.dtype, train_state.COMPUTE_DTYPES)
    _integer("seed", config.seed, 0)
    _one_of("model.scale", config.model.scale, SCALES)
    _integer("model.num_blocks", config.model.num_blocks, 0)
    _integer("model.channels", config.model.channels, 1)
    _one_of("model.upsampler", config.model.get("upsampler", "pixel_shuffle"), models.UPSAMPLERS)
    if config.pretrain.get("reinit_upsampling", False) and not config.pretrain.init_from:
        raise ValueError("config.pretrain.reinit_upsampling=True replaces the upsampling layers "
                         "of config.pretrain.init_from's generator, but init_from is empty")

    _integer("batch_size", config.batch_size, 1)
    scale = config.model.scale
    _integer("crop_size", config.crop_size, 1)
    _check("crop_size", config.crop_size,
           config.crop_size % scale == 0 and config.crop_size >= 3 * scale,
           f"a multiple of model.scale={scale} and at least {3 * scale} (a crop keeps pixels "
           "after the scale-wide border that PSNR ignores)")
    _integer("steps_per_call", config.get("steps_per_call", 1), 1)

    _one_of("optimizer_name", config.optimizer_name, OPTIMIZERS)
    _number("optim.b1", config.optim.b1, lambda v: 0 <= v < 1, "in [0, 1)")
    _number("optim.b2", config.optim.b2, lambda v: 0 <= v < 1, "in [0, 1)")
    _number("optim.eps", config.optim.eps, lambda v: v > 0, "a positive number")
    clip = config.optim.grad_clip_norm
    if clip is not None:
        _number("optim.grad_clip_norm", clip, lambda v: v > 0, "a positive number or None")

    for phase in train_state.PHASES:
        section = config[phase]
        _integer(f"{phase}.steps", section.steps, 0)
        _one_of(f"{phase}.content_loss", section.content_loss, steps.CONTENT_LOSSES)
        _number(f"{phase}.tv_weight", section.get("tv_weight", 0.0), lambda v: v >= 0,
                "a number >= 0")
        train_state.learning_rate_points(config, phase)  # names its own fields
    _validate_gan_options(config)
    if config.gan.init_from and config.pretrain.steps:
        raise ValueError(
            f"config.gan.init_from={config.gan.init_from!r} would replace the generator this run "
            f"pre-trains (config.pretrain.steps={config.pretrain.steps}); set "
            "config.pretrain.steps=0 to start the GAN phase from that checkpoint"
        )

    for field in CADENCES:
        _integer(field, config[field], 1)
    _integer("keep_checkpoints", config.keep_checkpoints, 1)
    _integer("num_eval_images", config.num_eval_images, 1)
    _integer("num_samples", config.num_samples, 0)
    evaluators.create_evaluators(config.evals)  # names its own fields
    _validate_data(config.data)


def _validate_gan_options(config: ml_collections.ConfigDict) -> None:
    """The adversarial phase's weight and its options against the grid (absent: the paper's)."""
    gan = config.gan
    _number("gan.adversarial_weight", gan.adversarial_weight, lambda v: v >= 0, "a number >= 0")
    _one_of("gan.adversarial_loss", gan.get("adversarial_loss", "standard"),
            steps.ADVERSARIAL_LOSSES)
    _one_of("gan.discriminator_normalization", gan.get("discriminator_normalization", "batch"),
            models.DISCRIMINATOR_NORMALIZATIONS)
    _number("gan.discriminator_lr_scale", gan.get("discriminator_lr_scale", 1.0),
            lambda v: v > 0, "a positive number")
    if gan.get("fold_batch_norm", False) and not config.model.get("batch_norm", True):
        raise ValueError("config.gan.fold_batch_norm=True needs a generator with BatchNorm to "
                         "fold, but config.model.batch_norm=False")
    shift = gan.get("discriminator_random_shift", 0)
    _integer("gan.discriminator_random_shift", shift, 0)
    _check("gan.discriminator_random_shift", shift, shift < config.crop_size // 2,
           f"less than half of crop_size={config.crop_size}")


def _validate_data(data: ml_collections.ConfigDict) -> None:
    _one_of("data.source", data.source, SOURCES)
    if data.source == "folder":
        for field in ("train_dirs", "eval_dirs"):
            _check(f"data.{field}", data[field], len(data[field]) > 0,
                   "a list of image folders for data.source='folder'")
    _integer("data.prefetch", data.prefetch, 0)
    _integer("data.num_workers", data.num_workers, 1)
    _integer("data.device_prefetch", data.device_prefetch, 0)
    _integer("data.cache_bytes", data.cache_bytes, 0)
    _one_of("data.degradation", data.get("degradation", "auto"), DEGRADATIONS)
