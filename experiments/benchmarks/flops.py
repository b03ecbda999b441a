"""Analytic FLOPs of SRResNet/SRGAN training steps and inference, and known device peaks.

FLOPs are 2 x the multiply-adds of convolutions and dense layers (what `torch.utils.flop_counter`
and the PyTorch peer's `flops.py` count); BatchNorm, activations, pooling, pixel shuffle, losses
and the optimizer are left out (< 1 % here). A layer's backward pass costs its forward MACs once
for the input gradient (skipped for a network's first layer when its input needs none) and once for
the weight gradient (skipped for frozen networks: VGG always, D inside the generator's update).
For the paper's models at batch 16 with 96x96 crops: SRGAN step (VGG54) 691.7 GFLOP, SRResNet step
(pixel MSE) 122.4 GFLOP.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from srgan_jax.models import DISCRIMINATOR_BLOCKS
from srgan_jax.vgg import conv_layers

# (in_channels, out_channels, kernel, stride, input_side) of a square convolution, or
# (in_features, out_features) of a dense layer.
Layer = tuple[int, ...]

# Dense peak FLOP/s per chip from the vendors' data sheets, by JAX `device_kind` prefix:
# (bfloat16, float32). On GPUs float32 convolutions run as TF32 on the tensor cores (XLA's
# default precision); on TPUs float32 matmuls use bf16 passes, so both entries are the bf16 peak.
DEVICE_PEAKS: dict[str, tuple[float, float]] = {
    "NVIDIA H200": (989e12, 494.5e12),
    "NVIDIA H100 PCIe": (756e12, 378e12),
    "NVIDIA H100": (989e12, 494.5e12),  # SXM (80GB HBM3)
    "NVIDIA A100": (312e12, 156e12),
    "NVIDIA L4": (121e12, 60e12),
    "TPU v6": (918e12, 918e12),
    "TPU v5p": (459e12, 459e12),
    "TPU v5": (197e12, 197e12),  # v5e / v5 lite
    "TPU v4": (275e12, 275e12),
    "TPU v3": (123e12, 123e12),
    "TPU v2": (45e12, 45e12),
}


def device_peak(device_kind: str, dtype: str) -> float | None:
    """Peak dense FLOP/s of one chip for `dtype` ('bfloat16' or 'float32'); None if unknown."""
    for prefix, (bf16, f32) in DEVICE_PEAKS.items():  # the longest prefixes come first
        if device_kind.startswith(prefix):
            return bf16 if dtype == "bfloat16" else f32
    return None


def generator_layers(lr_side: int, num_blocks: int = 16, channels: int = 64, scale: int = 4):
    """SRResNet's convolutions on an `lr_side` x `lr_side` input."""
    layers = [(3, channels, 9, 1, lr_side)]
    layers += [(channels, channels, 3, 1, lr_side)] * (2 * num_blocks + 1)
    for i in range(int(math.log2(scale))):
        layers.append((channels, 4 * channels, 3, 1, lr_side * 2**i))
    layers.append((channels, 3, 9, 1, lr_side * scale))
    return layers


def discriminator_layers(hr_side: int) -> list[Layer]:
    """The discriminator's convolutions ('SAME' padding) and its two dense layers."""
    layers, in_channels, side = [(3, 64, 3, 1, hr_side)], 64, hr_side
    for out_channels, stride in DISCRIMINATOR_BLOCKS:
        layers.append((in_channels, out_channels, 3, stride, side))
        in_channels, side = out_channels, -(-side // stride)
    return [*layers, (in_channels * side * side, 1024), (1024, 1)]


def vgg_layers(hr_side: int, layer: str) -> list[Layer]:
    """VGG19's convolutions up to the feature map `layer` ('phi_2_2', 'phi_5_4', ...)."""
    return [
        (cin, cout, 3, 1, hr_side // 2 ** (int(name[5]) - 1))  # 'block<b>_conv<c>'
        for name, cin, cout in conv_layers(layer)
    ]


def macs(layer: Layer) -> int:
    if len(layer) == 2:
        return layer[0] * layer[1]
    cin, cout, kernel, stride, side = layer
    out_side = -(-side // stride)  # 'SAME' padding
    return out_side * out_side * cout * cin * kernel * kernel


def forward(layers: Sequence[Layer]) -> int:
    return 2 * sum(macs(layer) for layer in layers)


def backward(layers: Sequence[Layer], *, input_grad: bool, weight_grad: bool) -> int:
    """Backward FLOPs. `input_grad`: the network's input needs a gradient; `weight_grad`: the
    network is trained (not frozen)."""
    total = 0
    for i, layer in enumerate(layers):
        total += 2 * macs(layer) * (int(weight_grad) + int(input_grad or i > 0))
    return total


def _content_flops(hr_side: int, vgg_layer: str | None) -> int:
    """Per image: the VGG content loss's forward on SR and HR and its backward to SR."""
    if vgg_layer is None:
        return 0
    vgg = vgg_layers(hr_side, vgg_layer)
    return 2 * forward(vgg) + backward(vgg, input_grad=True, weight_grad=False)


def pretrain_step_flops(
    batch: int,
    hr_side: int = 96,
    *,
    num_blocks: int = 16,
    channels: int = 64,
    scale: int = 4,
    vgg_layer: str | None = None,
) -> int:
    """One SRResNet update: G forward and backward, plus the VGG content loss if any."""
    g = generator_layers(hr_side // scale, num_blocks, channels, scale)
    per_image = forward(g) + backward(g, input_grad=False, weight_grad=True)
    return batch * (per_image + _content_flops(hr_side, vgg_layer))


def gan_step_flops(
    batch: int,
    hr_side: int = 96,
    *,
    num_blocks: int = 16,
    channels: int = 64,
    scale: int = 4,
    vgg_layer: str | None = "phi_5_4",
) -> int:
    """One SRGAN update (`srgan_jax.training.steps.gan_step`): D on real and fake, then G via D."""
    d = discriminator_layers(hr_side)
    d_update = 2 * (forward(d) + backward(d, input_grad=False, weight_grad=True))
    g_through_d = forward(d) + backward(d, input_grad=True, weight_grad=False)
    generator = pretrain_step_flops(
        1, hr_side, num_blocks=num_blocks, channels=channels, scale=scale, vgg_layer=vgg_layer
    )
    return batch * (d_update + g_through_d) + batch * generator


def inference_flops_per_output_pixel(num_blocks: int = 16, channels: int = 64, scale: int = 4):
    """Generator FLOPs per output pixel (size-independent; 277 GFLOP/MP for the paper's model)."""
    lr_side = 16
    return forward(generator_layers(lr_side, num_blocks, channels, scale)) / (lr_side * scale) ** 2
