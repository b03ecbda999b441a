"""The two training phases and the states each starts from.

A run is phase 'pretrain' (SRResNet: global steps 0 .. pretrain.steps) followed by phase 'gan'
(SRGAN: the next gan.steps), either of which may be empty. Entering a phase creates its states
with fresh optimizers; the GAN phase's generator starts from the pre-trained SRResNet (this run's,
or `gan.init_from`'s checkpoint), as the paper's SRGAN does. `pretrain.init_from` likewise
starts the SRResNet phase from an existing generator, to train it further.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from absl import logging

from srgan_jax import checkpoint_reading, models, vgg, workdirs
from srgan_jax.training import steps
from srgan_jax.training import train_state as train_state_lib
from srgan_jax.training.parallel import Parallel
from srgan_jax.training.train_state import TrainState

PHASES = train_state_lib.PHASES  # ('pretrain', 'gan'), in run order


@dataclasses.dataclass(frozen=True)
class PhaseSpan:
    """Global steps [start, end) of one training phase."""

    name: str
    start: int
    end: int


def phase_spans(config: ml_collections.ConfigDict) -> list[PhaseSpan]:
    """The two phases in order, with their global step ranges (possibly empty)."""
    for name in PHASES:
        if config[name].steps < 0:
            raise ValueError(f"config.{name}.steps must be >= 0, got {config[name].steps}")
    pretrain_end = config.pretrain.steps
    return [
        PhaseSpan("pretrain", 0, pretrain_end),
        PhaseSpan("gan", pretrain_end, pretrain_end + config.gan.steps),
    ]


def create_states(
    config: ml_collections.ConfigDict, phase: str, rng: jax.Array, bn_axis_name: str | None
) -> tuple[TrainState, TrainState | None]:
    """Freshly initialised states of `phase` (G, and D for the GAN phase), with its optimizers."""
    g_rng, d_rng = jax.random.split(jax.random.fold_in(rng, PHASES.index(phase)))
    generator = train_state_lib.create_generator_state(config, g_rng, phase, bn_axis_name)
    if phase == "pretrain":
        return generator, None
    return generator, train_state_lib.create_discriminator_state(config, d_rng, bn_axis_name)


def abstract_states(
    config: ml_collections.ConfigDict, phase: str, bn_axis_name: str | None = None
) -> tuple[TrainState, TrainState | None]:
    """Shapes and structure of `phase`'s states, without initialising them: restore targets."""
    return jax.eval_shape(lambda: create_states(config, phase, jax.random.key(0), bn_axis_name))


def enter_phase(
    config: ml_collections.ConfigDict,
    phase: str,
    rng: jax.Array,
    previous_generator: TrainState | None,
    bn_axis_name: str | None,
) -> tuple[TrainState, TrainState | None]:
    """States at the start of `phase`: new optimizers, and the generator it starts from."""
    generator, discriminator = create_states(config, phase, rng, bn_axis_name)
    variables = initial_generator_variables(config, phase, previous_generator)
    if variables is not None:
        if phase == "pretrain" and config.pretrain.get("reinit_upsampling", False):
            variables = models.with_upsampling_of(variables, generator.params)
        generator = generator.replace(**variables)
    return generator, discriminator


def initial_generator_variables(
    config: ml_collections.ConfigDict, phase: str, previous_generator: TrainState | None
) -> dict[str, Any] | None:
    """`{'params', 'batch_stats'}` `phase`'s generator starts from (None: its fresh init).

    That is `config.<phase>.init_from`'s generator if set (a training workdir, a model file or a
    shipped model's name, e.g. 'srresnet_mse_x4'). Otherwise the GAN phase starts from this run's
    pre-trained generator if there is one: the paper initialises SRGAN with the trained
    SRResNet-MSE. With `gan.fold_batch_norm` the GAN phase starts from that generator's BN-free
    twin (`models.fold_batch_norm`), which computes the same images in inference mode.
    """
    source = config[phase].get("init_from", "")
    if source:
        logging.info("%s phase: generator initialised from %s", phase, source)
        variables = _load_generator(config, f"{phase}.init_from", source)
        source = f"config.{phase}.init_from={source}"
    elif phase == "gan" and previous_generator is not None:
        source = "this run's pre-trained generator"
        variables = {"params": previous_generator.params,
                     "batch_stats": previous_generator.batch_stats}
    else:
        if phase == "gan":
            logging.warning("GAN phase without a pre-trained generator: G starts from scratch")
        return None
    if phase == "gan" and config.gan.get("fold_batch_norm", False):
        if "BatchNorm_0" not in variables["params"]:
            raise ValueError(
                f"config.gan.fold_batch_norm=True, but {source} has no BatchNorm to fold (its "
                "BatchNorm was folded already?); set config.gan.fold_batch_norm=False and "
                "config.model.batch_norm=False to train it further")
        logging.info("GAN phase: BatchNorm folded into the generator's convolutions")
        variables = models.fold_batch_norm(variables)
    return variables


def _load_generator(config: ml_collections.ConfigDict, field: str, source: str) -> dict[str, Any]:
    """The generator variables `source` (a workdir, model file or shipped name) holds, checked
    against `config.model` (except what the phase changes on purpose: folded BatchNorm,
    replaced upsampling layers)."""
    if workdirs.workdir_path(source).is_dir():
        variables = checkpoint_reading.load_generator_variables(source, config)
        found = models.ModelConfig.from_variables(variables)
    else:
        from srgan_jax.upscaling import registry  # model files and shipped models

        found, variables = registry.load_weights(source)
    expected = models.ModelConfig.from_training_config(config.model)
    if field == "gan.init_from" and config.gan.get("fold_batch_norm", False):
        # whether there is BatchNorm to fold is checked, with its own message, by the caller
        expected = dataclasses.replace(expected, batch_norm=found.batch_norm)
    if field == "pretrain.init_from" and config.pretrain.get("reinit_upsampling", False):
        expected = dataclasses.replace(expected, upsampler=found.upsampler)  # to be replaced
    if found != expected:
        raise ValueError(f"config.{field}={source!r} is a {_describe(found)}, but config.model "
                         f"asks for a {_describe(expected)}")
    return variables


def _describe(model: models.ModelConfig) -> str:
    kind = "" if model.batch_norm else " BatchNorm-free"
    kind += "" if model.upsampler == "pixel_shuffle" else f" {model.upsampler}"
    return (f"{model.num_blocks}-block, {model.channels}-channel x{model.scale}{kind} generator "
            f"with value ranges {model.lr_range}/{model.sr_range}")


def compiled_steps(
    config: ml_collections.ConfigDict, phase: str, parallel: Parallel, rng: jax.Array
) -> tuple[dict[int, Callable[..., Any]], Any]:
    """`phase`'s compiled calls by steps per call (1, and `config.steps_per_call` = K if > 1),
    and its VGG params placed for them (None for the pixel MSE)."""
    section = config[phase]
    static = dict(content_loss=section.content_loss, tv_weight=section.tv_weight,
                  scale=config.model.scale)
    step_fn, num_states = steps.pretrain_step, 1
    if phase == "gan":
        step_fn, num_states = steps.gan_step, 2
        static["adversarial_weight"] = section.adversarial_weight
        static["adversarial_loss"] = section.get("adversarial_loss", "standard")
        static["discriminator_shift"] = section.get("discriminator_random_shift", 0)
    calls = {1: parallel.compile(step_fn, donate_states=num_states, **static)}
    k = config.steps_per_call
    if k > 1:
        calls[k] = parallel.compile(steps.multi_step(step_fn, num_states),
                                    donate_states=num_states, **static)
    vgg_rng = jax.random.fold_in(rng, 7)
    return calls, parallel.put_state(vgg_params(config, section.content_loss, vgg_rng))


def vgg_layers_needed(config: ml_collections.ConfigDict) -> set[str]:
    """The VGG19 feature maps the content losses of the non-empty phases compare."""
    return {
        layer
        for phase in PHASES
        if config[phase].steps and (layer := steps.vgg_layer(config[phase].content_loss))
    }


def vgg_params(config: ml_collections.ConfigDict, content_loss: str, rng: jax.Array) -> Any:
    """Frozen VGG19 params for a content loss (None for the pixel MSE)."""
    layer = steps.vgg_layer(content_loss)
    if layer is None:
        return None
    if config.vgg.random_weights:
        logging.warning("VGG19 with RANDOM weights (config.vgg.random_weights): smoke runs only")
        return vgg.random_vgg19_params(rng, layer)
    return vgg.load_vgg19_params(config.vgg.weights_path, layer=layer, download=config.vgg.download)
