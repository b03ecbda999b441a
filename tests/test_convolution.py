"""The CPU-friendly convolution: same forward, same gradients as `lax.conv_general_dilated`."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from srgan_jax import convolution, models

NHWC = ("NHWC", "HWIO", "NHWC")


def _inputs(shape, kernel, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    w = jnp.asarray(rng.standard_normal(kernel) * 0.1, jnp.float32)
    return x, w


def _loss(conv, strides, padding):
    # A non-linear loss, so that the output gradient is not a constant.
    def loss(x, w):
        y = conv(x, w, strides, padding, dimension_numbers=NHWC)
        return jnp.sum(jnp.sin(y) * jnp.arange(y.shape[-1], dtype=y.dtype))

    return loss


@pytest.mark.parametrize(
    "shape,kernel,strides,padding",
    [
        ((2, 9, 9, 8), (3, 3, 8, 16), (1, 1), "SAME"),  # a residual-block conv
        ((2, 10, 10, 8), (3, 3, 8, 16), (2, 2), "SAME"),  # a discriminator conv (stride 2)
        ((2, 9, 11, 8), (3, 3, 8, 16), (2, 2), "SAME"),  # odd sizes with stride 2
        ((1, 12, 12, 3), (9, 9, 3, 16), (1, 1), "SAME"),  # the generator's k9 head
        ((1, 12, 12, 16), (9, 9, 16, 3), (1, 1), "SAME"),  # the k9 tail: XLA's filter gradient
        ((2, 8, 8, 4), (3, 3, 4, 16), (1, 1), "VALID"),
        ((2, 8, 7, 4), (3, 2, 4, 16), (1, 2), ((2, 0), (1, 3))),  # explicit, asymmetric padding
    ],
)
def test_forward_and_gradients_equal_xla(shape, kernel, strides, padding):
    x, w = _inputs(shape, kernel)
    ours = jax.jit(jax.value_and_grad(_loss(convolution.conv_general_dilated, strides, padding),
                                      argnums=(0, 1)))
    xla = jax.jit(jax.value_and_grad(_loss(lax.conv_general_dilated, strides, padding),
                                     argnums=(0, 1)))
    (value, (dx, dw)), (ref_value, (ref_dx, ref_dw)) = ours(x, w), xla(x, w)
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, ref_dw, rtol=1e-4, atol=1e-4)


def test_filter_gradient_taps_against_float64_numpy():
    """The tap sum itself, against a float64 loop over pixels and taps."""
    x, w = _inputs((2, 6, 7, 3), (3, 3, 3, 4), seed=1)
    strides, pads = (2, 1), ((1, 1), (1, 1))
    y_shape = lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=NHWC).shape
    dy = np.random.default_rng(2).standard_normal(y_shape)
    dw = convolution.filter_gradient_taps(
        x, w, jnp.asarray(dy, jnp.float32), strides=strides, pads=pads
    )
    padded = np.pad(np.asarray(x, np.float64), ((0, 0), *pads, (0, 0)))
    expected = np.zeros(w.shape)
    for i in range(3):
        for j in range(3):
            for h in range(y_shape[1]):
                for v in range(y_shape[2]):
                    pixel = padded[:, h * strides[0] + i, v * strides[1] + j]  # [N, C_in]
                    expected[i, j] += pixel.T @ dy[:, h, v]
    np.testing.assert_allclose(dw, expected, rtol=1e-5, atol=1e-5)


def test_unsupported_convolutions_go_to_lax_unchanged():
    x, w = _inputs((1, 8, 8, 4), (3, 3, 2, 4))
    grouped = convolution.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=NHWC, feature_group_count=2
    )
    expected = lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=NHWC, feature_group_count=2
    )
    np.testing.assert_array_equal(grouped, expected)


def test_flax_conv_keeps_its_parameters_and_outputs():
    """`nn.Conv(conv_general_dilated=...)` has the parameters and outputs of a plain `nn.Conv`."""
    x = jnp.asarray(np.random.default_rng(3).random((2, 8, 8, 3)), jnp.float32)
    plain = nn.Conv(16, (3, 3))
    ours = nn.Conv(16, (3, 3), conv_general_dilated=convolution.conv_general_dilated)
    variables = plain.init(jax.random.key(0), x)
    assert jax.tree.structure(ours.init(jax.random.key(0), x)) == jax.tree.structure(variables)
    np.testing.assert_array_equal(ours.apply(variables, x), plain.apply(variables, x))


def test_generator_gradients_equal_those_of_plain_convolutions(monkeypatch):
    """The whole generator, trained one step: gradients as with XLA's convolution gradients."""
    model = models.Generator(num_blocks=1, channels=16, scale=2)
    lr = jnp.asarray(np.random.default_rng(4).random((2, 6, 6, 3)), jnp.float32)
    hr = jnp.asarray(np.random.default_rng(5).random((2, 12, 12, 3)), jnp.float32)
    variables = model.init(jax.random.key(0), lr)

    def grads():
        def loss(params):
            sr, _ = model.apply({**variables, "params": params}, lr, train=True,
                                mutable=["batch_stats"])
            return jnp.mean((sr - hr) ** 2)

        return jax.jit(jax.grad(loss))(variables["params"])

    ours = grads()
    jaxpr = str(jax.make_jaxpr(lambda v: model.apply(v, lr))(variables))
    assert "custom_vjp_call" in jaxpr  # the generator's convolutions take the custom gradient
    monkeypatch.setattr(models, "conv_general_dilated", lax.conv_general_dilated)
    plain = grads()
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6), ours, plain)
