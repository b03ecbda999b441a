"""The GAN phase's opt-in cures for the grid, each against an independent computation: spectral
normalisation against numpy's singular values, the relativistic losses against hand-computed
values, D's random shift against numpy slicing, and all of them on 8 devices against one."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from srgan_jax import losses
from srgan_jax.models import Discriminator
from srgan_jax.training import parallel, train_state
from srgan_jax.training import steps as train

SCALE, CROP, SHIFT = 2, 20, 4  # D sees 16x16 crops: the smallest it takes


def make_config(**gan) -> ml_collections.ConfigDict:
    phase = {"learning_rate": 1e-3, "lr_boundaries": (), "lr_values": (), "lr_decay_step": None,
             "decayed_learning_rate": 1e-4}
    return ml_collections.ConfigDict({
        "model": {"num_blocks": 1, "channels": 8, "scale": SCALE},
        "dtype": "float32", "crop_size": CROP, "batch_size": 16, "optimizer_name": "sgd",
        "optim": {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "grad_clip_norm": None},
        "pretrain": dict(phase, content_loss="mse"),
        "gan": dict(phase, content_loss="mse", adversarial_weight=1e-3, **gan),
    })


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_relativistic_losses_by_hand():
    real, fake = jnp.array([1.0, 2.0]), jnp.array([0.0, -1.0])
    # C(x_r) - E[C(x_f)] = [1.5, 2.5]; C(x_f) - E[C(x_r)] = [-1.5, -2.5]
    # BCE(x, 1) = softplus(-x), BCE(x, 0) = softplus(x)
    d = (softplus(-1.5) + softplus(-2.5)) / 2 + (softplus(-1.5) + softplus(-2.5)) / 2
    g = ((softplus(1.5) + softplus(2.5)) / 2 + (softplus(1.5) + softplus(2.5)) / 2) / 2
    assert float(losses.relativistic_discriminator_loss(real, fake)) == pytest.approx(d, rel=1e-6)
    assert float(losses.relativistic_generator_loss(real, fake)) == pytest.approx(g, rel=1e-6)
    # G's gradient flows through the generated logits of both terms; D's through both inputs.
    grad = jax.grad(lambda f: losses.relativistic_generator_loss(real, f))(fake)
    assert np.all(np.asarray(grad) < 0)  # raising a fake logit lowers G's loss


def test_relativistic_batch_means_cover_the_global_batch_under_pmap():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(8, 2)), rng.normal(size=(8, 2))
    for loss in (losses.relativistic_discriminator_loss, losses.relativistic_generator_loss):
        per_device = jax.pmap(lambda r, f, loss=loss: jax.lax.pmean(loss(r, f, "b"), "b"),
                              axis_name="b")(real, fake)
        whole = loss(jnp.asarray(real.ravel()), jnp.asarray(fake.ravel()))
        np.testing.assert_allclose(np.asarray(per_device), float(whole), rtol=1e-6)


def with_spectral_gap(kernel: np.ndarray, gap: float = 3.0) -> np.ndarray:
    """`kernel` (as the [-1, out] matrix spectral normalisation sees) with its largest singular
    value raised to `gap` times the second, so that power iteration converges in a few steps."""
    matrix = np.asarray(kernel, np.float64).reshape(-1, kernel.shape[-1])
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    if len(s) == 1:  # a single output: power iteration is exact at once
        return np.asarray(kernel)
    s[0] = gap * s[1]
    return ((u * s) @ vt).reshape(kernel.shape).astype(np.float32)


def test_spectral_power_iteration_finds_the_largest_singular_value():
    model = Discriminator(input_size=16, normalization="spectral")
    images = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    variables = model.init(jax.random.key(1), images)
    assert not any("BatchNorm" in name for name in variables["params"])
    params = {layer: {**p, "kernel": with_spectral_gap(p["kernel"])}
              for layer, p in variables["params"].items()}

    def iterate(_, stats):  # one training call: one power iteration per layer
        _, updates = model.apply({"params": params, "batch_stats": stats}, images, train=True,
                                 mutable=["batch_stats"])
        return updates["batch_stats"]

    # Error after k iterations ~ (sigma_2 / sigma_1)^(2k) = 9^-k: 30 are far below float32.
    stats = jax.jit(lambda s: jax.lax.fori_loop(0, 30, iterate, s))(variables["batch_stats"])
    for index, (layer, p) in enumerate(params.items()):
        kernel = np.asarray(p["kernel"], np.float64)
        largest = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
        sigma = float(stats[f"SpectralNorm_{index}"][f"{layer}/kernel/sigma"])
        assert sigma == pytest.approx(largest, rel=1e-5), layer


def test_spectral_discriminator_divides_each_weight_by_its_norm():
    model = Discriminator(input_size=16, normalization="spectral")
    images = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    variables = model.init(jax.random.key(1), images)
    logits = model.apply(variables, images, train=False)
    # Scaling every weight by 7 changes nothing: each layer sees W / sigma(W).
    scaled = jax.tree.map(lambda x: 7 * x if x.ndim > 1 else x, variables["params"])
    np.testing.assert_allclose(model.apply({**variables, "params": scaled}, images, train=False),
                               logits, rtol=1e-4, atol=1e-6)


def test_discriminator_view_crops_at_uniform_offsets():
    images = np.arange(4096 * 6 * 6, dtype=np.float32).reshape(4096, 6, 6, 1)
    crops = np.asarray(train.discriminator_view(jnp.asarray(images), jax.random.key(3), 3))
    assert crops.shape == (4096, 3, 3, 1)
    offsets = []
    for image, crop in zip(images, crops, strict=True):
        (y,), (x,) = np.nonzero(image[..., 0] == crop[0, 0, 0])
        np.testing.assert_array_equal(crop, image[y:y + 3, x:x + 3])
        offsets.append((y, x))
    counts = np.bincount([3 * y + x for y, x in offsets], minlength=9)
    assert counts.size == 9 and counts.min() > 4096 / 9 * 0.8  # every phase, about equally often
    assert train.discriminator_view(jnp.asarray(images), jax.random.key(3), 0) is not None
    np.testing.assert_array_equal(
        train.discriminator_view(jnp.asarray(images), jax.random.key(3), 0), images)


def test_discriminator_view_under_pmap_is_the_global_view():
    images = jnp.arange(16 * 8 * 8, dtype=jnp.float32).reshape(16, 8, 8, 1)
    whole = train.discriminator_view(images, jax.random.key(5), 4)
    sharded = jax.pmap(lambda x: train.discriminator_view(x, jax.random.key(5), 4, "b"),
                       axis_name="b")(images.reshape(8, 2, 8, 8, 1))
    np.testing.assert_array_equal(np.asarray(sharded).reshape(whole.shape), whole)


def test_discriminator_state_follows_the_options():
    config = make_config(discriminator_random_shift=SHIFT, discriminator_normalization="spectral",
                         discriminator_lr_scale=0.25)
    d = train_state.create_discriminator_state(config, jax.random.key(0))
    model = d.apply_fn.__self__
    assert (model.input_size, model.normalization) == (CROP - SHIFT, "spectral")
    g = train_state.create_generator_state(config, jax.random.key(0), "gan")
    grads = jax.tree.map(jnp.ones_like, d.params)
    stepped = d.apply_gradients(grads=grads)
    leaf = jax.tree.leaves(jax.tree.map(lambda a, b: a - b, stepped.params, d.params))[0]
    np.testing.assert_allclose(leaf, -0.25 * 1e-3, rtol=1e-6)  # SGD: lr x scale
    assert float(train_state.learning_rate(g)) == pytest.approx(1e-3)


def assert_same_changes(actual, expected, start, rtol=2e-3):
    """Every leaf moved from `start` as in `expected`, to `rtol` of its largest change. Leaves
    the losses cannot move (the last bias under the relativistic loss, which shifts real and
    generated logits alike) move by float32 noise only, up to 1e-7 (real changes here: > 1e-5)."""
    leaves = [jax.tree_util.tree_flatten_with_path(t)[0] for t in (actual, expected, start)]
    for (path, a), (_, e), (_, s) in zip(*leaves, strict=True):
        a, e, s = (np.asarray(x, np.float64) for x in (a, e, s))
        change = e - s
        np.testing.assert_allclose(a - s, change, rtol=rtol,
                                   atol=rtol * np.abs(change).max() + 1e-7,
                                   err_msg=jax.tree_util.keystr(path))


def gan_run(config: ml_collections.ConfigDict, mode: str, steps: int = 2):
    """Host states and metrics after `steps` GAN steps of one global batch in `mode`."""
    par = parallel.Parallel.create(mode, config.batch_size)
    keys = jax.random.split(jax.random.key(0), 2)
    g = train_state.create_generator_state(config, keys[0], "gan", par.bn_axis_name)
    d = train_state.create_discriminator_state(config, keys[1], par.bn_axis_name)
    init = jax.device_get({"g": g, "d": d})
    rng = np.random.default_rng(0)
    batch = {"lr": rng.uniform(0, 1, (16, CROP // SCALE, CROP // SCALE, 3)).astype(np.float32),
             "hr": rng.uniform(-1, 1, (16, CROP, CROP, 3)).astype(np.float32)}
    if par.layout == "pmap":
        batch = {k: v.reshape(8, 2, *v.shape[1:]) for k, v in batch.items()}
    gan = par.compile(train.gan_step, donate_states=2, content_loss="mse", adversarial_weight=0.5,
                      adversarial_loss=config.gan.adversarial_loss,
                      discriminator_shift=config.gan.discriminator_random_shift)
    g, d, batch = par.put_state(g), par.put_state(d), par.put_batch(batch)
    for step in range(steps):
        key = par.put_state(jax.random.key_data(jax.random.key(step)))
        g, d, metrics = gan(g, d, batch, key, None)
    return init, par.get_state({"g": g, "d": d}), jax.device_get(metrics)


@pytest.mark.parametrize("normalization", ["batch", "spectral"])
def test_options_train_on_eight_devices_as_on_one(normalization):
    # D's rate x50: spectral normalisation keeps its gradients small, and changes far above
    # float32 noise make the comparison sharp.
    config = make_config(adversarial_loss="relativistic", discriminator_random_shift=SHIFT,
                         discriminator_normalization=normalization, discriminator_lr_scale=50.0)
    init, one, one_metrics = gan_run(config, "none")
    _, eight, eight_metrics = gan_run(config, "pmap")
    assert_same_changes(eight, one, init)
    np.testing.assert_allclose(np.asarray(eight_metrics["d_loss"]).mean(),
                               one_metrics["d_loss"], rtol=1e-4)
    first_kernel = one["d"].params["Conv_0"]["kernel"] - init["d"].params["Conv_0"]["kernel"]
    assert np.abs(first_kernel).max() > 1e-5  # D trained: not a trivially equal pair of runs
