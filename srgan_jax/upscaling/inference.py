"""Upscaling images with a trained generator: `Upscaler`, `load_generator` and `upscale`.

`Upscaler` is the float core: [0, 1] RGB in, [0, 1] RGB out, jit-compiled (XLA caches one executable
per input shape), BN in inference mode, and tiled (see `srgan_jax.upscaling.tiling`) whenever an
image does not fit the memory budget. `upscale` is the one-call API on top of it for real images:
numpy uint8/uint16/float arrays or PIL images, gray, RGB or with alpha, returned in the same kind.

Nothing here imports TensorFlow; orbax is imported only when a training workdir is loaded.
"""
from __future__ import annotations

import functools
import math
import os
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from srgan_jax import metrics
from srgan_jax.upscaling import model_file as export
from srgan_jax.upscaling.model_file import ModelConfig, Variables
from srgan_jax.upscaling.tiling import receptive_field_radius, upscale_tiled

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
ALPHA_MODES = ("bicubic", "model")
GRAY_WEIGHTS = metrics.LUMA_WEIGHTS.astype(np.float32)  # BT.601 luma, as PIL's "L"
CPU_BUDGET_CAP = 4 << 30  # bytes: larger tiles barely speed up a CPU but would crowd the host
PROBE_SIZE = 64  # LR side of the shape whose compiled memory use calibrates the budget
# Output pixels one call may produce, whatever the budget: XLA:CPU (jax 0.10) aborts with
# std::bad_alloc beyond about 2e7 (a 16-channel model: 1100x1100 x4 runs, 1175x1175 x4 aborts).
MAX_OUTPUT_PIXELS = 1 << 23
# The generator shipped with the package (`srgan_jax/weights/MODEL_CARD.md` says how it was made).
WEIGHTS_DIR = pathlib.Path(__file__).resolve().parents[1] / "weights"
SHIPPED_MODEL = "srresnet_mse_x4.msgpack"


def default_memory_budget(device: jax.Device | None = None) -> int:
    """Bytes one forward pass may use: half of an accelerator's free memory; on CPU a quarter of
    the available RAM, at most `CPU_BUDGET_CAP`."""
    device = device or jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(0.5 * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return CPU_BUDGET_CAP // 2
    return int(min(available // 4, CPU_BUDGET_CAP))


def _dtype(dtype: Any) -> np.dtype:
    """`dtype` ('float32', 'bfloat16' or the dtypes themselves) as a dtype object."""
    allowed = {name: jnp.dtype(d) for name, d in DTYPES.items()}
    try:
        resolved = allowed[dtype] if isinstance(dtype, str) else jnp.dtype(dtype)
    except (KeyError, TypeError):
        resolved = None
    if resolved not in allowed.values():
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return resolved


class Upscaler:
    """A generator ready for inference: `upscaler(lr)` maps [0, 1] RGB to [0, 1] RGB, `scale`x.

    Args:
      variables: the generator's `{'params', 'batch_stats'}`.
      config: its architecture and value ranges (default: read off `variables`' shapes).
      dtype: compute dtype, 'float32' or 'bfloat16' (parameters stay float32).
      memory_budget: bytes one forward pass may use on the device (default:
        `default_memory_budget()`); images larger than that are tiled automatically.
    """

    def __init__(
        self,
        variables: Variables,
        config: ModelConfig | None = None,
        *,
        dtype: Any = "float32",
        memory_budget: int | None = None,
    ):
        self.config = config or ModelConfig.from_variables(variables)
        self.variables = jax.device_put(
            export.validate_variables(variables, self.config, "generator variables")
        )
        self.dtype = _dtype(dtype)
        self.model = self.config.generator(self.dtype)
        self.memory_budget = memory_budget or default_memory_budget()
        self._forward = jax.jit(self._apply)

    @classmethod
    def from_path(
        cls, path: str | os.PathLike, *, dtype: Any = "float32", memory_budget: int | None = None
    ) -> Upscaler:
        """Loads a model file (`srgan-jax export`) or a training workdir's latest checkpoint."""
        path = os.fspath(path)
        if os.path.isdir(path):
            variables = export.checkpoint_variables(path)
            config = ModelConfig.from_variables(variables)
        elif os.path.isfile(path):
            config, variables = export.load_model(path)
        else:
            raise FileNotFoundError(f"{path}: no such model file or training workdir")
        return cls(variables, config, dtype=dtype, memory_budget=memory_budget)

    def with_dtype(self, dtype: Any) -> Upscaler:
        """The same model computing in `dtype`."""
        if _dtype(dtype) == self.dtype:
            return self
        return Upscaler(self.variables, self.config, dtype=dtype, memory_budget=self.memory_budget)

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def receptive_field(self) -> int:
        """LR pixels of context each output pixel depends on, per side: the exact tile overlap."""
        return receptive_field_radius(self.config.num_blocks, self.config.scale)

    def _apply(self, variables: Variables, lr: jax.Array) -> jax.Array:
        (lr_lo, lr_hi), (sr_lo, sr_hi) = self.config.lr_range, self.config.sr_range
        sr = self.model.apply(variables, lr_lo + lr * (lr_hi - lr_lo), train=False)
        return jnp.clip((sr - sr_lo) / (sr_hi - sr_lo), 0.0, 1.0)

    def _run(self, lr: np.ndarray) -> jax.Array:
        """Dispatches one [N, h, w, 3] host batch; the result is still being computed."""
        return self._forward(self.variables, jnp.asarray(lr, jnp.float32))

    @functools.cached_property
    def bytes_per_pixel(self) -> float:
        """Device bytes one forward pass needs per LR pixel, from XLA's compiled memory analysis.

        Activation memory grows linearly with the number of pixels, so one small compile
        calibrates it; backends without an analysis get a conservative closed-form estimate
        (three float32 feature maps of the last upsampling stage, whose size is that of `channels`
        maps at HR resolution).
        """
        probe = jax.ShapeDtypeStruct((1, PROBE_SIZE, PROBE_SIZE, 3), jnp.float32)
        try:
            stats = self._forward.lower(self.variables, probe).compile().memory_analysis()
            used = stats.temp_size_in_bytes + stats.output_size_in_bytes
        except (AttributeError, NotImplementedError, jax.errors.JaxRuntimeError):
            return 3.0 * 4 * self.config.channels * self.scale**2
        return max(used, 1) / PROBE_SIZE**2

    @property
    def max_pixels(self) -> int:
        """The most LR pixels one call may take: the memory budget's, and `MAX_OUTPUT_PIXELS`."""
        by_budget = self.memory_budget / self.bytes_per_pixel
        return max(int(min(by_budget, MAX_OUTPUT_PIXELS / self.scale**2)), 1)

    def max_tile(self) -> int:
        """The largest square LR tile side one call may take (see `max_pixels`)."""
        return max(math.isqrt(self.max_pixels), 1)

    def __call__(
        self, lr: Any, *, tile: int | None = None, tile_overlap: int | None = None
    ) -> np.ndarray:
        """Upscales float RGB in [0, 1], (H, W, 3) or a same-size batch (N, H, W, 3).

        Args:
          tile: LR tile side. None: whole images (as many per call as `max_pixels` allows),
            tiling only images that do not fit, with tiles of at most `max_tile()`. An explicit
            tile is taken as given, even beyond the memory budget.
          tile_overlap: LR pixels of context kept around each tile (default, and the smallest
            value for which tiling changes nothing: `receptive_field`).

        Returns:
          float32 host array in [0, 1], (sH, sW, 3) or (N, sH, sW, 3).
        """
        batch = np.asarray(lr, dtype=np.float32)
        if batch.ndim not in (3, 4) or batch.shape[-1] != 3 or 0 in batch.shape:
            raise ValueError(
                f"Upscaler expects (H, W, 3) or (N, H, W, 3) RGB images, got shape {batch.shape}"
            )
        single = batch.ndim == 3
        batch = batch[None] if single else batch
        n, height, width = batch.shape[:3]
        overlap = self.receptive_field if tile_overlap is None else int(tile_overlap)
        if overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0, got {tile_overlap}")
        if tile is not None and tile < 1:
            raise ValueError(f"tile must be a positive number of LR pixels, got {tile}")
        per_call = self.max_pixels // (height * width)
        out = np.empty((n, height * self.scale, width * self.scale, 3), np.float32)
        if tile is None and per_call >= 1:
            chunks = [(i, self._run(batch[i : i + per_call])) for i in range(0, n, per_call)]
            for i, result in chunks:
                out[i : i + per_call] = result
        else:
            for image, sr in zip(batch, out, strict=True):
                upscale_tiled(self._run, image, self.scale, tile or self.max_tile(), overlap, sr)
        return out[0] if single else out


def shipped_model_path() -> pathlib.Path:
    """The model shipped in `srgan_jax/weights/` (FileNotFoundError if this install lacks it)."""
    path = WEIGHTS_DIR / SHIPPED_MODEL
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the shipped model is missing from this installation; pass a model file "
            "(see `srgan-jax export`) or a training workdir instead"
        )
    return path


def load_generator(
    path: str | os.PathLike | None = None, *, dtype: Any = "float32"
) -> Upscaler:
    """An `Upscaler` for a model file or training workdir, by default the shipped model (its
    `.model` and `.variables` are the Flax module and variables, for use with `model.apply`)."""
    return Upscaler.from_path(shipped_model_path() if path is None else path, dtype=dtype)


@functools.lru_cache(maxsize=4)
def _cached_upscaler(path: str, mtime_ns: int, dtype: str) -> Upscaler:
    del mtime_ns  # part of the cache key only: a rewritten file is loaded again
    return Upscaler.from_path(path, dtype=dtype)


def _as_upscaler(model: Any, dtype: Any) -> Upscaler:
    if model is None:
        model = shipped_model_path()
    if isinstance(model, Upscaler):
        return model if dtype is None else model.with_dtype(dtype)
    dtype = "float32" if dtype is None else dtype
    if isinstance(model, str | os.PathLike):
        path = os.path.abspath(os.fspath(model))
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such model file or training workdir")
        return _cached_upscaler(path, os.stat(path).st_mtime_ns, _dtype(dtype).name)
    if isinstance(model, dict):
        return Upscaler(model, dtype=dtype)
    raise TypeError(
        "upscale: the model must be an Upscaler, a path to a model file or workdir, a "
        f"generator's {{'params', 'batch_stats'}} dict or None, got {type(model).__name__}"
    )


# ---------------------------------------------------------------------------------------------
# Real images: sample formats and channel layouts in and out of the float RGB core.


class Samples:
    """Conversion of one sample type to float [0, 1] and back."""

    def __init__(self, dtype: np.dtype):
        if dtype in (np.uint8, np.uint16):
            self.peak = float(np.iinfo(dtype).max)
        elif np.issubdtype(dtype, np.floating):
            self.peak = None
        else:
            raise TypeError(
                f"upscale: unsupported pixel dtype {dtype}; use uint8, uint16 or float in [0, 1]"
            )
        self.dtype = dtype

    def to_float(self, pixels: np.ndarray) -> np.ndarray:
        if self.peak is not None:
            return pixels.astype(np.float32) / self.peak
        values = pixels.astype(np.float32)
        if not np.isfinite(values).all():
            raise ValueError("upscale: float image contains NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"upscale: float images must be in [0, 1], got values in [{low:g}, {high:g}]"
            )
        return values

    def from_float(self, values: np.ndarray) -> np.ndarray:
        """Samples of float `values`, clipped to [0, 1] in place (images can be gigabytes)."""
        np.clip(values, 0.0, 1.0, out=values)
        if self.peak is None:
            return values.astype(self.dtype, copy=False)
        values *= self.peak
        return np.rint(values, out=values).astype(self.dtype)


def _bicubic(channel: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upscaling of one float [0, 1] plane (Pillow's separable Keys kernel, a = -0.5)."""
    height, width = channel.shape
    image = Image.fromarray(np.ascontiguousarray(channel, np.float32), mode="F")
    resized = image.resize((width * scale, height * scale), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(resized), 0.0, 1.0)


def upscale_float(
    upscaler: Upscaler,
    images: np.ndarray,
    *,
    alpha: str = "bicubic",
    tile: int | None = None,
    tile_overlap: int | None = None,
) -> np.ndarray:
    """Upscales same-size float [0, 1] images, (N, H, W, C) -> (N, sH, sW, C), where C is 1 (gray),
    2 (gray + alpha), 3 (RGB) or 4 (RGBA).

    Gray goes through the model replicated to RGB and comes back as BT.601 luma. Alpha is upscaled
    by bicubic interpolation, or with `alpha='model'` by the model as a gray image, in the same
    batch as the colour planes.
    """
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {ALPHA_MODES}, got {alpha!r}")
    n, channels = len(images), images.shape[-1]
    has_alpha = channels in (2, 4)
    color = images[..., : channels - has_alpha]
    gray = color.shape[-1] == 1
    planes = np.repeat(color, 3, axis=-1) if gray else color
    if has_alpha and alpha == "model":
        planes = np.concatenate([planes, np.repeat(images[..., -1:], 3, axis=-1)])
    sr = upscaler(planes, tile=tile, tile_overlap=tile_overlap)
    sr_color = sr[:n] @ GRAY_WEIGHTS[:, None] if gray else sr[:n]
    if not has_alpha:
        return sr_color
    if alpha == "model":
        sr_alpha = sr[n:] @ GRAY_WEIGHTS
    else:
        sr_alpha = np.stack([_bicubic(plane, upscaler.scale) for plane in images[..., -1]])
    return np.concatenate([sr_color, sr_alpha[..., None]], axis=-1)


# PIL modes upscaled as they are (mode -> numpy layout is np.asarray's); others are converted.
_PIL_NATIVE = frozenset({"L", "LA", "RGB", "RGBA", "I;16", "F"})


def _pil_to_array(image: Image.Image) -> tuple[np.ndarray, Callable[[np.ndarray], Image.Image]]:
    """Pixels of a PIL image and the function that makes an image of the same mode from new ones.

    Palette, 1-bit, CMYK and other colour spaces are converted (to RGB, RGBA when the image has
    transparency, or L); the result then has that mode. 32-bit integer images ('I') are taken
    as 16-bit samples, as Pillow reads 16-bit PNGs.
    """
    if image.mode not in _PIL_NATIVE | {"I"}:
        target = "L" if image.mode == "1" else "RGBA" if image.has_transparency_data else "RGB"
        image = image.convert(target)
    pixels, as_int32 = np.asarray(image), image.mode == "I"
    if as_int32:
        if pixels.min() < 0 or pixels.max() > 65535:
            raise ValueError("upscale: 32-bit integer ('I') images must hold 16-bit values")
        pixels = pixels.astype(np.uint16)
    icc_profile = image.info.get("icc_profile")

    def to_image(new: np.ndarray) -> Image.Image:
        result = Image.fromarray(new.astype(np.int32) if as_int32 else new)
        if icc_profile:
            result.info["icc_profile"] = icc_profile
        return result

    return pixels, to_image


def upscale(
    model: Any,
    image: Any,
    *,
    tile: int | None = None,
    tile_overlap: int | None = None,
    dtype: Any = None,
    alpha: str = "bicubic",
) -> Any:
    """Upscales one image with a trained generator; returns the same kind of image, `scale`x.

    Args:
      model: an `Upscaler`, a path to a model file or training workdir (loaded once and cached),
        a generator's `{'params', 'batch_stats'}` dict (architecture read off its shapes), or
        None: the model shipped with the package (`srgan_jax/weights/MODEL_CARD.md`).
      image: numpy uint8, uint16 or float ([0, 1]) array shaped (H, W), (H, W, 1), (H, W, 2)
        (gray + alpha), (H, W, 3) or (H, W, 4), or a PIL image (palette, 1-bit and CMYK images
        come back as RGB/RGBA/L).
      tile, tile_overlap: see `Upscaler.__call__` (default: automatic, exact).
      dtype: compute dtype, 'float32' (default) or 'bfloat16'.
      alpha: 'bicubic' (default) or 'model': how an alpha channel is upscaled.

    Returns:
      An array of the input's dtype and channels, or a PIL image of the input's mode.
    """
    upscaler = _as_upscaler(model, dtype)
    to_image: Callable[[np.ndarray], Any] = lambda pixels: pixels
    if isinstance(image, Image.Image):
        image, to_image = _pil_to_array(image)
    elif not hasattr(image, "__array__") or isinstance(image, str | bytes):
        raise TypeError(
            f"upscale: expected a numpy array or PIL image, got {type(image).__name__}"
        )
    pixels = np.asarray(image)
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(
            "upscale: expected an image shaped (H, W) or (H, W, C) with C in 1..4, "
            f"got shape {pixels.shape}"
        )
    if pixels.size == 0:
        raise ValueError(f"upscale: empty image of shape {pixels.shape}")
    samples = Samples(pixels.dtype)
    values = samples.to_float(pixels)
    images = values[None] if values.ndim == 3 else values[None, ..., None]
    sr = upscale_float(upscaler, images, alpha=alpha, tile=tile, tile_overlap=tile_overlap)[0]
    return to_image(samples.from_float(sr if pixels.ndim == 3 else sr[..., 0]))
