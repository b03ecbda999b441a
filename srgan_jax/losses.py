"""SRGAN losses (Ledig et al. 2017, Sec. 2.2): pixel MSE, VGG content loss, adversarial losses
(the paper's, and the relativistic average one of ESRGAN as an option).

All losses are means over the batch and return float32 scalars, whatever the compute dtype of the
arrays they receive: mixed-precision training keeps its losses in full precision.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

VGG_FEATURE_SCALE = 1.0 / 12.75  # the paper rescales VGG feature maps by this before the MSE
ADVERSARIAL_WEIGHT = 1e-3


def mse(prediction: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
    """Mean squared error over every element, in float32."""
    diff = prediction.astype(jnp.float32) - target.astype(jnp.float32)
    return jnp.mean(jnp.square(diff))


def content_loss(
    features_fn: Callable[[jnp.ndarray], jnp.ndarray],
    sr: jnp.ndarray,
    hr: jnp.ndarray,
    feature_scale: float = VGG_FEATURE_SCALE,
) -> jnp.ndarray:
    """VGG loss: MSE between `feature_scale`-rescaled features of SR and HR images.

    `features_fn` maps images in [-1, 1] to a feature map (e.g. VGG19 phi_5_4 with frozen params).
    The HR features are a fixed target: no gradient flows into them.
    """
    sr_features = features_fn(sr).astype(jnp.float32) * feature_scale
    hr_features = jax.lax.stop_gradient(features_fn(hr).astype(jnp.float32) * feature_scale)
    return mse(sr_features, hr_features)


def total_variation(images: jnp.ndarray) -> jnp.ndarray:
    """Anisotropic total variation: per image, the sum of absolute differences between vertically
    and horizontally adjacent pixels (all channels), averaged over the batch; float32.

    The regulariser the paper adds to SRResNet-VGG22 (with weight 2e-8), as TensorFlow's
    `tf.image.total_variation` defines it.
    """
    x = images.astype(jnp.float32)
    vertical = jnp.abs(x[:, 1:] - x[:, :-1]).sum(axis=(1, 2, 3))
    horizontal = jnp.abs(x[:, :, 1:] - x[:, :, :-1]).sum(axis=(1, 2, 3))
    return jnp.mean(vertical + horizontal)


def discriminator_loss(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> jnp.ndarray:
    """Binary cross-entropy of D: real images labelled 1, generated ones 0 (from logits, stable).

    Returns the sum of the mean real and the mean fake term, the usual `BCE(D(hr), 1) +
    BCE(D(sr), 0)` of SRGAN implementations.
    """
    real = optax.sigmoid_binary_cross_entropy(real_logits.astype(jnp.float32), 1.0)
    fake = optax.sigmoid_binary_cross_entropy(fake_logits.astype(jnp.float32), 0.0)
    return jnp.mean(real) + jnp.mean(fake)


def generator_adversarial_loss(fake_logits: jnp.ndarray) -> jnp.ndarray:
    """Non-saturating generator loss `-log D(G(x))`, i.e. `softplus(-logit)` without overflow."""
    return jnp.mean(jax.nn.softplus(-fake_logits.astype(jnp.float32)))


def relativistic_discriminator_loss(
    real_logits: jnp.ndarray, fake_logits: jnp.ndarray, axis_name: str | None = None
) -> jnp.ndarray:
    """Relativistic average D loss (Jolicoeur-Martineau 2019, as ESRGAN uses it): D judges
    whether a real image is more realistic than the average generated one, and the reverse:
    `BCE(C(x_r) - E[C(x_f)], 1) + BCE(C(x_f) - E[C(x_r)], 0)`, the expectations over the global
    batch (averaged over `axis_name` under pmap). Not in the SRGAN paper.
    """
    real, fake = _relativistic_logits(real_logits, fake_logits, axis_name)
    return (jnp.mean(optax.sigmoid_binary_cross_entropy(real, 1.0))
            + jnp.mean(optax.sigmoid_binary_cross_entropy(fake, 0.0)))


def relativistic_generator_loss(
    real_logits: jnp.ndarray, fake_logits: jnp.ndarray, axis_name: str | None = None
) -> jnp.ndarray:
    """The generator's side of the relativistic average loss, with the labels swapped and the
    two terms averaged (ESRGAN): gradients reach G through the generated images' logits, in both
    terms. `real_logits` are constants for G."""
    real, fake = _relativistic_logits(real_logits, fake_logits, axis_name)
    return 0.5 * (jnp.mean(optax.sigmoid_binary_cross_entropy(real, 0.0))
                  + jnp.mean(optax.sigmoid_binary_cross_entropy(fake, 1.0)))


def _relativistic_logits(real_logits: jnp.ndarray, fake_logits: jnp.ndarray,
                         axis_name: str | None) -> tuple[jnp.ndarray, jnp.ndarray]:
    real, fake = real_logits.astype(jnp.float32), fake_logits.astype(jnp.float32)

    def batch_mean(x: jnp.ndarray) -> jnp.ndarray:
        mean = jnp.mean(x)
        return mean if axis_name is None else jax.lax.pmean(mean, axis_name)

    return real - batch_mean(fake), fake - batch_mean(real)


def perceptual_loss(
    content: jnp.ndarray,
    adversarial: jnp.ndarray,
    adversarial_weight: float = ADVERSARIAL_WEIGHT,
) -> jnp.ndarray:
    """The paper's perceptual loss (Eq. 3): `content + 1e-3 * adversarial`, weight configurable."""
    return content + adversarial_weight * adversarial
