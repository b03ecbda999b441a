"""Train states and optimizers for the generator and the discriminator.

A `TrainState` is flax's (step, params, tx, opt_state) plus the models' BatchNorm running
statistics. It is a pytree of arrays (the model's `apply` and the optax transformation are static
fields), so orbax saves and restores it directly and `jax.pmap`/`jax.jit` take it as an argument.

The optimizer is the paper's: Adam (beta1 0.9) at 1e-4, dropped to 1e-5 after a configurable
number of updates, optionally after clipping the gradient's global norm. The learning rate is an
injected hyperparameter, so the one used by the latest update can be read from the optimizer state
(`learning_rate(state)`), e.g. for logging.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from srgan_jax.models import Discriminator, ModelConfig

Phase = Literal["pretrain", "gan"]
PHASES = ("pretrain", "gan")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


class TrainState(train_state.TrainState):
    """flax's TrainState plus the BatchNorm running statistics (`batch_stats` collection)."""

    batch_stats: Any


def compute_dtype(config: ml_collections.ConfigDict) -> jnp.dtype:
    """`config.dtype` as a jnp dtype; parameters, BN statistics and losses stay float32."""
    if config.dtype not in COMPUTE_DTYPES:
        raise ValueError(f"config.dtype must be one of {COMPUTE_DTYPES}, got {config.dtype!r}")
    return jnp.dtype(config.dtype)


def learning_rate_points(
    config: ml_collections.ConfigDict, phase: Phase
) -> tuple[list[int], list[float]]:
    """`config.<phase>`'s piecewise-constant rate as (boundaries, rates), len(rates) = len + 1.

    The rate is `learning_rate` until the first of `lr_boundaries`, then the next of `lr_values`
    at each boundary; boundaries count this phase's updates (its optimizer's step counter starts at
    0 when the phase starts). The older single switch, `lr_decay_step` (when not None) with
    `decayed_learning_rate`, replaces them: it is `lr_boundaries=(lr_decay_step,)`,
    `lr_values=(decayed_learning_rate,)`, so that command lines written for it keep their meaning.
    """
    cfg = _phase_config(config, phase)
    if cfg.get("lr_decay_step") is not None:
        boundaries, values = [int(cfg.lr_decay_step)], [float(cfg.decayed_learning_rate)]
        field = "lr_decay_step"
    else:
        boundaries = [int(b) for b in cfg.get("lr_boundaries", ())]
        values = [float(v) for v in cfg.get("lr_values", ())]
        field = "lr_boundaries"
    if len(boundaries) != len(values):
        raise ValueError(
            f"config.{phase}.lr_boundaries {tuple(boundaries)} and config.{phase}.lr_values "
            f"{tuple(values)} must have the same length"
        )
    if any(b <= 0 for b in boundaries) or boundaries != sorted(set(boundaries)):
        raise ValueError(
            f"config.{phase}.{field} must be positive and increasing, got {tuple(boundaries)}"
        )
    rates = [float(cfg.learning_rate), *values]
    if not all(np.isfinite(r) and r > 0 for r in rates):
        raise ValueError(
            f"config.{phase}.learning_rate and lr_values must be positive numbers, got {rates}"
        )
    return boundaries, rates


def learning_rate_schedule(config: ml_collections.ConfigDict, phase: Phase) -> optax.Schedule:
    """The piecewise-constant learning rate of `phase` (see `learning_rate_points`)."""
    boundaries, rates = learning_rate_points(config, phase)
    if not boundaries:
        return optax.constant_schedule(rates[0])
    return optax.join_schedules([optax.constant_schedule(r) for r in rates], boundaries)


def describe_learning_rate(config: ml_collections.ConfigDict, phase: Phase) -> str:
    """The schedule in words, e.g. '0.0001, then 1e-05 from update 4000'."""
    boundaries, rates = learning_rate_points(config, phase)
    parts = [f"{rates[0]:g}"]
    parts += [f"{rate:g} from update {b}" for b, rate in zip(boundaries, rates[1:], strict=True)]
    return ", then ".join(parts)


def make_optimizer(config: ml_collections.ConfigDict, phase: Phase, lr_scale: float = 1.0
                   ) -> optax.GradientTransformation:
    """The optimizer of `phase` ('pretrain' for SRResNet, 'gan' for SRGAN's G and D), its learning
    rate schedule multiplied by `lr_scale`.

    `config.optimizer_name` is 'adam' (the paper's; b1/b2/eps from `config.optim`) or 'sgd' (plain
    SGD, for tests where Adam's normalisation would hide a wrongly scaled gradient). A positive
    `config.optim.grad_clip_norm` clips the (already device-averaged) gradient's global norm first.
    """
    schedule = learning_rate_schedule(config, phase)
    if lr_scale != 1.0:
        schedule = _scaled(schedule, lr_scale)
    name = config.optimizer_name
    if name == "adam":
        optim = config.optim
        tx = optax.inject_hyperparams(optax.adam)(
            learning_rate=schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps
        )
    elif name == "sgd":
        tx = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)
    else:
        raise ValueError(f"config.optimizer_name must be 'adam' or 'sgd', got {name!r}")
    clip = config.optim.grad_clip_norm
    if clip:
        if clip < 0:
            raise ValueError(f"config.optim.grad_clip_norm must be positive or None, got {clip}")
        tx = optax.chain(optax.clip_by_global_norm(clip), tx)
    return tx


def _scaled(schedule: optax.Schedule, factor: float) -> optax.Schedule:
    return lambda count: factor * schedule(count)


def learning_rate(state: TrainState) -> jax.Array:
    """The learning rate the latest update used (the initial one before any update)."""
    # The injected value, not the schedule's own state stored under the same name.
    return optax.tree_utils.tree_get(
        state.opt_state, "learning_rate", filtering=lambda _, value: hasattr(value, "dtype")
    )


def generator_config(config: ml_collections.ConfigDict, phase: Phase) -> ModelConfig:
    """The generator `phase` trains: `config.model`'s, without BatchNorm in the GAN phase when
    `gan.fold_batch_norm` folds it away."""
    model = ModelConfig.from_training_config(config.model)
    if phase == "gan" and config.gan.get("fold_batch_norm", False):
        model = dataclasses.replace(model, batch_norm=False)
    return model


def create_generator_state(
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    phase: Phase,
    bn_axis_name: str | None = None,
) -> TrainState:
    """SRResNet (`config.model`) with fresh parameters and the optimizer of `phase`.

    `bn_axis_name` must be the axis the steps run under with cross-replica BatchNorm (pmap), and
    None when the whole batch is one array (jit with sharding, single device).
    """
    lr_size = _lr_crop_size(config)
    model = generator_config(config, phase).generator(compute_dtype(config), bn_axis_name)
    example = jnp.zeros((1, lr_size, lr_size, 3))
    return _create_state(model, rng, example, make_optimizer(config, phase))


def create_discriminator_state(
    config: ml_collections.ConfigDict, rng: jax.Array, bn_axis_name: str | None = None
) -> TrainState:
    """The discriminator of the GAN phase, with its optimizer (the phase's learning rate times
    `gan.discriminator_lr_scale`). It sees `config.crop_size` HR crops, less
    `gan.discriminator_random_shift` pixels; `gan.discriminator_antialias` and
    `gan.discriminator_normalization` choose its variant (configs without them: the paper's D)."""
    gan = config.gan
    size = config.crop_size - gan.get("discriminator_random_shift", 0)
    model = Discriminator(input_size=size, antialias=gan.get("discriminator_antialias", False),
                          normalization=gan.get("discriminator_normalization", "batch"),
                          dtype=compute_dtype(config), bn_axis_name=bn_axis_name)
    tx = make_optimizer(config, "gan", gan.get("discriminator_lr_scale", 1.0))
    return _create_state(model, rng, jnp.zeros((1, size, size, 3)), tx)


def _create_state(
    model: nn.Module, rng: jax.Array, example: jax.Array, tx: optax.GradientTransformation
) -> TrainState:
    # BatchNorm's axis name plays no part in init (flax skips it there), so initialise the
    # axis-free twin: one compiled init then serves every parallel mode, phase and optimizer.
    variables = _init_variables(model.clone(bn_axis_name=None), rng, example)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),  # none in a BatchNorm-free generator
        tx=tx,
    )


@functools.partial(jax.jit, static_argnums=0)
def _init_variables(model: nn.Module, rng: jax.Array, example: jax.Array) -> Any:
    return model.init(rng, example)


def _phase_config(config: ml_collections.ConfigDict, phase: Phase) -> ml_collections.ConfigDict:
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    return config[phase]


def _lr_crop_size(config: ml_collections.ConfigDict) -> int:
    crop, scale = config.crop_size, config.model.scale
    if crop % scale:
        raise ValueError(
            f"config.crop_size ({crop}) must be a multiple of config.model.scale ({scale})"
        )
    return crop // scale
