"""Upscaling images with a trained generator: `Upscaler`, `load_generator` and `upscale`.

`Upscaler` is the float core: [0, 1] RGB in, [0, 1] RGB out, jit-compiled (XLA caches one executable
per architecture and input shape), BN in inference mode, and tiled (see `tiling`: one window shape
for every tile) whenever an image does not fit the memory budget. Each image is first padded on
every side with its own mirrored pixels, as wide as the receptive field, and the padding's output
is cropped away: the network then sees image-like context at the border instead of zeros, so
borders and very small images (down to 1x1) come out as they would inside a larger image.
`upscale` is the one-call API on top of it for real images: numpy arrays or PIL images of any
pixel type and layout (see `pixels`).

Nothing here imports TensorFlow; orbax is imported only when a training workdir is loaded.
"""
from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from srgan_jax.models import ModelConfig
from srgan_jax.upscaling import registry
from srgan_jax.upscaling.model_file import GeneratorWeights, Variables, check_weights
from srgan_jax.upscaling.pixels import ALPHA_MODES, upscale_pixels
from srgan_jax.upscaling.tiling import check_tile, plan_tiles, receptive_field_radius, upscale_tiled

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
CPU_BUDGET_CAP = 4 << 30  # bytes: larger tiles barely speed up a CPU but would crowd the host
PROBE_SIZE = 64  # LR side of the shape whose compiled memory use calibrates the budget
# Output pixels one call may produce, whatever the budget: XLA:CPU (jax 0.10) aborts with
# std::bad_alloc beyond about 2e7 (a 16-channel model: 1100x1100 x4 runs, 1175x1175 x4 aborts).
MAX_OUTPUT_PIXELS = 1 << 23
BORDER_PADDING = "symmetric"  # numpy's name for mirroring that repeats the edge pixel
FINITE_CHECK_ROWS = 256  # rows of output checked for NaN at a time (bounds the check's memory)

ProgressCallback = Callable[[int, int], None]
"""Called as `callback(done, total)` after each part (whole-image batch or tile) of one call."""


class NonFiniteOutputError(ValueError):
    """The model produced NaN or infinite values: damaged weights, or a numerical overflow."""


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


@functools.partial(jax.jit, static_argnames=("config", "dtype"))
def _forward(variables: Variables, lr: jax.Array, config: ModelConfig, dtype: str) -> jax.Array:
    """[0, 1] LR batch -> [0, 1] SR batch, NaN wherever the network's output is not finite.

    One jit for every `Upscaler`: a new instance of the same architecture reuses the executables.
    """
    (lr_lo, lr_hi), (sr_lo, sr_hi) = config.lr_range, config.sr_range
    model = config.generator(jnp.dtype(dtype))
    sr = model.apply(variables, lr_lo + lr * (lr_hi - lr_lo), train=False)
    unit = jnp.clip((sr.astype(jnp.float32) - sr_lo) / (sr_hi - sr_lo), 0.0, 1.0)
    return jnp.where(jnp.isfinite(sr), unit, jnp.nan)


def _check_finite(sr: np.ndarray) -> None:
    """Raises `NonFiniteOutputError` if `sr` (one image) holds NaN, a few rows at a time."""
    for start in range(0, sr.shape[0], FINITE_CHECK_ROWS):
        if not np.isfinite(sr[start : start + FINITE_CHECK_ROWS]).all():
            raise NonFiniteOutputError(
                "the model's output has NaN or infinite values (damaged weights, or a "
                "numerical overflow: try --fp32 / dtype='float32')"
            )


def check_model_name(model: Any) -> None:
    """Raises `TypeError` unless `model` is a name, a path or None, and `ValueError` for an empty
    name (which would otherwise mean the current folder, or nothing at all)."""
    if model is not None and not isinstance(model, str | os.PathLike):
        raise TypeError(
            "the model must be a shipped model's name, a path to a model file or training "
            f"workdir, or None (the default shipped model), got {type(model).__name__} {model!r}")
    if model is not None and not os.fspath(model).strip():
        raise ValueError(
            f"the model name is empty; give a shipped model's name ({registry.describe_known()}), "
            "a model file or a training workdir (or no model for the default)")


class Upscaler:
    """A generator ready for inference: `upscaler(lr)` maps [0, 1] RGB to [0, 1] RGB, `scale`x.

    Args:
      weights: the generator's `{'params', 'batch_stats'}` (checked here), or `GeneratorWeights`
        already checked by `model_file.load_model` or `registry.load_weights`.
      config: its architecture and value ranges (default: read off the variables' shapes).
      dtype: compute dtype, 'float32' or 'bfloat16' (parameters stay float32).
      memory_budget: bytes one forward pass may use on the device (default:
        `default_memory_budget()`); images larger than that are tiled automatically.
    """

    def __init__(
        self,
        weights: GeneratorWeights | Variables,
        config: ModelConfig | None = None,
        *,
        dtype: Any = "float32",
        memory_budget: int | None = None,
    ):
        if not isinstance(weights, GeneratorWeights):
            weights = check_weights(weights, config, "generator variables")
        self.config = weights.config
        self.variables = jax.device_put(weights.variables)
        self.dtype = _dtype(dtype)
        self.model = self.config.generator(self.dtype)
        self.memory_budget = memory_budget or default_memory_budget()

    @classmethod
    def from_path(
        cls, model: str | os.PathLike | None, *, dtype: Any = "float32",
        memory_budget: int | None = None,
    ) -> Upscaler:
        """Loads a model file, a training workdir's latest checkpoint or a shipped model by name
        (None: the default shipped model); see `registry.load_weights`."""
        check_model_name(model)
        return cls(registry.load_weights(model), dtype=dtype, memory_budget=memory_budget)

    def with_dtype(self, dtype: Any) -> Upscaler:
        """The same model computing in `dtype`."""
        if _dtype(dtype) == self.dtype:
            return self
        weights = GeneratorWeights(self.config, self.variables)
        return Upscaler(weights, dtype=dtype, memory_budget=self.memory_budget)

    def with_variables(self, variables: Variables) -> Upscaler:
        """The same architecture, dtype and memory plan with other variables (checked): how a
        training run's validation swaps in each new generator without measuring memory again."""
        weights = check_weights(variables, self.config, "generator variables")
        other = Upscaler(weights, dtype=self.dtype, memory_budget=self.memory_budget)
        if "bytes_per_pixel" in self.__dict__:  # functools.cached_property's own storage
            other.__dict__["bytes_per_pixel"] = self.bytes_per_pixel
        return other

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def receptive_field(self) -> int:
        """LR pixels of context each output pixel depends on, per side: the exact tile overlap,
        and the width of the mirrored border added around each image."""
        return receptive_field_radius(self.config.num_blocks, self.config.scale)

    def _run(self, lr: np.ndarray) -> jax.Array:
        """Dispatches one [N, h, w, 3] host batch; the result is still being computed."""
        return _forward(self.variables, jnp.asarray(lr, jnp.float32), self.config,
                        self.dtype.name)

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
            lowered = _forward.lower(self.variables, probe, self.config, self.dtype.name)
            stats = lowered.compile().memory_analysis()
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
        """The largest square LR window side one call may take (see `max_pixels`): a tile's kept
        side plus its overlap on both sides."""
        return max(math.isqrt(self.max_pixels), 1)

    def tile_for(self, tile: int | None, overlap: int, height: int, width: int) -> int | None:
        """The kept side of the tiles of a padded `height` x `width` image: None for whole images
        (when they fit the budget and no tile is asked for), else `tile`, or the largest, capped
        so that a window (`tiling.window_side`) fits `max_tile()`."""
        if tile is None and height * width <= self.max_pixels:
            return None
        largest = max(self.max_tile() - 2 * overlap, 1)
        return largest if tile is None else min(tile, largest)

    def _parts(self, height: int, width: int, tile: int | None = None,
              tile_overlap: int | None = None) -> int:
        """How many model calls (tiles, or 1 for the whole image) one `height` x `width` image
        takes: the unit of the progress callback."""
        margin = self.receptive_field
        padded = (height + 2 * margin, width + 2 * margin)
        overlap = self.receptive_field if tile_overlap is None else tile_overlap
        side = self.tile_for(tile, overlap, *padded)
        if side is None:
            return 1
        return len(plan_tiles(*padded, side, overlap, margin))

    def __call__(
        self,
        lr: Any,
        *,
        tile: int | None = None,
        tile_overlap: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Upscales float RGB in [0, 1], (H, W, 3) or a same-size batch (N, H, W, 3).

        Args:
          tile: the LR pixels each tile keeps, a side (Real-ESRGAN's meaning); each tile reads
            `tile_overlap` more on every side. None: whole images (as many per call as
            `max_pixels` allows), tiling only images that do not fit, with the largest tiles that
            do. An explicit tile is capped the same way, so that no call exceeds the memory
            budget.
          tile_overlap: LR pixels of context read around each tile (default, and the smallest
            value for which tiling changes nothing: `receptive_field`).
          progress: called as `progress(done, total)` after each model call.

        Returns:
          float32 host array in [0, 1], (sH, sW, 3) or (N, sH, sW, 3).

        Raises:
          NonFiniteOutputError: the model's output has NaN or infinite values.
        """
        batch = np.asarray(lr, dtype=np.float32)
        if batch.ndim not in (3, 4) or batch.shape[-1] != 3 or 0 in batch.shape:
            raise ValueError(
                f"Upscaler expects (H, W, 3) or (N, H, W, 3) RGB images, got shape {batch.shape}"
            )
        single = batch.ndim == 3
        batch = batch[None] if single else batch
        overlap = self.receptive_field if tile_overlap is None else int(tile_overlap)
        check_tile(tile, overlap)
        n, height, width = batch.shape[:3]
        margin, s = self.receptive_field, self.scale
        padded = np.pad(batch, ((0, 0), (margin, margin), (margin, margin), (0, 0)),
                        mode=BORDER_PADDING)
        side = self.tile_for(tile, overlap, *padded.shape[1:3])
        out = np.empty((n, height * s, width * s, 3), np.float32)
        if side is None:
            per_call = max(self.max_pixels // (padded.shape[1] * padded.shape[2]), 1)
            starts = range(0, n, per_call)
            results = [(i, self._run(padded[i : i + per_call])) for i in starts]
            for done, (i, result) in enumerate(results, 1):
                out[i : i + per_call] = np.asarray(result)[:, margin * s : (margin + height) * s,
                                                           margin * s : (margin + width) * s]
                if progress is not None:
                    progress(done, len(results))
        else:
            total = n * self._parts(height, width, tile, overlap)
            done = 0

            def tile_done() -> None:
                nonlocal done
                done += 1
                if progress is not None:
                    progress(done, total)

            for image, sr in zip(padded, out, strict=True):
                upscale_tiled(self._run, image, s, side, overlap, sr, margin=margin,
                              on_tile=tile_done)
        for sr in out:
            _check_finite(sr)
        return out[0] if single else out


def load_generator(
    path: str | os.PathLike | None = None, *, dtype: Any = "float32"
) -> Upscaler:
    """An `Upscaler` for a shipped model's name, a model file or a training workdir; by default
    the shipped model `registry.DEFAULT_MODEL`. Its `.model` and `.variables` are the Flax module
    and its variables, for use with `model.apply(variables, lr, train=False)`."""
    return Upscaler.from_path(path, dtype=dtype)


@functools.lru_cache(maxsize=4)
def _cached_upscaler(path: str, mtime_ns: int, dtype: str) -> Upscaler:
    del mtime_ns  # part of the cache key only: a rewritten file is loaded again
    return Upscaler.from_path(path, dtype=dtype)


def _as_upscaler(model: Any, dtype: Any) -> Upscaler:
    if isinstance(model, Upscaler):
        return model if dtype is None else model.with_dtype(dtype)
    dtype = _dtype("float32" if dtype is None else dtype).name
    if model is None:
        model = registry.shipped_model_path()
    if isinstance(model, str | os.PathLike):
        check_model_name(model)
        path = os.path.abspath(os.fspath(model))
        if not os.path.exists(path):
            return Upscaler.from_path(model, dtype=dtype)  # a shipped model's name, or an error
        return _cached_upscaler(path, os.stat(path).st_mtime_ns, dtype)
    if isinstance(model, dict):
        return Upscaler(model, dtype=dtype)
    raise TypeError(
        "upscale: the model must be an Upscaler, a shipped model's name, a path to a model file "
        "or workdir, a generator's {'params', 'batch_stats'} dict or None, got "
        f"{type(model).__name__}"
    )


# PIL modes upscaled as they are (mode -> numpy layout is np.asarray's); others are converted.
_PIL_NATIVE = frozenset({"L", "LA", "RGB", "RGBA", "I;16", "F"})


def _pil_to_array(image: Image.Image) -> tuple[np.ndarray, Callable[[np.ndarray], Image.Image]]:
    """Pixels of a PIL image and the function that makes an image of the same mode from new ones.

    Palette, 1-bit, CMYK and other colour spaces are converted (to RGB, RGBA when the image has
    transparency, or L); the result then has that mode. 32-bit integer images ('I') are taken
    as 16-bit samples, as Pillow reads 16-bit PNGs. Animated images are refused.
    """
    if getattr(image, "n_frames", 1) > 1:
        raise ValueError(
            f"upscale: animated image ({image.n_frames} frames); upscale its frames one by one"
        )
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
    outscale: float | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
    dtype: Any = None,
    alpha: str = "bicubic",
) -> Any:
    """Upscales one image with a trained generator; returns the same kind of image.

    Args:
      model: an `Upscaler`, a shipped model's name (`srgan-jax models`), a path to a model file or
        training workdir (loaded once and cached), a generator's `{'params', 'batch_stats'}` dict
        (architecture read off its shapes), or None: the default shipped model.
      image: numpy uint8, uint16 or float ([0, 1]) array shaped (H, W), (H, W, 1), (H, W, 2)
        (gray + alpha), (H, W, 3) or (H, W, 4), or a PIL image (palette, 1-bit and CMYK images
        come back as RGB/RGBA/L; animated images are refused).
      outscale: the output's size relative to the input (any positive number): the model's
        output is resized to it with MATLAB's bicubic `imresize`. Default: the model's scale.
      tile, tile_overlap: see `Upscaler.__call__` (default: automatic, exact).
      dtype: compute dtype, 'float32' (default) or 'bfloat16'.
      alpha: 'bicubic' (default) or 'model': how an alpha channel is upscaled.

    Returns:
      An array of the input's dtype and channels, or a PIL image of the input's mode.
    """
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {ALPHA_MODES}, got {alpha!r}")
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
    sr = upscale_pixels(upscaler, pixels[None], alpha=alpha, outscale=outscale, tile=tile,
                        tile_overlap=tile_overlap)
    return to_image(sr[0])
