"""Losses against float64 numpy on known inputs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax import losses

rng = np.random.default_rng(0)


def sigmoid64(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def test_mse_matches_numpy_and_is_float32_for_bf16_inputs():
    a, b = rng.normal(size=(2, 5, 4, 3)), rng.normal(size=(2, 5, 4, 3))
    np.testing.assert_allclose(losses.mse(jnp.asarray(a), jnp.asarray(b)), np.mean((a - b) ** 2),
                               rtol=1e-6)
    out = losses.mse(jnp.asarray(a, jnp.bfloat16), jnp.asarray(b, jnp.bfloat16))
    assert out.dtype == jnp.float32


def test_content_loss_scales_features_and_stops_hr_gradient():
    weights = rng.normal(size=(3, 7))
    features_fn = lambda x: jnp.tanh(x @ jnp.asarray(weights, jnp.float32))  # noqa: E731
    sr, hr = rng.uniform(-1, 1, size=(2, 4, 4, 3)), rng.uniform(-1, 1, size=(2, 4, 4, 3))
    expected = np.mean(((np.tanh(sr @ weights) - np.tanh(hr @ weights)) / 12.75) ** 2)
    got = losses.content_loss(features_fn, jnp.asarray(sr), jnp.asarray(hr))
    np.testing.assert_allclose(got, expected, rtol=1e-5)

    grad_hr = jax.grad(lambda h: losses.content_loss(features_fn, jnp.asarray(sr), h))(
        jnp.asarray(hr, jnp.float32))
    assert not np.any(grad_hr)
    grad_sr = jax.grad(lambda s: losses.content_loss(features_fn, s, jnp.asarray(hr)))(
        jnp.asarray(sr, jnp.float32))
    assert np.any(grad_sr)


def test_discriminator_loss_is_binary_cross_entropy():
    real, fake = rng.normal(size=8) * 3, rng.normal(size=8) * 3
    expected = -np.mean(np.log(sigmoid64(real))) - np.mean(np.log(1 - sigmoid64(fake)))
    np.testing.assert_allclose(losses.discriminator_loss(jnp.asarray(real), jnp.asarray(fake)),
                               expected, rtol=1e-5)


def test_generator_adversarial_loss_is_minus_log_d_and_stable():
    fake = rng.normal(size=8) * 3
    np.testing.assert_allclose(losses.generator_adversarial_loss(jnp.asarray(fake)),
                               -np.mean(np.log(sigmoid64(fake))), rtol=1e-5)
    # Far-saturated logits: -log(sigmoid(-200)) = 200 exactly, where a naive log(sigmoid) is inf.
    extreme = jnp.asarray([-200.0, 200.0], jnp.float32)
    np.testing.assert_allclose(losses.generator_adversarial_loss(extreme), 100.0, rtol=1e-6)
    grad = jax.grad(losses.generator_adversarial_loss)(extreme)
    assert np.all(np.isfinite(grad)) and grad[0] == pytest.approx(-0.5)
    np.testing.assert_allclose(
        losses.discriminator_loss(jnp.asarray([200.0]), jnp.asarray([-200.0])), 0.0, atol=1e-6)


def test_perceptual_loss_weights_adversarial_term():
    assert float(losses.perceptual_loss(jnp.float32(2.0), jnp.float32(3.0))) == pytest.approx(
        2.003)
    assert float(losses.perceptual_loss(jnp.float32(2.0), jnp.float32(3.0), 0.5)) == 3.5
