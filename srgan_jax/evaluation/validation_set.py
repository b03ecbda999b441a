"""A validation set: images prepared once for the protocol, a bicubic baseline computed once.

    validation = ValidationSet.from_folders(["data/Set5"], scale=4)
    sr_images = validation.super_resolve(upscale)     # uint8, one per image
    scores = validation.score(sr_images)              # Scores(psnr, ssim, images)
    baseline = validation.bicubic_scores()            # cached

The trainer builds one from its validation data and calls it with its generator in memory;
`srgan-jax evaluate` builds one per folder. Both measure through `protocol`, so for the same model
and images they give the same numbers.
"""
from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from srgan_jax import image_io
from srgan_jax.evaluation import protocol
from srgan_jax.evaluation.protocol import ImageError, Scores, UpscaleFn, ValidationImage


def read_hr(path: str | os.PathLike) -> np.ndarray:
    """An HR image file as uint8: (H, W) for grayscale, (H, W, 3) otherwise; alpha is dropped.

    Grayscale stays grayscale so that it is measured on its gray values; 16-bit files are scaled
    to 8 bits (`image_io.to_uint8`).
    """
    pixels = image_io.to_uint8(image_io.read_image(path).pixels)
    if pixels.ndim == 3 and pixels.shape[-1] in (1, 2):  # gray, or gray + alpha
        pixels = pixels[..., 0]
    elif pixels.ndim == 3:
        pixels = pixels[..., :3]
    return np.ascontiguousarray(pixels)


def list_dataset(folder: str | os.PathLike) -> list[pathlib.Path]:
    """The image files of a dataset folder (and its sub-folders); an error if there are none."""
    paths = image_io.list_images(folder)
    if not paths:
        raise ValueError(f"{folder}: no image files in this folder (.png, .jpg, .webp, .tif, "
                         ".bmp or any other format Pillow reads)")
    return paths


def load_image(path: pathlib.Path, root: pathlib.Path, scale: int) -> ValidationImage:
    """The image file `path` of the dataset folder `root`, named by its path inside `root`."""
    try:
        hr = read_hr(path)
    except image_io.ImageReadError as error:
        raise ImageError(str(error)) from error
    return protocol.prepare_image(path.relative_to(root).as_posix(), hr, scale, origin=str(path))


class ValidationSet:
    """Images prepared for the protocol at one `scale` (see `protocol.prepare_image`).

    `skipped` holds the errors of images left out (unreadable, too small), each naming its file.
    """

    def __init__(
        self,
        images: Sequence[ValidationImage],
        scale: int,
        name: str = "validation",
        skipped: Sequence[ImageError] = (),
    ):
        if not images:
            reasons = "".join(f"; {error}" for error in skipped[:3])
            raise ValueError(f"{name}: no usable validation image{reasons}")
        wrong = [image.origin for image in images if image.scale != scale]
        if wrong:
            raise ValueError(f"{name}: images {wrong} are not prepared for scale {scale}")
        self.images = tuple(images)
        self.scale = scale
        self.name = name
        self.skipped = tuple(skipped)

    @classmethod
    def from_arrays(
        cls,
        names: Sequence[str],
        hr: Sequence[np.ndarray],
        scale: int,
        lr: Sequence[np.ndarray] | None = None,
        name: str = "validation",
    ) -> ValidationSet:
        """From uint8 HR images (and the dataset's own uint8 LR images, if it has them), as a
        TFDS source gives them. Images too small for the scale, or with LR images of the wrong
        size, are left out, into `skipped`.
        """
        lr = [None] * len(hr) if lr is None else lr
        if not len(names) == len(hr) == len(lr):
            raise ValueError(f"{name}: {len(names)} names, {len(hr)} HR and {len(lr)} LR images")
        images, skipped = [], []
        for image_name, image_hr, image_lr in zip(names, hr, lr, strict=True):
            try:
                images.append(protocol.prepare_image(image_name, image_hr, scale, image_lr))
            except ImageError as error:
                skipped.append(error)
        return cls(images, scale, name, skipped)

    @classmethod
    def from_folders(
        cls,
        folders: Sequence[str | os.PathLike],
        scale: int,
        max_images: int | None = None,
        name: str | None = None,
    ) -> ValidationSet:
        """The image files of `folders` (recursively, sorted per folder), the first `max_images`.

        Files that cannot be read or are too small are left out, into `skipped`; a missing or
        image-less folder is an error.
        """
        images, skipped = [], []
        for folder in folders:
            for path in list_dataset(folder):
                if max_images is not None and len(images) >= max_images:
                    break
                try:
                    images.append(load_image(path, pathlib.Path(folder), scale))
                except ImageError as error:
                    skipped.append(error)
        name = ", ".join(os.fspath(f) for f in folders) if name is None else name
        return cls(images, scale, name, skipped)

    def __len__(self) -> int:
        return len(self.images)

    def super_resolve(self, upscale: UpscaleFn) -> list[np.ndarray]:
        """uint8 SR images of every image by `upscale` (an RGB model, see `protocol.UpscaleFn`)."""
        return [protocol.super_resolve(image, upscale) for image in self.images]

    def score(self, sr_images: Sequence[np.ndarray], border: int | None = None) -> Scores:
        """Mean and per-image PSNR/SSIM of uint8 SR images, one per image in order."""
        if len(sr_images) != len(self.images):
            raise ValueError(f"{self.name}: {len(sr_images)} SR images for {len(self)} images")
        return Scores.mean_of([protocol.score(image, sr, border)
                               for image, sr in zip(self.images, sr_images, strict=True)])

    @functools.cached_property
    def bicubic(self) -> tuple[np.ndarray, ...]:
        """uint8 bicubic upscalings of the LR images: the baseline, computed once."""
        return tuple(self.super_resolve(protocol.bicubic_upscaler(self.scale)))

    @functools.cache  # noqa: B019 (one set per run, kept for the whole run anyway)
    def bicubic_scores(self, border: int | None = None) -> Scores:
        """The bicubic baseline's scores, computed once per border."""
        return self.score(self.bicubic, border)

    def naturalness(self, pictures: Sequence[np.ndarray], border: int | None = None) -> float:
        """Mean NIQE of uint8 pictures, one per image in order (SR images, or the HR images)."""
        if len(pictures) != len(self.images):
            raise ValueError(f"{self.name}: {len(pictures)} pictures for {len(self)} images")
        return float(np.mean([protocol.naturalness(image, picture, border)
                              for image, picture in zip(self.images, pictures, strict=True)]))

    @functools.cache  # noqa: B019
    def baseline_naturalness(self, border: int | None = None) -> tuple[float, float]:
        """Mean NIQE of the bicubic baseline and of the HR images, computed once per border."""
        return (self.naturalness(self.bicubic, border),
                self.naturalness([image.hr for image in self.images], border))
