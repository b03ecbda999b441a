"""Training batches inside the compiled step: uint8 in, model ranges out, LR made on the device.

The host sends uint8 crops (a quarter of float32's bytes). A batch is `{'hr': uint8 [N, H, W, 3]}`
plus `'lr': uint8 [N, H/s, W/s, 3]` when the host made the LR images (or the dataset gave them);
without `'lr'`, `prepare` flips/rotates the crops as `'transform'` says (`augment`, the host's
eight variants) and degrades them on the device with the same MATLAB bicubic as the host
(`srgan_jax.imresize.degrade`): two matrix products with fixed resize matrices, rounded to uint8
after each, as MATLAB does. float32 batches already in the model ranges (LR [0, 1], HR [-1, 1])
pass through unchanged, so the steps take either kind.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from srgan_jax import imresize, value_ranges

Batch = dict[str, jax.Array]
UINT8_MAX = 255.0


def degrade(hr: jax.Array, scale: int) -> jax.Array:
    """uint8 LR of uint8 HR images [N, H, W, C] (H, W multiples of `scale`): `imresize.degrade`.

    Rows are resized first and the result is rounded to uint8 (half away from zero) before the
    columns are, exactly MATLAB's order for a uniform shrink. The products run in float32 at full
    precision: each output is a 16-tap sum of uint8 values, so a pixel can differ from the float64
    host path only where a sum lands within float32 rounding of a half-way point.
    """
    _, height, width, _ = hr.shape
    if height % scale or width % scale:
        raise ValueError(f"degrade: HR size {height}x{width} is not divisible by scale {scale}")
    rows = _matrix(height, scale)
    cols = _matrix(width, scale)
    x = hr.astype(jnp.float32)
    x = _round_uint8(jnp.einsum("oh,nhwc->nowc", rows, x, precision=lax.Precision.HIGHEST))
    x = _round_uint8(jnp.einsum("pw,nowc->nopc", cols, x, precision=lax.Precision.HIGHEST))
    return x.astype(jnp.uint8)


def _matrix(length: int, scale: int) -> jax.Array:
    return jnp.asarray(
        imresize.resize_matrix(length, length // scale, 1.0 / scale), dtype=jnp.float32
    )


def _round_uint8(x: jax.Array) -> jax.Array:
    """Clip to [0, 255] and round half away from zero (MATLAB's uint8 conversion)."""
    return jnp.floor(jnp.clip(x, 0.0, UINT8_MAX) + 0.5)


def augment(images: jax.Array, transform: jax.Array) -> jax.Array:
    """Square images [N, S, S, C], each under its flip/rotation `transform` [N] (flip * 4 +
    rotations: `np.rot90(image[:, ::-1] if flip else image, rotations)`, as the host does)."""
    flipped = images[:, :, ::-1]
    variants = [jnp.rot90(base, k, axes=(1, 2)) for base in (images, flipped) for k in range(4)]
    choice = transform.reshape((-1,) + (1,) * (images.ndim - 1))
    out = variants[0]
    for code, variant in enumerate(variants[1:], start=1):
        out = jnp.where(choice == code, variant, out)
    return out


def prepare(batch: Batch, scale: int) -> Batch:
    """`{'lr': float32 [0, 1], 'hr': float32 [-1, 1]}` of a uint8 (or already float) batch."""
    hr = batch["hr"]
    if hr.dtype != jnp.uint8:
        return {"lr": batch["lr"], "hr": hr}
    if "transform" in batch:
        hr = augment(hr, batch["transform"])
    lr = batch["lr"] if "lr" in batch else degrade(hr, scale)
    if lr.dtype != jnp.uint8:
        raise ValueError(f"a uint8 HR batch needs uint8 LR images, got {lr.dtype}")
    return {"lr": value_ranges.lr_from_uint8(lr), "hr": value_ranges.hr_from_uint8(hr)}


def degrade_on_host(degradation: str) -> bool:
    """Whether the host makes the LR crops (`config.data.degradation`): 'host', 'device', or
    'auto' = the host on CPU-only runs (the prefetch threads make them while the step runs, and
    the device is the same CPU), the device on GPU/TPU."""
    if degradation == "auto":
        return jax.default_backend() == "cpu"
    return degradation == "host"
