"""The evaluation protocol of published SR tables, one image at a time, on uint8 arrays.

The MATLAB scripts behind the tables of SRCNN, VDSR and SRGAN do, for each HR image:
1. crop the bottom/right to a multiple of the scale (`modcrop`);
2. make the LR image with MATLAB's antialiased bicubic `imresize(hr, 1/scale)` in uint8
   arithmetic (`imresize.degrade`), unless the dataset comes with its own uint8 LR images;
3. upscale it, and store the SR image as uint8 (MATLAB `im2uint8` of the [0, 1] result);
4. compare SR and HR on the BT.601 Y channel (grayscale images on their gray values) with
   `border` (default: `scale`) pixels cropped at each side: PSNR, and SSIM with an 11x11 Gaussian;
   perceptual papers add NIQE of the SR image alone (no reference), on the same cropped Y plane.

Every function here takes or returns uint8 images, so that the trainer's validation and
`srgan-jax evaluate` cannot differ in how they quantize. Errors name the image (`ImageError`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from srgan_jax import metrics, value_ranges
from srgan_jax.evaluation import niqe as niqe_metric
from srgan_jax.imresize import degrade, im2uint8, imresize, modcrop

UpscaleFn = Callable[[np.ndarray], np.ndarray]
"""An RGB model: float32 LR in [0, 1], (h, w, 3) -> float SR in [0, 1], (scale*h, scale*w, 3)."""


class ImageError(ValueError):
    """One image that cannot be evaluated; the message names it (the others still can be)."""


@dataclasses.dataclass(frozen=True)
class ValidationImage:
    """One HR image, cropped to the scale, with the uint8 LR image the models get.

    `hr` is uint8 (H, W) for grayscale or (H, W, 3); `lr` is uint8 of the same kind, H/scale x
    W/scale. `name` identifies the image in results ('baby.png'); `origin` in messages (its path).
    """

    name: str
    hr: np.ndarray
    lr: np.ndarray
    origin: str

    @property
    def scale(self) -> int:
        return self.hr.shape[0] // self.lr.shape[0]


@dataclasses.dataclass(frozen=True)
class ImageScore:
    name: str
    psnr: float
    ssim: float
    niqe: float | None = None  # measured on request (`naturalness`)


@dataclasses.dataclass(frozen=True)
class Scores:
    """Mean PSNR (dB), SSIM and NIQE (None unless every image has one) over images, with the
    per-image values they are the mean of."""

    psnr: float
    ssim: float
    images: tuple[ImageScore, ...]
    niqe: float | None = None

    @classmethod
    def mean_of(cls, images: Sequence[ImageScore]) -> Scores:
        if not images:
            raise ValueError("no image scores to average")
        niqes = [s.niqe for s in images]
        return cls(
            float(np.mean([s.psnr for s in images])),
            float(np.mean([s.ssim for s in images])),
            tuple(images),
            None if None in niqes else float(np.mean(niqes)),
        )


def prepare_image(
    name: str, hr: np.ndarray, scale: int, lr: np.ndarray | None = None, origin: str | None = None
) -> ValidationImage:
    """An HR image (uint8, (H, W) or (H, W, 3)) made ready for the protocol (steps 1 and 2).

    With `lr` (the dataset's uint8 LR image) the HR image must be `scale` times its size after
    the crop; without, the LR image is `degrade`d from the cropped HR image.
    """
    origin = name if origin is None else origin
    if not (isinstance(scale, int | np.integer) and scale >= 1):
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    hr = np.asarray(hr)
    if hr.dtype != np.uint8 or not (hr.ndim == 2 or (hr.ndim == 3 and hr.shape[-1] == 3)):
        raise ImageError(f"{origin}: HR images must be uint8 (H, W) or (H, W, 3), "
                         f"got {hr.dtype} {hr.shape}")
    if min(hr.shape[:2]) < scale:
        raise ImageError(f"{origin}: {hr.shape[1]}x{hr.shape[0]} pixels is too small for "
                         f"scale {scale}")
    hr = np.ascontiguousarray(modcrop(hr, scale))
    if lr is None:
        lr = degrade(hr, scale)
    else:
        lr = np.asarray(lr)
        expected = (hr.shape[0] // scale, hr.shape[1] // scale, *hr.shape[2:])
        if lr.dtype != np.uint8 or lr.shape != expected:
            raise ImageError(f"{origin}: the LR image is {lr.dtype} {lr.shape}, but HR "
                             f"{hr.shape} at scale {scale} needs uint8 {expected}")
    return ValidationImage(name, hr, lr, origin)


def bicubic_upscaler(scale: int) -> UpscaleFn:
    """The bicubic baseline as an upscaler: MATLAB's `imresize(uint8(lr), scale, 'bicubic')`.

    The LR image is taken back to 8 bits (lossless for the LR images of the protocol) and resized
    in MATLAB's uint8 arithmetic, so its SR image is exactly MATLAB's.
    """

    def upscale(lr: np.ndarray) -> np.ndarray:
        return imresize(im2uint8(lr), scale=scale).astype(np.float64) / 255.0

    return upscale


def gray_via_rgb(upscale: UpscaleFn) -> UpscaleFn:
    """`upscale` (RGB) extended to grayscale (H, W) input, which it gets as three equal channels;
    the gray result is the BT.601 luma of its output. RGB input passes through unchanged."""

    def upscale_any(lr: np.ndarray) -> np.ndarray:
        if lr.ndim == 3:
            return upscale(lr)
        sr = np.asarray(upscale(np.repeat(lr[..., None], 3, axis=-1)))
        return sr.astype(np.float64) @ metrics.LUMA_WEIGHTS if sr.ndim == 3 else sr

    return upscale_any


def super_resolve(image: ValidationImage, upscale: UpscaleFn) -> np.ndarray:
    """The uint8 SR image `upscale` makes of `image`'s LR image (step 3).

    A grayscale image goes through the RGB model as three equal channels and comes back as the
    BT.601 luma of the result (`gray_via_rgb`), so that it is still measured on its gray values.
    """
    try:
        sr = np.asarray(gray_via_rgb(upscale)(value_ranges.lr_from_uint8(image.lr)))
    except ImageError:
        raise
    except ValueError as error:  # the model's own complaints about this input
        raise ImageError(f"{image.origin}: {error}") from error
    if sr.shape != image.hr.shape:
        raise ImageError(f"{image.origin}: the model made an SR image shaped {sr.shape}, but the "
                         f"(cropped) HR image is {image.hr.shape}: is the model's scale "
                         f"{image.scale}?")
    if not np.isfinite(sr).all():
        raise ImageError(f"{image.origin}: the model's output has NaN or infinite values "
                         "(damaged weights?)")
    return im2uint8(sr)


def check_border(border: int | None) -> None:
    """An evaluator's `border` option: None (the scale) or an integer >= 0."""
    if border is not None and not (isinstance(border, int) and border >= 0):
        raise ValueError(f"border must be None (the scale) or an integer >= 0, got {border!r}")


def require_size(images: Sequence[ValidationImage], border: int | None, size: int,
                 metric: str) -> None:
    """Raises `ValueError` naming the first image with less than size x size pixels after
    `border` (None: the scale) pixels are cropped at each side: `metric` cannot measure it."""
    for image in images:
        crop = image.scale if border is None else border
        height, width = (side - 2 * crop for side in image.hr.shape[:2])
        if min(height, width) < size:
            raise ValueError(f"{image.origin}: {max(width, 0)}x{max(height, 0)} pixels after the "
                             f"{crop}-pixel border; {metric} needs at least {size}x{size}")


def naturalness(image: ValidationImage, picture: np.ndarray, border: int | None = None) -> float:
    """NIQE of `picture` (an SR image of `image`, or its HR image) on the Y channel with `border`
    (default: the scale) pixels cropped; lower is more natural (`srgan_jax.evaluation.niqe`)."""
    border = image.scale if border is None else border
    try:
        return niqe_metric.niqe(picture, border)
    except ValueError as error:  # smaller than one 96x96 block after the border, or flat
        raise ImageError(f"{image.origin}: {error}") from error


def score(image: ValidationImage, sr: np.ndarray, border: int | None = None,
          with_niqe: bool = False) -> ImageScore:
    """Y-channel PSNR and SSIM of a uint8 SR image against `image`'s HR (step 4), and its NIQE
    if `with_niqe`."""
    border = image.scale if border is None else border
    sr = np.asarray(sr)
    if sr.dtype != np.uint8 or sr.shape != image.hr.shape:
        raise ImageError(f"{image.origin}: SR image is {sr.dtype} {sr.shape}, HR is uint8 "
                         f"{image.hr.shape}")
    try:
        psnr = metrics.psnr(sr, image.hr, border=border)
        ssim = metrics.ssim(sr, image.hr, border=border)
    except ValueError as error:  # too small for the border and the SSIM window
        raise ImageError(f"{image.origin}: {error}") from error
    return ImageScore(image.name, psnr, ssim,
                      naturalness(image, sr, border) if with_niqe else None)
