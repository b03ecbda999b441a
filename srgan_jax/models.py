"""SRResNet generator and SRGAN discriminator (Ledig et al. 2017, Fig. 4), in Flax linen.

Both models are pure: `init` gives `{'params', 'batch_stats'}` and `apply(..., train=True,
mutable=['batch_stats'])` returns the output and the updated statistics. Images are NHWC. The
generator maps LR in [0, 1] to SR in [-1, 1]; the discriminator maps HR-range images to one logit.

Convolutions directly followed by BatchNorm carry no bias (BN's shift cancels it); every other
convolution has one. This is the usual reading of the paper and matches the PyTorch peer.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

Dtype = Any

BN_MOMENTUM = 0.9  # running-average decay, the same as PyTorch's momentum=0.1
BN_EPSILON = 1e-5
LEAKY_SLOPE = 0.2
DISCRIMINATOR_BLOCKS = ((64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2))
DISCRIMINATOR_NORMALIZATIONS = ("batch", "spectral")
UPSAMPLERS = ("pixel_shuffle", "resize_conv")


def pixel_shuffle(x: jnp.ndarray, factor: int) -> jnp.ndarray:
    """Rearranges [N, H, W, C*r*r] into [N, H*r, W*r, C] (sub-pixel convolution, Shi et al. 2016).

    Channel order is TensorFlow's `depth_to_space` (r1, r2, c): output pixel (h*r + i, w*r + j, c)
    is input channel (i*r + j)*C + c. PyTorch's `nn.PixelShuffle` reads channel c*r*r + i*r + j
    instead; use `pytorch_to_depth_to_space_order` to convert a PyTorch conv's output channels.
    """
    n, h, w, channels = x.shape
    if channels % (factor * factor):
        raise ValueError(f"pixel_shuffle: {channels} channels are not divisible by {factor}^2")
    c = channels // (factor * factor)
    x = x.reshape(n, h, w, factor, factor, c)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h * factor, w * factor, c)


def binomial_blur(x: jnp.ndarray) -> jnp.ndarray:
    """Blurs each channel of [N, H, W, C] with the 3x3 binomial filter [1, 2, 1]^T [1, 2, 1] / 16.

    Reflect padding keeps the size. Written as shifted sums (separable), which XLA:CPU runs far
    faster than the equivalent depthwise convolution and its gradient.
    """
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    x = (x[:, :-2] + 2 * x[:, 1:-1] + x[:, 2:]) * 0.25
    return (x[:, :, :-2] + 2 * x[:, :, 1:-1] + x[:, :, 2:]) * 0.25


def pytorch_to_depth_to_space_order(channels: int, factor: int) -> np.ndarray:
    """Index `idx` with `kernel_ours = kernel_torch[..., idx]` for the conv before a shuffle.

    Our channel (i*r + j)*C + c must hold PyTorch's channel c*r*r + i*r + j, so that both models
    put the same value at each output pixel.
    """
    c = channels // (factor * factor)
    ij, cc = np.divmod(np.arange(channels), c)
    return cc * factor * factor + ij


def icnr(init: nn.initializers.Initializer, factor: int = 2) -> nn.initializers.Initializer:
    """ICNR (Aitken et al. 2017): a sub-pixel convolution initialised free of checkerboard.

    `init` draws the kernel of a convolution with `channels / factor**2` outputs, which is repeated
    for each of the factor**2 sub-pixel positions, so that after `pixel_shuffle` the initial
    output is that convolution followed by nearest-neighbour upsampling: every factor x factor
    block starts uniform. (With `pixel_shuffle`'s channel order, channel (i*r + j)*C + c is
    position (i, j) of output channel c, hence a tile along the channel axis.)
    """

    def initializer(key: Any, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jnp.ndarray:
        if shape[-1] % (factor * factor):
            raise ValueError(f"icnr: {shape[-1]} output channels are not divisible by {factor}^2")
        base = init(key, (*shape[:-1], shape[-1] // (factor * factor)), dtype)
        return jnp.tile(base, (1,) * (len(shape) - 1) + (factor * factor,))

    return initializer


def batch_norm(
    train: bool, dtype: Dtype, param_dtype: Dtype, axis_name: str | None
) -> Callable[..., nn.Module]:
    """BatchNorm factory shared by both models: batch statistics when training, running ones not."""
    return functools.partial(
        nn.BatchNorm,
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        dtype=dtype,
        param_dtype=param_dtype,
        axis_name=axis_name,
    )


def _conv_factory(dtype: Dtype, param_dtype: Dtype) -> Callable[..., nn.Module]:
    """`nn.Conv` computing in `dtype` with parameters in `param_dtype`."""
    return functools.partial(nn.Conv, dtype=dtype, param_dtype=param_dtype)


class PReLU(nn.Module):
    """Parametric ReLU with one learned slope per channel, initialised to 0.25 (He et al. 2015).

    flax's `nn.PReLU` has a single scalar slope starting at 0.01, which is not the paper's layer.
    """

    init_slope: float = 0.25
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        slope = self.param(
            "slope", nn.initializers.constant(self.init_slope), (x.shape[-1],), self.param_dtype
        )
        return jnp.where(x >= 0, x, slope.astype(x.dtype) * x)


class ResidualBlock(nn.Module):
    """k3n64s1 -> BN -> PReLU -> k3n64s1 -> BN, plus the identity (`norm=None`: no BN, the
    convolutions carry biases instead)."""

    conv: Callable[..., nn.Module]
    norm: Callable[..., nn.Module] | None
    act: Callable[..., nn.Module]

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        channels = x.shape[-1]
        y = _conv_norm(self.conv, self.norm, channels, x)
        y = self.act()(y)
        return x + _conv_norm(self.conv, self.norm, channels, y)


def _conv_norm(conv: Callable[..., nn.Module], norm: Callable[..., nn.Module] | None,
               channels: int, x: jnp.ndarray) -> jnp.ndarray:
    """k3 convolution then BatchNorm (the conv without bias: BN's shift replaces it), or, with
    `norm=None`, the convolution with its bias alone: the form BN folds into."""
    if norm is None:
        return conv(channels, (3, 3))(x)
    return norm()(conv(channels, (3, 3), use_bias=False)(x))


class Generator(nn.Module):
    """SRResNet: the SRGAN generator, `scale`x upscaling of LR in [0, 1] to SR in [-1, 1].

    Attributes:
      num_blocks: residual blocks B (16 in the paper).
      channels: feature channels (64 in the paper).
      scale: upscale factor, a power of two (2, 4 or 8); one [conv, shuffle x2, PReLU] per doubling.
      dtype: computation dtype (e.g. bfloat16); BN statistics and the output stay float32.
      param_dtype: parameter dtype.
      bn_axis_name: pmap/shard_map axis over which BN averages batch statistics (cross-replica BN).
      batch_norm: False builds the generator without BatchNorm, its convolutions with biases: the
        form `fold_batch_norm` turns a trained one into (not in the paper).
      upsampler: 'pixel_shuffle' (the paper's sub-pixel convolution, k3n256 then shuffle) or
        'resize_conv' (not in the paper; Odena et al. 2016, as ESRGAN): nearest-neighbour x2,
        then k3n64 at the new resolution. Each output pixel of a sub-pixel convolution has
        weights of its own, so a fixed 2x2 pattern costs it nothing; after a nearest-neighbour
        resize one kernel serves every output pixel.
    """

    num_blocks: int = 16
    channels: int = 64
    scale: int = 4
    batch_norm: bool = True
    upsampler: str = "pixel_shuffle"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, lr: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        if self.scale not in (2, 4, 8):
            raise ValueError(f"Generator.scale must be 2, 4 or 8, got {self.scale}")
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(f"Generator.upsampler must be one of {UPSAMPLERS}, "
                             f"got {self.upsampler!r}")
        if lr.ndim != 4 or lr.shape[-1] != 3:
            raise ValueError(f"Generator expects [N, H, W, 3] LR images, got shape {lr.shape}")
        conv = _conv_factory(self.dtype, self.param_dtype)
        norm = (batch_norm(train, self.dtype, self.param_dtype, self.bn_axis_name)
                if self.batch_norm else None)
        act = functools.partial(PReLU, param_dtype=self.param_dtype)

        x = lr.astype(self.dtype)
        x = act()(conv(self.channels, (9, 9))(x))
        skip = x
        for _ in range(self.num_blocks):
            x = ResidualBlock(conv=conv, norm=norm, act=act)(x)
        x = _conv_norm(conv, norm, self.channels, x) + skip
        for _ in range(int(math.log2(self.scale))):
            if self.upsampler == "resize_conv":
                x = conv(self.channels, (3, 3))(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))
            else:
                x = conv(self.channels * 4, (3, 3),
                         kernel_init=icnr(nn.initializers.lecun_normal()))(x)
                x = pixel_shuffle(x, 2)
            x = act()(x)
        x = conv(3, (9, 9))(x)
        return x.astype(jnp.float32)


class Discriminator(nn.Module):
    """SRGAN discriminator: 8 conv layers, Dense 1024, Dense 1; returns one logit per image.

    The dense layer fixes the input size: `input_size`x`input_size` (96 in the paper, giving a
    6x6x512 feature map). Other sizes get an error naming the expected one.

    `antialias=True` (not in the paper; Zhang 2019, "Making Convolutional Networks Shift-Invariant
    Again") blurs before each stride-2 convolution, removing their aliasing (the gradient a
    strided convolution sends back repeats with its stride). From our SRResNet, the adversarial
    phase then grew its 4x4 grid over SR images later and weaker than with the stock D
    (experiments/benchmarks/RESULTS.md). Same parameters either way.

    `normalization='spectral'` (not in the paper; Miyato et al. 2018) divides the weights of every
    convolution and dense layer by their largest singular value (one power iteration per training
    call, its vector kept in `batch_stats`) and drops BatchNorm, which would undo it: D is then
    1-Lipschitz per layer. The parameters are the paper's minus BatchNorm's scales and offsets.
    """

    input_size: int = 96
    antialias: bool = False
    normalization: str = "batch"  # 'batch' (the paper's) | 'spectral'

    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        expected = (self.input_size, self.input_size, 3)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"Discriminator is built for [N, {self.input_size}, {self.input_size}, 3] images "
                f"(Discriminator.input_size={self.input_size}), got shape {tuple(images.shape)}"
            )
        if self.normalization not in DISCRIMINATOR_NORMALIZATIONS:
            raise ValueError(f"Discriminator.normalization must be one of "
                             f"{DISCRIMINATOR_NORMALIZATIONS}, got {self.normalization!r}")
        spectral = self.normalization == "spectral"
        conv = _conv_factory(self.dtype, self.param_dtype)
        dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype)
        norm = batch_norm(train, self.dtype, self.param_dtype, self.bn_axis_name)
        act = functools.partial(nn.leaky_relu, negative_slope=LEAKY_SLOPE)

        def layer(module: nn.Module, x: jnp.ndarray) -> jnp.ndarray:
            if spectral:
                return nn.SpectralNorm(module, param_dtype=self.param_dtype)(x, update_stats=train)
            return module(x)

        x = act(layer(conv(64, (3, 3)), images.astype(self.dtype)))
        for features, stride in DISCRIMINATOR_BLOCKS:
            if self.antialias and stride > 1:
                x = binomial_blur(x)
            x = layer(conv(features, (3, 3), strides=(stride, stride), use_bias=spectral), x)
            x = act(x if spectral else norm()(x))
        x = x.reshape(x.shape[0], -1)
        x = act(layer(dense(1024), x))
        logit = layer(dense(1), x)
        return logit[:, 0].astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A trained generator's architecture and value ranges: what a model file records.

    `lr_range` is the input range the generator was trained on and `sr_range` its output range
    (the training pipeline's: LR in [0, 1], SR and HR in [-1, 1]); inference maps [0, 1] images
    to and from them.
    """

    num_blocks: int = 16
    channels: int = 64
    scale: int = 4
    lr_range: tuple[float, float] = (0.0, 1.0)
    sr_range: tuple[float, float] = (-1.0, 1.0)
    batch_norm: bool = True  # False: BN folded into the convolutions (`fold_batch_norm`)
    upsampler: str = "pixel_shuffle"  # or 'resize_conv' (Generator.upsampler)

    @classmethod
    def from_training_config(cls, model: Mapping[str, Any]) -> ModelConfig:
        """The generator of a training config's `model` section (`config.model`)."""
        return cls(num_blocks=model["num_blocks"], channels=model["channels"],
                   scale=model["scale"], batch_norm=model.get("batch_norm", True),
                   upsampler=model.get("upsampler", "pixel_shuffle"))

    def generator(self, dtype: Dtype = jnp.float32, bn_axis_name: str | None = None) -> Generator:
        """The Flax `Generator` of this architecture, computing in `dtype`."""
        return Generator(num_blocks=self.num_blocks, channels=self.channels, scale=self.scale,
                         batch_norm=self.batch_norm, upsampler=self.upsampler, dtype=dtype,
                         bn_axis_name=bn_axis_name)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values. `batch_norm` and `upsampler` are written only where they
        differ from the paper's generator, so that its files stay what they were before the
        fields existed (and readable by older versions)."""
        fields = dataclasses.asdict(self)
        for name in ("batch_norm", "upsampler"):
            if fields[name] == PAPER_GENERATOR[name]:
                del fields[name]
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in fields.items()}

    @classmethod
    def from_variables(cls, variables: Mapping[str, Any]) -> ModelConfig:
        """Reads blocks, channels and scale off a generator's parameter tree (value ranges default).

        The generator's layers are named by flax in creation order: `Conv_0` is the k9 head,
        then one `Conv_i` after the blocks, one per x2 upsampling stage and the k9 tail.
        """
        try:
            params = variables["params"]
            num_blocks = sum(1 for name in params if name.startswith("ResidualBlock_"))
            channels = int(np.shape(params["Conv_0"]["kernel"])[-1])
            stages = sum(1 for name in params if name.startswith("Conv_")) - 3
        except (KeyError, TypeError, IndexError) as e:
            raise ValueError(
                f"not the variables of a srgan_jax Generator (missing {e}); expected a dict "
                "{'params': ..., 'batch_stats': ...} as returned by Generator.init"
            ) from e
        upsampling = np.shape(params["Conv_2"]["kernel"])[-1] if stages else 4 * channels
        return cls(num_blocks=num_blocks, channels=channels, scale=2**stages,
                   batch_norm="BatchNorm_0" in params,
                   upsampler="resize_conv" if upsampling == channels else "pixel_shuffle")


PAPER_GENERATOR = {"batch_norm": True, "upsampler": "pixel_shuffle"}


def upsampling_layers(params: Mapping[str, Any]) -> list[str]:
    """The names of a generator's upsampling convolutions (Conv_2 .. before the k9 tail)."""
    convs = sorted((n for n in params if n.startswith("Conv_")), key=lambda n: int(n[5:]))
    return convs[2:-1]


def with_upsampling_of(variables: Mapping[str, Any], fresh_params: Mapping[str, Any]
                       ) -> dict[str, Any]:
    """`variables` with their upsampling convolutions taken from `fresh_params` (a freshly
    initialised generator's, possibly of the other upsampler): everything else, the trained body,
    PReLUs and k9 tail, is kept. How a trained SRResNet changes its upsampler, or restarts its
    sub-pixel convolutions from ICNR, before a fine-tune."""
    layers = upsampling_layers(fresh_params)
    if upsampling_layers(variables["params"]) != layers:
        raise ValueError(f"the generators differ in more than their upsampling layers {layers}")
    params = {name: fresh_params[name] if name in layers else value
              for name, value in variables["params"].items()}
    return {"params": params, "batch_stats": variables.get("batch_stats", {})}


def fold_batch_norm(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The variables of the BN-free generator (`batch_norm=False`) that computes, in inference
    mode, what `variables`' generator computes in inference mode.

    Each BatchNorm with running statistics (mean m, variance v), scale g and offset b after a
    bias-free convolution W becomes that convolution's W * g / sqrt(v + eps) and bias
    b - m * g / sqrt(v + eps). In float64, rounded to the parameters' dtype once.
    """
    if "BatchNorm_0" not in variables["params"]:
        raise ValueError("the generator has no BatchNorm to fold (it was built with "
                         "batch_norm=False)")
    return {"params": _fold_level(variables["params"], variables["batch_stats"]),
            "batch_stats": {}}


def _fold_level(params: Mapping[str, Any], stats: Mapping[str, Any]) -> dict[str, Any]:
    """One level of the parameter tree: its bias-free convolutions take the BatchNorms of the
    same level, in creation order (flax names them Conv_i and BatchNorm_j by that order)."""
    by_index = lambda prefix: sorted((n for n in params if n.startswith(prefix)),
                                     key=lambda n: int(n.rsplit("_", 1)[1]))
    bias_free = [n for n in by_index("Conv_") if "bias" not in params[n]]
    norms = by_index("BatchNorm_")
    if len(bias_free) != len(norms):
        raise ValueError(f"cannot pair {bias_free} with {norms} to fold BatchNorm")
    folded = {name: dict(value) if name.startswith("Conv_") else value
              for name, value in params.items() if not name.startswith("BatchNorm_")}
    for conv, norm in zip(bias_free, norms, strict=True):
        kernel = np.asarray(params[conv]["kernel"])
        gain = (np.asarray(params[norm]["scale"], np.float64)
                / np.sqrt(np.asarray(stats[norm]["var"], np.float64) + BN_EPSILON))
        offset = (np.asarray(params[norm]["bias"], np.float64)
                  - np.asarray(stats[norm]["mean"], np.float64) * gain)
        folded[conv] = {"kernel": (kernel.astype(np.float64) * gain).astype(kernel.dtype),
                        "bias": offset.astype(kernel.dtype)}
    for name, value in params.items():
        if name.startswith("ResidualBlock_"):
            folded[name] = _fold_level(value, stats[name])
    return folded
