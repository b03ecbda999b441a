"""Generator / discriminator: shapes, exact parameter counts, pixel shuffle order, BN and dtypes."""
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax import models


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def conv(k: int, cin: int, cout: int, bias: bool) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def expected_generator_params(blocks: int, c: int, scale: int) -> int:
    """Counted by hand from the paper's layer list (Fig. 4)."""
    bn = 2 * c  # scale and shift
    prelu = c  # one slope per channel
    head = conv(9, 3, c, True) + prelu
    residual = 2 * (conv(3, c, c, False) + bn) + prelu
    body_end = conv(3, c, c, False) + bn
    upsample = conv(3, c, 4 * c, True) + prelu  # PReLU acts after the shuffle: c channels
    tail = conv(9, c, 3, True)
    return head + blocks * residual + body_end + int(np.log2(scale)) * upsample + tail


def expected_discriminator_params(size: int) -> int:
    total, cin = conv(3, 3, 64, True), 64
    for cout, stride in [(64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2)]:
        total += conv(3, cin, cout, False) + 2 * cout
        cin = cout
        size = -(-size // stride)
    return total + (size * size * 512 * 1024 + 1024) + (1024 + 1)


def init(module, shape):
    return module.init(jax.random.key(0), jnp.zeros(shape, jnp.float32))


def test_paper_generator_parameter_count():
    variables = init(models.Generator(), (1, 24, 24, 3))
    assert count(variables["params"]) == expected_generator_params(16, 64, 4) == 1_548_547


@pytest.mark.parametrize("blocks,channels,scale", [(2, 16, 2), (3, 8, 8), (1, 32, 4)])
def test_generator_parameter_count_variants(blocks, channels, scale):
    variables = init(models.Generator(blocks, channels, scale), (1, 8, 8, 3))
    assert count(variables["params"]) == expected_generator_params(blocks, channels, scale)


@pytest.mark.parametrize("size", [96, 32])
def test_discriminator_parameter_count(size):
    variables = init(models.Discriminator(input_size=size), (1, size, size, 3))
    assert count(variables["params"]) == expected_discriminator_params(size)
    if size == 96:
        assert count(variables["params"]) == 23_563_649


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_generator_output_shapes(scale):
    model = models.Generator(num_blocks=1, channels=8, scale=scale)
    variables = init(model, (1, 8, 8, 3))
    for h, w in [(24, 24), (17, 31), (1, 1), (5, 2)]:
        out = model.apply(variables, jnp.zeros((2, h, w, 3)))
        assert out.shape == (2, h * scale, w * scale, 3)
        assert out.dtype == jnp.float32


def test_generator_rejects_bad_scale_and_shape():
    with pytest.raises(ValueError, match="scale must be 2, 4 or 8"):
        init(models.Generator(scale=3), (1, 8, 8, 3))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        init(models.Generator(), (8, 8, 3))


def test_generator_output_is_not_clamped():
    model = models.Generator(num_blocks=1, channels=8)
    variables = init(model, (1, 8, 8, 3))
    params = jax.tree.map(lambda x: x, variables["params"])
    tail = sorted(k for k in params if k.startswith("Conv_"))[-1]
    params[tail]["bias"] = jnp.full((3,), 5.0)
    out = model.apply({**variables, "params": params}, jnp.zeros((1, 4, 4, 3)))
    assert float(out.min()) > 1.0  # a clamp or tanh would cap it at 1


def test_discriminator_logits_and_size_error():
    model = models.Discriminator(input_size=32)
    variables = init(model, (1, 32, 32, 3))
    assert model.apply(variables, jnp.zeros((5, 32, 32, 3))).shape == (5,)
    with pytest.raises(ValueError, match=r"\[N, 32, 32, 3\].*input_size=32.*\(5, 48, 48, 3\)"):
        model.apply(variables, jnp.zeros((5, 48, 48, 3)))


def numpy_binomial_blur(x: np.ndarray) -> np.ndarray:
    """A direct float64 3x3 convolution with [1,2,1]^T [1,2,1] / 16, reflect-padded."""
    kernel = np.outer([1, 2, 1], [1, 2, 1]) / 16
    padded = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    h, w = x.shape[1:3]
    return sum(kernel[i, j] * padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3))


@pytest.mark.parametrize("shape", [(2, 9, 7, 3), (1, 2, 2, 5), (3, 16, 16, 1)])
def test_binomial_blur_against_numpy(shape):
    x = np.random.default_rng(0).normal(size=shape)
    out = models.binomial_blur(jnp.asarray(x, jnp.float32))
    assert out.shape == shape
    np.testing.assert_allclose(np.asarray(out), numpy_binomial_blur(x), atol=1e-6)


def test_binomial_blur_removes_the_checkerboard_a_stride_2_conv_aliases():
    h, w = np.indices((12, 10))
    checker = ((-1.0) ** (h + w))[None, :, :, None]
    np.testing.assert_allclose(np.asarray(models.binomial_blur(jnp.asarray(checker))), 0,
                               atol=1e-6)


def convolution_calls(model, variables, images):
    """(strides, input, output) of every convolution `model` applies, in order."""
    calls = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if isinstance(context.module, nn.Conv) and context.method_name == "__call__":
            strides = context.module.strides
            calls.append((strides if isinstance(strides, tuple) else (strides, strides), args[0],
                          out))
        return out

    with nn.intercept_methods(record):
        model.apply(variables, images)
    return calls


def test_antialiased_discriminator_blurs_exactly_before_each_stride_2_convolution():
    size, shape = 32, (2, 32, 32, 3)
    stock = models.Discriminator(input_size=size)
    smooth = models.Discriminator(input_size=size, antialias=True)
    variables = init(stock, shape)
    assert jax.tree.map(jnp.shape, init(smooth, shape)) == jax.tree.map(jnp.shape, variables)
    images = jax.random.normal(jax.random.key(1), shape)
    assert not np.allclose(smooth.apply(variables, images), stock.apply(variables, images))

    calls = convolution_calls(smooth, variables, images)
    assert [strides for strides, _, _ in calls] == [(1, 1)] + [
        (stride, stride) for _, stride in models.DISCRIMINATOR_BLOCKS]
    first_activation = np.asarray(nn.leaky_relu(calls[0][2], models.LEAKY_SLOPE))
    np.testing.assert_allclose(np.asarray(calls[1][1]), numpy_binomial_blur(first_activation),
                               atol=1e-5)
    stock_calls = convolution_calls(stock, variables, images)
    np.testing.assert_allclose(np.asarray(stock_calls[1][1]), first_activation, atol=1e-6)
    # Stride-1 convolutions read the previous activation unblurred: their input keeps the
    # Nyquist (checkerboard) content the blur would remove.
    for strides, inputs, _ in calls[2::2]:
        assert strides == (1, 1)
        blurred = numpy_binomial_blur(np.asarray(inputs))
        assert np.abs(np.asarray(inputs) - blurred).max() > 1e-3


def numpy_depth_to_space(x: np.ndarray, r: int) -> np.ndarray:
    n, h, w, ch = x.shape
    c = ch // (r * r)
    out = np.zeros((n, h * r, w * r, c), x.dtype)
    for y, xx, i, j, k in itertools.product(range(h), range(w), range(r), range(r), range(c)):
        out[:, y * r + i, xx * r + j, k] = x[:, y, xx, (i * r + j) * c + k]
    return out


def numpy_torch_pixel_shuffle(x: np.ndarray, r: int) -> np.ndarray:
    """PyTorch's nn.PixelShuffle written out, in NHWC: input channel k*r*r + i*r + j."""
    n, h, w, ch = x.shape
    c = ch // (r * r)
    out = np.zeros((n, h * r, w * r, c), x.dtype)
    for y, xx, i, j, k in itertools.product(range(h), range(w), range(r), range(r), range(c)):
        out[:, y * r + i, xx * r + j, k] = x[:, y, xx, k * r * r + i * r + j]
    return out


@pytest.mark.parametrize("r,c", [(2, 3), (3, 2), (2, 1)])
def test_pixel_shuffle_matches_numpy_and_torch_order(r, c):
    x = np.random.default_rng(0).normal(size=(2, 3, 4, c * r * r)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(models.pixel_shuffle(jnp.asarray(x), r)),
                                  numpy_depth_to_space(x, r))
    perm = models.pytorch_to_depth_to_space_order(c * r * r, r)
    np.testing.assert_array_equal(np.asarray(models.pixel_shuffle(jnp.asarray(x[..., perm]), r)),
                                  numpy_torch_pixel_shuffle(x, r))


def test_pixel_shuffle_rejects_indivisible_channels():
    with pytest.raises(ValueError, match="not divisible"):
        models.pixel_shuffle(jnp.zeros((1, 2, 2, 6)), 2)


def test_prelu_has_per_channel_slopes_starting_at_a_quarter():
    layer = models.PReLU()
    x = jnp.array([[-4.0, 2.0, -1.0]])
    variables = layer.init(jax.random.key(0), x)
    np.testing.assert_array_equal(variables["params"]["slope"], np.full(3, 0.25, np.float32))
    slopes = jnp.array([0.5, 0.1, 2.0])
    np.testing.assert_allclose(layer.apply({"params": {"slope": slopes}}, x), [[-2.0, 2.0, -2.0]])


def test_batchnorm_train_uses_batch_statistics_and_eval_uses_running_ones():
    model = models.Generator(num_blocks=1, channels=8, scale=2)
    variables = init(model, (1, 6, 6, 3))
    rng = np.random.default_rng(0)
    batch = jnp.asarray(rng.uniform(size=(4, 6, 6, 3)), jnp.float32)
    other = batch.at[1:].set(jnp.asarray(rng.uniform(size=(3, 6, 6, 3)) * 3.0))

    train_a, updates = model.apply(variables, batch, train=True, mutable=["batch_stats"])
    train_b, _ = model.apply(variables, other, train=True, mutable=["batch_stats"])
    assert not np.allclose(train_a[0], train_b[0])  # sample 0 depends on its batch mates
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), updates["batch_stats"],
                           variables["batch_stats"])
    assert all(jax.tree.leaves(changed))

    eval_a = model.apply(variables, batch)
    eval_b = model.apply(variables, other)
    np.testing.assert_allclose(eval_a[0], eval_b[0], rtol=1e-6)  # independent of batch mates
    mean = jax.tree.leaves(updates["batch_stats"])[0]
    assert mean.dtype == jnp.float32


def test_bfloat16_compute_keeps_float32_params_and_matches_float32():
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(2, 8, 8, 3)), jnp.float32)
    f32 = models.Generator(num_blocks=2, channels=16)
    bf16 = models.Generator(num_blocks=2, channels=16, dtype=jnp.bfloat16)
    variables = init(f32, (1, 8, 8, 3))
    bf16_vars = init(bf16, (1, 8, 8, 3))
    assert {x.dtype for x in jax.tree.leaves(bf16_vars)} == {jnp.dtype(jnp.float32)}
    out32, out16 = f32.apply(variables, x), bf16.apply(variables, x)
    assert out16.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(out32 - out16))) < 0.05 * float(jnp.max(jnp.abs(out32)))
    assert not np.array_equal(out32, out16)  # really computed in bf16

    d16 = models.Discriminator(input_size=32, dtype=jnp.bfloat16)
    d_vars = init(d16, (1, 32, 32, 3))
    assert {x.dtype for x in jax.tree.leaves(d_vars)} == {jnp.dtype(jnp.float32)}
    assert d16.apply(d_vars, jnp.zeros((2, 32, 32, 3))).dtype == jnp.float32


def test_icnr_initialised_subpixel_convolution_starts_free_of_checkerboard():
    """conv + pixel shuffle at ICNR init = a conv followed by nearest-neighbour upsampling."""
    conv = nn.Conv(4 * 5, (3, 3), kernel_init=models.icnr(nn.initializers.lecun_normal()))
    x = jnp.asarray(np.random.default_rng(0).random((2, 6, 7, 3)), jnp.float32)
    variables = conv.init(jax.random.key(0), x)
    y = np.asarray(models.pixel_shuffle(conv.apply(variables, x), 2))
    blocks = y.reshape(2, 6, 2, 7, 2, 5)
    # The four sub-pixel copies are the same kernel, so equal up to XLA's reduction order (1 ulp
    # on some jax/flax versions); a checkerboard differs by the kernels' own scale, ~1e-1.
    np.testing.assert_allclose(blocks, np.broadcast_to(blocks[:, :, :1, :, :1], blocks.shape),
                               rtol=1e-5, atol=1e-6)
    assert np.std(y) > 0.1  # not trivially uniform


def test_generator_upsampling_kernels_use_icnr():
    params = init(models.Generator(num_blocks=1, channels=8, scale=4), (1, 8, 8, 3))["params"]
    for name in ("Conv_2", "Conv_3"):  # the two x2 stages
        kernel = np.asarray(params[name]["kernel"])
        assert kernel.shape == (3, 3, 8, 32)
        for k in range(1, 4):
            np.testing.assert_array_equal(kernel[..., 8 * k : 8 * (k + 1)], kernel[..., :8])
    body_end = params["Conv_1"]["kernel"]  # an ordinary convolution: no repeats
    assert not np.array_equal(body_end[..., :1], body_end[..., 1:2])


# The paper's layer order written out with lax primitives and its constants as literals (Ledig et
# al. 2017, Fig. 4: LeakyReLU alpha = 0.2, PReLU, BN, k/n/s of every convolution), in inference
# mode with random running statistics, against the Flax modules.
PAPER_LEAKY_SLOPE = 0.2


def _conv(x, params, stride=1):
    y = jax.lax.conv_general_dilated(x, params["kernel"], (stride, stride), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + params["bias"] if "bias" in params else y


def _bn(x, params, stats):
    return (x - stats["mean"]) / jnp.sqrt(stats["var"] + 1e-5) * params["scale"] + params["bias"]


def _prelu(x, params):
    return jnp.where(x >= 0, x, params["slope"] * x)


def _randomised(variables, seed):
    """Random BN statistics, scales and offsets, and PReLU slopes: none at their init values."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map_with_path(
        lambda path, x: x * rng.uniform(0.5, 1.5, x.shape) + rng.uniform(-0.2, 0.2, x.shape)
        if any(getattr(k, "key", "") in ("mean", "var", "scale", "slope") for k in path)
        or "BatchNorm" in jax.tree_util.keystr(path) else x, variables)


def test_generator_is_the_papers_layer_sequence():
    model = models.Generator(num_blocks=2, channels=8, scale=4)
    variables = _randomised(init(model, (1, 6, 5, 3)), seed=0)
    p, s = variables["params"], variables["batch_stats"]
    lr = jax.random.uniform(jax.random.key(1), (2, 6, 5, 3))
    x = _prelu(_conv(lr, p["Conv_0"]), p["PReLU_0"])  # k9n64s1, PReLU
    skip = x
    for b in range(2):  # residual blocks: k3n64s1, BN, PReLU, k3n64s1, BN, elementwise sum
        block, stats = p[f"ResidualBlock_{b}"], s[f"ResidualBlock_{b}"]
        y = _prelu(_bn(_conv(x, block["Conv_0"]), block["BatchNorm_0"], stats["BatchNorm_0"]),
                   block["PReLU_0"])
        x = x + _bn(_conv(y, block["Conv_1"]), block["BatchNorm_1"], stats["BatchNorm_1"])
    x = _bn(_conv(x, p["Conv_1"]), p["BatchNorm_0"], s["BatchNorm_0"]) + skip  # k3n64s1, BN, sum
    for stage in range(2):  # k3n256s1, PixelShuffler x2, PReLU
        y = np.asarray(_conv(x, p[f"Conv_{2 + stage}"]))
        n, h, w, c = y.shape
        y = y.reshape(n, h, w, 2, 2, c // 4).transpose(0, 1, 3, 2, 4, 5).reshape(
            n, 2 * h, 2 * w, c // 4)  # depth_to_space
        x = _prelu(jnp.asarray(y), p[f"PReLU_{1 + stage}"])
    expected = _conv(x, p["Conv_4"])  # k9n3s1
    actual = model.apply(variables, lr, train=False)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    assert [k[0] for k in (p["Conv_0"]["kernel"].shape, p["Conv_4"]["kernel"].shape)] == [9, 9]


def test_discriminator_is_the_papers_layer_sequence():
    model = models.Discriminator(input_size=32)
    variables = _randomised(init(model, (1, 32, 32, 3)), seed=2)
    p, s = variables["params"], variables["batch_stats"]
    images = jax.random.uniform(jax.random.key(3), (2, 32, 32, 3), minval=-1.0, maxval=1.0)
    leaky = lambda x: jnp.where(x >= 0, x, PAPER_LEAKY_SLOPE * x)  # noqa: E731
    x = leaky(_conv(images, p["Conv_0"]))  # k3n64s1, Leaky ReLU (no BN)
    layers = [(64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2)]  # n, s
    for i, (features, stride) in enumerate(layers):
        assert p[f"Conv_{i + 1}"]["kernel"].shape[-1] == features
        x = leaky(_bn(_conv(x, p[f"Conv_{i + 1}"], stride), p[f"BatchNorm_{i}"],
                      s[f"BatchNorm_{i}"]))
    x = leaky(x.reshape(2, -1) @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])  # Dense (1024)
    logit = x @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]  # Dense (1), sigmoid in the loss
    assert p["Dense_0"]["kernel"].shape[-1] == 1024
    np.testing.assert_allclose(model.apply(variables, images, train=False), logit[:, 0],
                               rtol=1e-4, atol=1e-5)
