"""The update steps against plain re-computations written out here.

Tiny models on one device, plain SGD, so that one step must equal `params - lr * grad` of the loss
as the paper defines it, with the gradient taken by `jax.grad` of a loss built from the models
directly (no step code involved). PSNR/SSIM are checked against the numpy metrics in float64.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from srgan_jax import losses, metrics, value_ranges
from srgan_jax.imresize import degrade
from srgan_jax.models import Discriminator, Generator
from srgan_jax.training import steps as train
from srgan_jax.training import train_state
from srgan_jax.vgg import VGG19Features, random_vgg19_params

SCALE = 2
CROP = 16  # the smallest the discriminator takes; 12x12 pixels are left for SSIM
NUM_BLOCKS, CHANNELS = 1, 8


LEARNING_RATE = 0.01  # both phases, so that one generator state serves both steps' tests


def make_config(**overrides) -> ml_collections.ConfigDict:
    """A tiny single-device SGD config; `overrides` maps dotted field names to values."""
    phase = {"learning_rate": LEARNING_RATE, "lr_boundaries": (), "lr_values": (),
             "lr_decay_step": None, "decayed_learning_rate": 1e-3}
    config = ml_collections.ConfigDict(
        {
            "model": {"num_blocks": NUM_BLOCKS, "channels": CHANNELS, "scale": SCALE},
            "dtype": "float32",
            "crop_size": CROP,
            "optimizer_name": "sgd",
            "optim": {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "grad_clip_norm": None},
            "pretrain": dict(phase, content_loss="mse"),
            "gan": dict(phase, content_loss="vgg22", adversarial_weight=1e-3),
        }
    )
    for name, value in overrides.items():
        *parents, leaf = name.split(".")
        functools.reduce(lambda c, key: c[key], parents, config)[leaf] = value
    return config


@pytest.fixture(scope="module")
def batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    lr = rng.uniform(0.0, 1.0, (4, CROP // SCALE, CROP // SCALE, 3)).astype(np.float32)
    hr = rng.uniform(-1.0, 1.0, (4, CROP, CROP, 3)).astype(np.float32)
    return {"lr": lr, "hr": hr}


@pytest.fixture(scope="module")
def vgg_params():
    return random_vgg19_params(jax.random.PRNGKey(7), "phi_2_2")


@pytest.fixture(scope="module")
def g_state() -> train_state.TrainState:
    return train_state.create_generator_state(make_config(), jax.random.PRNGKey(0), "pretrain")


@pytest.fixture(scope="module")
def d_state() -> train_state.TrainState:
    return train_state.create_discriminator_state(make_config(), jax.random.PRNGKey(1))


def generator() -> Generator:
    return Generator(num_blocks=NUM_BLOCKS, channels=CHANNELS, scale=SCALE)


def train_apply(model, params, batch_stats, x):
    """`model` in training mode, written out: (output, new batch_stats)."""
    out, updates = model.apply(
        {"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
    )
    return out, updates["batch_stats"]


def plain_content_loss(kind, vgg_params, sr, hr):
    if kind == "mse":
        return jnp.mean((sr - hr) ** 2)
    vgg = VGG19Features(layer="phi_2_2")
    target = jax.lax.stop_gradient(vgg.apply(vgg_params, hr))
    return jnp.mean((vgg.apply(vgg_params, sr) / 12.75 - target / 12.75) ** 2)


def value_and_grad(loss):
    """Compiled value-and-gradient of a `(loss, aux)` function: far faster than eager on CPU."""
    return jax.jit(jax.value_and_grad(loss, has_aux=True))


def sgd_expected(params, grads, lr):
    return jax.tree.map(lambda p, g: p - lr * g, params, grads)


def assert_trees_close(actual, expected, start, rtol=1e-4):
    """Leafwise, the change from `start` agrees to `rtol` of the largest change in that leaf.

    Changes are small next to the values, so the float32 rounding of the values is allowed too.
    """
    flat_actual, flat_expected, flat_start = (
        jax.tree_util.tree_flatten_with_path(tree)[0] for tree in (actual, expected, start)
    )
    for (path, a), (_, e), (_, s) in zip(flat_actual, flat_expected, flat_start, strict=True):
        s = np.asarray(s, np.float64)
        change = np.asarray(e, np.float64) - s
        atol = rtol * np.max(np.abs(change)) + 2e-7 * np.max(np.abs(s))
        np.testing.assert_allclose(
            np.asarray(a, np.float64) - s, change, rtol=rtol, atol=atol,
            err_msg=jax.tree_util.keystr(path),
        )


def batch_psnr(sr, hr, border):
    sr01 = np.clip((np.asarray(sr, np.float64) + 1) / 2, 0, 1)
    hr01 = (np.asarray(hr, np.float64) + 1) / 2
    return np.mean([metrics.psnr(s, h, border=border) for s, h in zip(sr01, hr01, strict=True)])


@pytest.mark.parametrize("content_loss", ["mse", "vgg22"])
def test_pretrain_step_is_one_sgd_step_on_the_content_loss(
    batch, vgg_params, g_state, content_loss
):
    state = g_state
    step = jax.jit(functools.partial(train.pretrain_step, content_loss=content_loss))
    new_state, step_metrics = step(state, batch, jax.random.PRNGKey(1), vgg_params)

    def loss(params):
        sr, batch_stats = train_apply(generator(), params, state.batch_stats, batch["lr"])
        return plain_content_loss(content_loss, vgg_params, sr, batch["hr"]), (sr, batch_stats)

    (expected_loss, (sr, batch_stats)), grads = value_and_grad(loss)(state.params)
    expected_params = sgd_expected(state.params, grads, LEARNING_RATE)
    assert_trees_close(new_state.params, expected_params, state.params)
    assert_trees_close(new_state.batch_stats, batch_stats, state.batch_stats)
    assert int(new_state.step) == 1
    pixel = np.mean((np.asarray(sr, np.float64) - batch["hr"]) ** 2)
    np.testing.assert_allclose(step_metrics["content_loss"], expected_loss, rtol=1e-5)
    np.testing.assert_allclose(step_metrics["pixel_loss"], pixel, rtol=1e-5)
    np.testing.assert_allclose(step_metrics["psnr"], batch_psnr(sr, batch["hr"], SCALE), rtol=1e-5)
    np.testing.assert_allclose(step_metrics["learning_rate"], LEARNING_RATE, rtol=1e-7)


def test_gan_step_updates_d_then_g_against_the_updated_d(batch, vgg_params, g_state, d_state):
    lr, weight = LEARNING_RATE, make_config().gan.adversarial_weight
    step = jax.jit(
        functools.partial(train.gan_step, content_loss="vgg22", adversarial_weight=weight)
    )
    new_g, new_d, step_metrics = step(g_state, d_state, batch, jax.random.PRNGKey(2), vgg_params)

    d_model, hr = Discriminator(input_size=CROP), batch["hr"]
    # Compiled like the step's: D's leaky ReLU kinks make its gradient jump with the last bit of
    # an SR pixel whose pre-activation sits at zero, and eager rounding differs from XLA's fused.
    generate = jax.jit(functools.partial(train_apply, generator()))
    sr, g_batch_stats = generate(g_state.params, g_state.batch_stats, batch["lr"])

    def d_loss(params):  # real and fake as two batches, BN statistics chained through both
        real, stats = train_apply(d_model, params, d_state.batch_stats, hr)
        fake, stats = train_apply(d_model, params, stats, sr)
        bce = jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))
        return bce, (real, fake, stats)

    (expected_d_loss, (real, fake, d_batch_stats)), d_grads = value_and_grad(d_loss)(
        d_state.params
    )
    d_params = sgd_expected(d_state.params, d_grads, lr)
    # D's update is its own loss's only: the G update that follows leaves the D state untouched.
    assert_trees_close(new_d.params, d_params, d_state.params)
    assert_trees_close(new_d.batch_stats, d_batch_stats, d_state.batch_stats)

    def g_loss(params):  # against the updated D, in training mode
        fake_sr, _ = train_apply(generator(), params, g_state.batch_stats, batch["lr"])
        logits, _ = train_apply(d_model, d_params, d_batch_stats, fake_sr)
        content = plain_content_loss("vgg22", vgg_params, fake_sr, hr)
        adversarial = jnp.mean(-jax.nn.log_sigmoid(logits))
        return content + weight * adversarial, (content, adversarial)

    (expected_g_loss, (content, adversarial)), g_grads = value_and_grad(g_loss)(g_state.params)
    assert_trees_close(new_g.params, sgd_expected(g_state.params, g_grads, lr), g_state.params)
    assert_trees_close(new_g.batch_stats, g_batch_stats, g_state.batch_stats)
    assert (int(new_g.step), int(new_d.step)) == (1, 1)

    expected_metrics = {
        "d_loss": expected_d_loss,
        "g_loss": expected_g_loss,
        "content_loss": content,
        "adversarial_loss": adversarial,
        "d_real": np.mean(1 / (1 + np.exp(-np.asarray(real, np.float64)))),
        "d_fake": np.mean(1 / (1 + np.exp(-np.asarray(fake, np.float64)))),
        "pixel_loss": np.mean((np.asarray(sr, np.float64) - hr) ** 2),
        "psnr": batch_psnr(sr, hr, SCALE),
        "learning_rate": lr,
    }
    assert set(step_metrics) == set(expected_metrics)
    for name, value in expected_metrics.items():
        np.testing.assert_allclose(step_metrics[name], value, rtol=1e-5, err_msg=name)


def uint8_batch(seed=3):
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, (4, CROP, CROP, 3), dtype=np.uint8)
    lr = np.stack([degrade(image, SCALE) for image in hr])
    return {"hr": hr, "lr": lr}


def test_uint8_batches_train_exactly_as_their_float_version(g_state):
    """The compiled step's conversion equals the host's float batch, bit for bit."""
    raw = uint8_batch()
    floats = {"lr": value_ranges.lr_from_uint8(raw["lr"]),
              "hr": value_ranges.hr_from_uint8(raw["hr"])}
    step = jax.jit(functools.partial(train.pretrain_step, content_loss="mse", scale=SCALE))
    rng = jax.random.PRNGKey(1)
    from_uint8, metrics_uint8 = step(g_state, raw, rng, None)
    from_float, metrics_float = step(g_state, floats, rng, None)
    for a, b in zip(jax.tree.leaves(from_uint8), jax.tree.leaves(from_float), strict=True):
        np.testing.assert_array_equal(a, b)
    assert metrics_uint8 == metrics_float
    # Without 'lr' the step degrades HR itself: the same update to float rounding of a rare pixel.
    made, _ = step(g_state, {"hr": raw["hr"]}, rng, None)
    assert_trees_close(made.params, from_float.params, g_state.params, rtol=1e-2)


def test_multi_step_equals_single_steps():
    """K steps in one call (lax.scan) against K calls of the step, both phases.

    Not bitwise on CPU: XLA fuses the scanned body differently. 32x32 crops, because at 16x16 the
    discriminator's last BatchNorms normalise over four values each, which magnifies float32
    rounding to a few % of a step; here the two agree to about 1e-4 of a step, while a skipped or
    repeated step would be off by a third.
    """
    k, crop = 3, 32
    config = make_config(crop_size=crop)
    g_state = train_state.create_generator_state(config, jax.random.PRNGKey(0), "pretrain")
    d_state = train_state.create_discriminator_state(config, jax.random.PRNGKey(1))
    rng = np.random.default_rng(0)
    blocks = {
        "lr": rng.uniform(0, 1, (k, 4, crop // SCALE, crop // SCALE, 3)).astype(np.float32),
        "hr": rng.uniform(-1, 1, (k, 4, crop, crop, 3)).astype(np.float32),
    }
    keys = np.stack([jax.random.key_data(jax.random.PRNGKey(i)) for i in range(k)])
    static = dict(content_loss="mse", scale=SCALE)
    one = jax.jit(functools.partial(train.pretrain_step, **static))
    many = jax.jit(functools.partial(train.multi_step(train.pretrain_step, 1), **static))
    state = g_state
    for i in range(k):
        state, last = one(state, {n: v[i] for n, v in blocks.items()}, keys[i], None)
    scanned, stacked = many(g_state, blocks, keys, None)
    assert stacked["pixel_loss"].shape == (k,)
    np.testing.assert_allclose(stacked["pixel_loss"][-1], last["pixel_loss"], rtol=1e-5)
    assert_trees_close(scanned, state, g_state, rtol=1e-3)

    gan_static = dict(content_loss="mse", adversarial_weight=1e-3, scale=SCALE)
    gan_one = jax.jit(functools.partial(train.gan_step, **gan_static))
    gan_many = jax.jit(functools.partial(train.multi_step(train.gan_step, 2), **gan_static))
    g, d = g_state, d_state
    for i in range(k):
        g, d, _ = gan_one(g, d, {n: v[i] for n, v in blocks.items()}, keys[i], None)
    g_k, d_k, gan_metrics = gan_many(g_state, d_state, blocks, keys, None)
    assert gan_metrics["d_loss"].shape == (k,)
    assert_trees_close(g_k, g, g_state, rtol=1e-3)
    assert_trees_close(d_k, d, d_state, rtol=1e-3)


def test_total_variation_against_numpy():
    images = np.random.default_rng(5).uniform(-1, 1, (3, 7, 9, 3))
    expected = np.mean([np.abs(np.diff(x, axis=0)).sum() + np.abs(np.diff(x, axis=1)).sum()
                        for x in images])
    np.testing.assert_allclose(losses.total_variation(jnp.asarray(images, jnp.float32)),
                               expected, rtol=1e-5)


def test_tv_weight_adds_total_variation_to_the_loss(batch, g_state):
    rng = jax.random.PRNGKey(1)
    plain = jax.jit(functools.partial(train.pretrain_step, content_loss="mse"))
    weighted = jax.jit(functools.partial(train.pretrain_step, content_loss="mse", tv_weight=0.5))
    _, without = plain(g_state, batch, rng, None)
    _, with_tv = weighted(g_state, batch, rng, None)
    np.testing.assert_allclose(with_tv["content_loss"],
                               without["content_loss"] + 0.5 * with_tv["tv_loss"], rtol=1e-5)
    assert "tv_loss" not in without and float(with_tv["tv_loss"]) > 0


def _rates_and_steps(config, updates):
    """The logged learning rate and the actual parameter step of `updates` constant-gradient
    updates (SGD, or Adam whose normalised step is then the rate as well)."""
    state = train_state.TrainState.create(
        apply_fn=None, params={"w": jnp.zeros(3)}, batch_stats={},
        tx=train_state.make_optimizer(config, "pretrain"),
    )
    rates, steps = [], []
    for _ in range(updates):
        new_state = state.apply_gradients(grads={"w": jnp.ones(3)})
        rates.append(float(train_state.learning_rate(new_state)))
        steps.append(float(state.params["w"][0] - new_state.params["w"][0]))
        state = new_state
    return rates, steps


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_learning_rate_switches_at_the_decay_step(optimizer):
    config = make_config(
        optimizer_name=optimizer,
        **{
            "pretrain.learning_rate": 0.1,
            "pretrain.decayed_learning_rate": 0.01,
            "pretrain.lr_decay_step": 2,
        },
    )
    rates, steps = _rates_and_steps(config, 4)
    np.testing.assert_allclose(rates, [0.1, 0.1, 0.01, 0.01], rtol=1e-7)
    # The older single switch replaces lr_boundaries/lr_values, as a command line meant it to.
    config.pretrain.lr_boundaries, config.pretrain.lr_values = (1,), (0.5,)
    assert _rates_and_steps(config, 4)[0] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    np.testing.assert_allclose(steps, [0.1, 0.1, 0.01, 0.01], rtol=1e-5)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_piecewise_constant_learning_rate(optimizer):
    config = make_config(
        optimizer_name=optimizer,
        **{"pretrain.learning_rate": 0.1, "pretrain.lr_boundaries": (1, 3),
           "pretrain.lr_values": (0.01, 0.001)},
    )
    rates, steps = _rates_and_steps(config, 5)
    expected = [0.1, 0.01, 0.01, 0.001, 0.001]
    np.testing.assert_allclose(rates, expected, rtol=1e-7)
    np.testing.assert_allclose(steps, expected, rtol=1e-4)
    assert train_state.describe_learning_rate(config, "pretrain") == (
        "0.1, then 0.01 from update 1, then 0.001 from update 3"
    )


@pytest.mark.parametrize(("overrides", "message"), [
    ({"pretrain.lr_boundaries": (5,), "pretrain.lr_values": ()}, "same length"),
    ({"pretrain.lr_boundaries": (5, 5), "pretrain.lr_values": (1e-3, 1e-4)}, "increasing"),
    ({"pretrain.lr_boundaries": (0,), "pretrain.lr_values": (1e-3,)}, "lr_boundaries"),
    ({"pretrain.learning_rate": float("nan")}, "positive numbers"),
    ({"pretrain.lr_boundaries": (5,), "pretrain.lr_values": (-1.0,)}, "positive numbers"),
])
def test_bad_schedules_are_named(overrides, message):
    with pytest.raises(ValueError, match=f"config.pretrain.*{message}|{message}.*config.pretrain"):
        train_state.learning_rate_schedule(make_config(**overrides), "pretrain")


@pytest.mark.parametrize(("clip", "grad", "expected"), [
    (1.0, [3.0, 4.0], [0.6, 0.8]),  # norm 5 -> rescaled to norm 1
    (1.0, [0.3, 0.4], [0.3, 0.4]),  # norm 0.5 -> untouched
    (None, [3.0, 4.0], [3.0, 4.0]),  # clipping off
])
def test_gradient_clipping_by_global_norm(clip, grad, expected):
    config = make_config(**{"optim.grad_clip_norm": clip, "pretrain.learning_rate": 1.0})
    state = train_state.TrainState.create(
        apply_fn=None, params={"a": jnp.zeros(1), "b": jnp.zeros(1)}, batch_stats={},
        tx=train_state.make_optimizer(config, "pretrain"),
    )
    # The norm is over the whole tree, not per leaf.
    state = state.apply_gradients(grads={"a": jnp.array(grad[:1]), "b": jnp.array(grad[1:])})
    np.testing.assert_allclose(
        np.concatenate([state.params["a"], state.params["b"]]), -np.array(expected), rtol=1e-6
    )
    assert float(train_state.learning_rate(state)) == 1.0  # found behind the clipping too


def test_config_dtype_is_the_compute_dtype():
    config = make_config(dtype="bfloat16")
    state = train_state.create_generator_state(config, jax.random.PRNGKey(0), "pretrain")
    assert state.apply_fn.__self__.dtype == jnp.bfloat16
    variables = (state.params, state.batch_stats)
    assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("antialias", [False, True])
def test_discriminator_state_follows_the_antialias_setting(antialias):
    config = make_config(**{"gan.discriminator_antialias": antialias})
    state = train_state.create_discriminator_state(config, jax.random.PRNGKey(0))
    assert state.apply_fn.__self__.antialias is antialias
    # Configs written before the setting existed get the paper's discriminator.
    del config.gan.discriminator_antialias
    state = train_state.create_discriminator_state(config, jax.random.PRNGKey(0))
    assert state.apply_fn.__self__.antialias is False


def test_adam_uses_the_configured_betas_and_eps():
    config = make_config(optimizer_name="adam", **{"optim.b1": 0.5, "optim.eps": 1e-3})
    tx = train_state.make_optimizer(config, "pretrain")
    reference = optax.adam(LEARNING_RATE, b1=0.5, b2=0.999, eps=1e-3)
    params, grads = {"w": jnp.zeros(2)}, {"w": jnp.array([1e-3, -2.0])}
    state, ref_state = tx.init(params), reference.init(params)
    for _ in range(3):
        updates, state = tx.update(grads, state)
        ref_updates, ref_state = reference.update(grads, ref_state)
        np.testing.assert_allclose(updates["w"], ref_updates["w"], rtol=2e-5)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"dtype": "float64"}, "config.dtype"),
    ({"optimizer_name": "rmsprop"}, "config.optimizer_name"),
    ({"crop_size": 15}, "config.crop_size"),
    ({"pretrain.lr_decay_step": 0}, "config.pretrain.lr_decay_step"),
])
def test_bad_config_fields_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        config = make_config(**overrides)
        train_state.create_generator_state(config, jax.random.PRNGKey(0), "pretrain")


def test_unknown_content_loss_is_named(batch, g_state):
    with pytest.raises(ValueError, match="content_loss"):
        train.pretrain_step(g_state, batch, jax.random.PRNGKey(1), None, content_loss="vgg33")
