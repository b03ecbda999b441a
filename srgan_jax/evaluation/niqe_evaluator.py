"""The `niqe` evaluator: NIQE of the SR images during validation, with bicubic's and HR's.

    config.evals.niqe = {"border": None}     # -> val/niqe, val/bicubic_niqe, val/hr_niqe

NIQE (`srgan_jax.evaluation.niqe`) measures how natural an image looks without a reference;
lower is better, and the HR images' value is what a perfect upscaler would reach. It is the
number to watch in the GAN phase, where PSNR falls by design.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from srgan_jax.evaluation import niqe, protocol
from srgan_jax.evaluation.validation_set import ValidationSet


@dataclasses.dataclass(frozen=True)
class Niqe:
    """Mean NIQE of uint8 SR images, and of the bicubic baseline and HR images (once per set).

    Metrics: `niqe`, `bicubic_niqe`, `hr_niqe`. `border`: pixels cropped at each side first
    (None: the scale). Every image must keep one 96x96 block after the border (`check`).
    """

    border: int | None = None

    def __post_init__(self) -> None:
        protocol.check_border(self.border)

    def check(self, validation: ValidationSet) -> None:
        """Raises `ValueError` naming the first image too small for NIQE after the border."""
        protocol.require_size(validation.images, self.border, niqe.BLOCK, "NIQE")

    def __call__(self, validation: ValidationSet, sr_images: Sequence[np.ndarray]
                 ) -> dict[str, float]:
        bicubic, hr = validation.baseline_naturalness(self.border)
        return {"niqe": validation.naturalness(sr_images, self.border),
                "bicubic_niqe": bicubic, "hr_niqe": hr}
