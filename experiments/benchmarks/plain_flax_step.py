"""The SRResNet and SRGAN-VGG54 training steps written the textbook Flax/optax way: the baseline.

The same networks and losses as `srgan_jax` (the paper's generator, discriminator and VGG19 to
conv5_4 on random weights; pixel MSE, VGG54/12.75 + 1e-3 * -log D(G(x)), Adam), but built only
from stock `flax.linen` layers (`nn.Conv`, `nn.BatchNorm`, `nn.Dense`) under one `jax.jit`, with
none of srgan_jax's machinery (no uint8 batches converted in the step, no donated states, no
per-step metrics, no parallel driver). It exists to show what our step costs or gains over plain
JAX on the same machine, next to the PyTorch peer (`../shared/peer/torch_srgan_ref.py`); it is a
speed reference, never trained for quality.

Timing as `train_step.py`: one compiling call, --warmup steps, then --iters steps back to back
and one wait. Prints one JSON line per step kind.

    python experiments/benchmarks/plain_flax_step.py --steps pretrain,gan --iters 3
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

VGG54_CHANNELS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                  512, 512, 512, 512)  # conv5_4, before its ReLU


class PReLU(nn.Module):
    """The paper's PReLU: one learned slope per channel, starting at 0.25."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        slope = self.param("slope", nn.initializers.constant(0.25), (x.shape[-1],))
        return jnp.where(x >= 0, x, slope * x)


class Generator(nn.Module):
    blocks: int = 16
    channels: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)  # noqa: E731
        x = PReLU()(nn.Conv(self.channels, (9, 9))(x))
        skip = x
        for _ in range(self.blocks):
            y = PReLU()(bn()(nn.Conv(self.channels, (3, 3), use_bias=False)(x)))
            x = x + bn()(nn.Conv(self.channels, (3, 3), use_bias=False)(y))
        x = bn()(nn.Conv(self.channels, (3, 3), use_bias=False)(x)) + skip
        for _ in range(2):
            x = nn.Conv(self.channels * 4, (3, 3))(x)
            n, h, w, c = x.shape
            x = x.reshape(n, h, w, 2, 2, c // 4).transpose(0, 1, 3, 2, 4, 5)
            x = PReLU()(x.reshape(n, 2 * h, 2 * w, c // 4))
        return nn.Conv(3, (9, 9))(x)


class Discriminator(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for i, c in enumerate((64, 64, 128, 128, 256, 256, 512, 512)):
            x = nn.Conv(c, (3, 3), strides=1 + i % 2, use_bias=i == 0)(x)
            if i:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
            x = nn.leaky_relu(x, 0.2)
        x = nn.leaky_relu(nn.Dense(1024)(x.reshape(x.shape[0], -1)), 0.2)
        return nn.Dense(1)(x)[:, 0]


class VGG54(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, c in enumerate(VGG54_CHANNELS):
            if c == "M":
                x = nn.max_pool(x, (2, 2), (2, 2))
            else:
                x = nn.Conv(c, (3, 3))(x)
                x = x if i == len(VGG54_CHANNELS) - 1 else nn.relu(x)
        return x


def _update(model: nn.Module, tx: optax.GradientTransformation, loss_fn: Callable) -> Callable:
    """A (params, stats, opt) -> new (params, stats, opt), loss update of `model` for `loss_fn`."""

    def update(params, stats, opt, *args):
        def loss(p):
            out, new = model.apply({"params": p, "batch_stats": stats}, *args, train=True,
                                   mutable=["batch_stats"])
            return loss_fn(out), new["batch_stats"]

        (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), stats, opt, value

    return update


def build(step: str, batch: int, crop: int, blocks: int) -> tuple[Callable, tuple]:
    """The jitted step and its initial arguments for `step` ('pretrain' or 'gan')."""
    rng = np.random.default_rng(0)
    hr = jnp.asarray(rng.uniform(-1, 1, (batch, crop, crop, 3)), jnp.float32)
    lr = jnp.asarray(rng.uniform(0, 1, (batch, crop // 4, crop // 4, 3)), jnp.float32)
    tx = optax.adam(1e-4, b1=0.9)
    gen = Generator(blocks)
    g_vars = gen.init(jax.random.key(0), lr, train=False)
    g = (g_vars["params"], g_vars["batch_stats"], tx.init(g_vars["params"]))
    if step == "pretrain":
        g_update = _update(gen, tx, lambda sr: jnp.mean((sr - hr) ** 2))

        def pretrain(g):
            *g, loss = g_update(*g, lr)
            return tuple(g), loss

        return jax.jit(pretrain), (g,)

    disc, vgg = Discriminator(), VGG54()
    d_vars = disc.init(jax.random.key(1), hr, train=False)
    d = (d_vars["params"], d_vars["batch_stats"], tx.init(d_vars["params"]))
    vgg_params = vgg.init(jax.random.key(2), hr)["params"]
    features = lambda x: vgg.apply({"params": vgg_params}, (x + 1) / 2)  # noqa: E731

    def gan(g, d):
        def forward(params):  # G runs once: D sees its output, G's gradient flows back via vjp
            sr, new = gen.apply({"params": params, "batch_stats": g[1]}, lr, train=True,
                                mutable=["batch_stats"])
            return sr, new["batch_stats"]

        sr, g_vjp, stats = jax.vjp(forward, g[0], has_aux=True)
        labels = jnp.concatenate([jnp.ones(batch), jnp.zeros(batch)])
        d_loss = lambda logits: optax.sigmoid_binary_cross_entropy(logits, labels).mean()  # noqa: E731
        *d, _ = _update(disc, tx, d_loss)(*d, jnp.concatenate([hr, jax.lax.stop_gradient(sr)]))
        hr_features = features(hr)

        def g_loss(sr):
            logits, _ = disc.apply({"params": d[0], "batch_stats": d[1]}, sr, train=True,
                                   mutable=["batch_stats"])
            content = jnp.mean((features(sr) - hr_features) ** 2) / 12.75**2
            return content - 1e-3 * jnp.mean(jax.nn.log_sigmoid(logits))

        loss, sr_grad = jax.value_and_grad(g_loss)(sr)
        (grads,) = g_vjp(sr_grad)
        updates, opt = tx.update(grads, g[2], g[0])
        return (optax.apply_updates(g[0], updates), stats, opt), tuple(d), loss

    return jax.jit(gan), (g, d)


def measure(step: str, batch: int, crop: int, blocks: int, warmup: int, iters: int) -> dict:
    fn, states = build(step, batch, crop, blocks)

    def run(states: tuple) -> tuple[tuple, Any]:
        *states, loss = fn(*states)
        return tuple(states), loss

    start = time.perf_counter()
    states, loss = run(states)
    jax.block_until_ready(loss)
    first = time.perf_counter() - start
    for _ in range(warmup):
        states, loss = run(states)
    jax.block_until_ready(loss)
    start = time.perf_counter()
    for _ in range(iters):
        states, loss = run(states)
    jax.block_until_ready((states, loss))
    seconds = (time.perf_counter() - start) / iters
    return {"impl": "plain_flax", "step": step, "batch": batch, "crop": crop,
            "ms_per_step": round(1e3 * seconds, 1), "first_call_s": round(first, 2),
            "loss": float(loss), "device": jax.devices()[0].device_kind}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", default="pretrain,gan", help="pretrain, gan, or both")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--num-blocks", type=int, default=16)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    args = p.parse_args()
    for step in args.steps.split(","):
        row = measure(step, args.batch, args.crop, args.num_blocks, args.warmup, args.iters)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
