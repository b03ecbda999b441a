"""Pure SRResNet/SRGAN update steps and the evaluation step.

Each step is a function of (train states, batch, rng, frozen VGG params) returning the new states
and a dict of float32 scalar metrics. They know nothing about devices: run under `jax.pmap` (or
`shard_map`) with `axis_name` set, gradients and metrics are averaged over that axis and the
models' BatchNorm (built with the same `bn_axis_name`) averages its statistics over it, so the
update equals one on the whole global batch. Under `jax.jit` with a sharded batch, or on one
device, leave `axis_name=None`. `srgan_jax.training.parallel` compiles them either way.

A batch is uint8 crops, `{'hr': [N, H, W, 3]}` with `'lr': [N, H/scale, W/scale, 3]` or without
it (then LR is made on the device, `training.batches`), or the same already in the model ranges
(`'lr'` float32 in [0, 1], `'hr'` in [-1, 1]). `rng` is accepted for a uniform step signature; the
paper's models draw no randomness. `multi_step` runs K steps in one compiled call.

The VGG19 network of the content loss always runs in float32, whatever the models' compute dtype:
its features are compared by an MSE that bfloat16 rounding would swamp.

GAN step design (k = 1, the paper's alternation, as in the PyTorch peer):
  * G runs forward once, in training mode; its output `sr` feeds both updates.
  * D is updated first, on `hr` and `stop_gradient(sr)` passed as two separate batches, so each
    is normalised by its own BatchNorm statistics (the usual SRGAN implementations; concatenating
    them would let D tell real from fake by the batch mix). Its running statistics are updated by
    both passes, real then fake, as PyTorch does.
  * G is then updated against the *updated* D: `content + adversarial_weight * -log D(sr)`. D runs
    in training mode there too (batch statistics of the fake batch, as D saw fakes in its own
    update), but its parameters are constants (only input gradients are taken) and the running
    statistics this pass computes are discarded, so the G update leaves the D state untouched.
    PyTorch's peer differs only there: its third D forward also moves D's running statistics,
    which SRGAN never uses (D always runs in training mode).
  * The VGG parameters are constants of every loss: no gradient is taken for them.

Options of the GAN step (not in the paper; the paper's step is the default), all static:
  * `adversarial_loss='relativistic'`: ESRGAN's relativistic average losses for D and G; G's pass
    then also runs the updated D on the real batch (constants for G).
  * `discriminator_shift=s > 0`: D sees every real and generated image cropped by s pixels, at
    an offset drawn uniformly from 0..s-1 along each axis (fresh draws for the real batch, the
    fake batch of D's update and the fake batch of G's update), so that D's stride lattice takes
    every phase against the generator's 4x4 sub-pixel lattice. The draws come from the step's
    `rng` and cover the global batch, so a sharded run crops exactly as one device would.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from srgan_jax import losses, value_ranges
from srgan_jax.metrics import psnr_jax
from srgan_jax.training import batches
from srgan_jax.training.train_state import TrainState, learning_rate
from srgan_jax.vgg import VGG19Features

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]

CONTENT_LOSSES = ("mse", "vgg22", "vgg54")
ADVERSARIAL_LOSSES = ("standard", "relativistic")
VGG_LAYERS = {"vgg22": "phi_2_2", "vgg54": "phi_5_4"}


def vgg_layer(content_loss: str) -> str | None:
    """The VGG19 feature map a content loss compares (None for the pixel MSE)."""
    if content_loss not in CONTENT_LOSSES:
        raise ValueError(f"content_loss must be one of {CONTENT_LOSSES}, got {content_loss!r}")
    return VGG_LAYERS.get(content_loss)


def compute_content_loss(
    content_loss: str, sr: jax.Array, hr: jax.Array, vgg_params: Any
) -> jax.Array:
    """Pixel MSE ('mse') or the paper's VGG loss on phi_2_2 ('vgg22') / phi_5_4 ('vgg54')."""
    layer = vgg_layer(content_loss)
    if layer is None:
        return losses.mse(sr, hr)
    vgg = VGG19Features(layer=layer, dtype=jnp.float32)
    features = lambda images: vgg.apply(vgg_params, images.astype(jnp.float32))
    return losses.content_loss(features, sr, hr)


def pretrain_step(
    g_state: TrainState,
    batch: Batch,
    rng: jax.Array,
    vgg_params: Any,
    *,
    content_loss: str,
    tv_weight: float = 0.0,
    scale: int | None = None,
    axis_name: str | None = None,
) -> tuple[TrainState, Metrics]:
    """One SRResNet update with the `content_loss` ('mse', 'vgg22' or 'vgg54').

    `vgg_params` (`{'params': ...}` for `VGG19Features(vgg_layer(content_loss))`) may be None for
    'mse'. `tv_weight` adds that much total variation of SR (the paper's SRResNet-VGG22 uses 2e-8).
    `scale` is needed only for batches without LR images (LR made on the device). Metrics:
    `content_loss` (the loss itself, TV included), `pixel_loss` (MSE in [-1, 1]), `psnr` (Y,
    border = scale, on this batch before the update), `learning_rate`, and `tv_loss` if weighted.
    """
    del rng  # deterministic models
    batch = batches.prepare(batch, scale)

    def loss_fn(params):
        sr, batch_stats = _apply_training(g_state, params, g_state.batch_stats, batch["lr"])
        loss = compute_content_loss(content_loss, sr, batch["hr"], vgg_params)
        tv = losses.total_variation(sr)
        return loss + tv_weight * tv, (sr, batch_stats, tv)

    (loss, (sr, batch_stats, tv)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        g_state.params
    )
    g_state = g_state.apply_gradients(grads=_pmean(grads, axis_name), batch_stats=batch_stats)
    metrics = {
        "content_loss": loss,
        **({"tv_loss": tv} if tv_weight else {}),
        **_image_metrics(sr, batch),
        "learning_rate": learning_rate(g_state),
    }
    return g_state, _pmean(metrics, axis_name)


def gan_step(
    g_state: TrainState,
    d_state: TrainState,
    batch: Batch,
    rng: jax.Array,
    vgg_params: Any,
    *,
    content_loss: str,
    adversarial_weight: float,
    tv_weight: float = 0.0,
    scale: int | None = None,
    axis_name: str | None = None,
    adversarial_loss: str = "standard",
    discriminator_shift: int = 0,
) -> tuple[TrainState, TrainState, Metrics]:
    """One SRGAN update: D on real and fake, then G on content + weighted adversarial loss.

    See the module docstring for the design and the options. Metrics: `d_loss`, `g_loss` (the
    perceptual loss), `content_loss`, `adversarial_loss`, `d_real`/`d_fake` (mean D probability of
    the real and the generated batch, before D's update: a discriminator that wins outright shows
    d_real -> 1, d_fake -> 0), `pixel_loss`, `psnr` and `learning_rate`; `tv_weight` and `scale`
    as in `pretrain_step`.
    """
    if adversarial_loss not in ADVERSARIAL_LOSSES:
        raise ValueError(f"adversarial_loss must be one of {ADVERSARIAL_LOSSES}, "
                         f"got {adversarial_loss!r}")
    relativistic = adversarial_loss == "relativistic"
    real_key, fake_key, g_key = jax.random.split(_typed_key(rng), 3)
    view = functools.partial(discriminator_view, shift=discriminator_shift, axis_name=axis_name)
    batch = batches.prepare(batch, scale)
    hr = batch["hr"]
    real_view = view(hr, real_key)

    def generate(params):
        return _apply_training(g_state, params, g_state.batch_stats, batch["lr"])

    sr, g_vjp, g_batch_stats = jax.vjp(generate, g_state.params, has_aux=True)

    def d_loss_fn(params):
        real_logits, batch_stats = _apply_training(d_state, params, d_state.batch_stats, real_view)
        fake_logits, batch_stats = _apply_training(
            d_state, params, batch_stats, view(jax.lax.stop_gradient(sr), fake_key)
        )
        if relativistic:
            loss = losses.relativistic_discriminator_loss(real_logits, fake_logits, axis_name)
        else:
            loss = losses.discriminator_loss(real_logits, fake_logits)
        return loss, (real_logits, fake_logits, batch_stats)

    (d_loss, (real_logits, fake_logits, d_batch_stats)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True
    )(d_state.params)
    d_state = d_state.apply_gradients(grads=_pmean(d_grads, axis_name), batch_stats=d_batch_stats)

    def g_loss_fn(sr):
        content = compute_content_loss(content_loss, sr, hr, vgg_params)
        content += tv_weight * losses.total_variation(sr)
        logits, _ = _apply_training(d_state, d_state.params, d_state.batch_stats,
                                    view(sr, g_key))
        if relativistic:
            real, _ = _apply_training(d_state, d_state.params, d_state.batch_stats, real_view)
            adversarial = losses.relativistic_generator_loss(
                jax.lax.stop_gradient(real), logits, axis_name)
        else:
            adversarial = losses.generator_adversarial_loss(logits)
        loss = losses.perceptual_loss(content, adversarial, adversarial_weight)
        return loss, (content, adversarial)

    (g_loss, (content, adversarial)), sr_grad = jax.value_and_grad(g_loss_fn, has_aux=True)(sr)
    (g_grads,) = g_vjp(sr_grad)
    g_state = g_state.apply_gradients(grads=_pmean(g_grads, axis_name), batch_stats=g_batch_stats)
    metrics = {
        "d_loss": d_loss,
        "g_loss": g_loss,
        "content_loss": content,
        "adversarial_loss": adversarial,
        "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
        "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
        **_image_metrics(sr, batch),
        "learning_rate": learning_rate(g_state),
    }
    return g_state, d_state, _pmean(metrics, axis_name)


def discriminator_view(
    images: jax.Array, key: jax.Array, shift: int, axis_name: str | None = None
) -> jax.Array:
    """`images` [N, H, W, C] cropped to (H - shift, W - shift) at offsets drawn uniformly from
    0..shift-1 per image and axis (`shift=0`: unchanged). Under pmap (`axis_name`) the offsets are
    drawn for the global batch and each device takes its own images' share."""
    if shift == 0:
        return images
    n, height, width, channels = images.shape
    devices = 1 if axis_name is None else jax.lax.psum(1, axis_name)
    offsets = jax.random.randint(key, (n * devices, 2), 0, shift)
    if axis_name is not None:
        offsets = jax.lax.dynamic_slice_in_dim(offsets, jax.lax.axis_index(axis_name) * n, n)

    def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0),
                                     (height - shift, width - shift, channels))

    return jax.vmap(crop)(images, offsets)


def _typed_key(rng: jax.Array) -> jax.Array:
    """A typed PRNG key from a typed key or its raw uint32 data (what the trainer passes)."""
    if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return rng
    return jax.random.wrap_key_data(rng)


def _apply_training(
    state: TrainState, params: Any, batch_stats: Any, inputs: jax.Array
) -> tuple[jax.Array, Any]:
    """A model in training mode: its output and BatchNorm statistics updated from `batch_stats`."""
    outputs, updates = state.apply_fn(
        {"params": params, "batch_stats": batch_stats}, inputs, train=True, mutable=["batch_stats"]
    )
    return outputs, updates["batch_stats"]


def _image_metrics(sr: jax.Array, batch: Batch) -> Metrics:
    """Pixel MSE (in [-1, 1]) and mean Y-channel PSNR (border = scale) of a training batch."""
    scale = batch["hr"].shape[1] // batch["lr"].shape[1]
    unit = value_ranges.unit_from_sr
    psnr = psnr_jax(unit(sr), unit(batch["hr"]), border=scale)
    return {"pixel_loss": losses.mse(sr, batch["hr"]), "psnr": jnp.mean(psnr)}


def _pmean(tree: Any, axis_name: str | None) -> Any:
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)



def multi_step(step_fn: Callable[..., Any], num_states: int) -> Callable[..., Any]:
    """`step_fn` run K times in one call, over batches and keys stacked on a leading axis of K.

    The returned function takes `(*states, batches, rngs, vgg_params, **static)` where every leaf
    of `batches` and `rngs` has a leading axis of length K, and returns the states after the K
    updates followed by the metrics of every step, each stacked to [K]. One compiled call then
    covers K steps, which keeps an accelerator busy when one step is shorter than the host's work
    to launch it (`jax.lax.scan`: the step is compiled once, not unrolled).
    """

    def run(*args: Any, **static: Any) -> tuple[Any, ...]:
        states, (stacked_batches, rngs, vgg_params) = args[:num_states], args[num_states:]

        def one_step(carry, inputs):
            batch, rng = inputs
            *new_states, metrics = step_fn(*carry, batch, rng, vgg_params, **static)
            return tuple(new_states), metrics

        states, metrics = jax.lax.scan(one_step, tuple(states), (stacked_batches, rngs))
        return (*states, metrics)

    return run


def step_keys(host_rng: jax.Array, step: int, count: int) -> np.ndarray:
    """Raw PRNG keys of steps `step` .. `step + count - 1`: [2] for one step, [count, 2] else."""
    keys = [jax.random.key_data(jax.random.fold_in(host_rng, s)) for s in range(step, step + count)]
    return np.asarray(keys[0] if count == 1 else np.stack(keys))


def on_host(key: jax.Array) -> jax.Array:
    """`key` on this host's CPU, so that deriving a step's key never waits for the accelerators.

    An accelerator runs its programs in order: a `fold_in` placed there would queue behind the
    training steps already dispatched, and reading it back (`put_state` replicates keys through the
    host) would make the loop wait for every step instead of running ahead of the devices.
    """
    try:
        cpu = jax.local_devices(backend="cpu")[0]
    except RuntimeError:  # the CPU backend is excluded (JAX_PLATFORMS): keys stay where they are
        return key
    return jax.device_put(key, cpu)
