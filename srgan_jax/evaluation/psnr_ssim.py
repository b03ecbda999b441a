"""The `psnr_ssim` evaluator: the published tables' Y-channel PSNR and SSIM, with bicubic's."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from srgan_jax import metrics
from srgan_jax.evaluation import protocol
from srgan_jax.evaluation.validation_set import ValidationSet


@dataclasses.dataclass(frozen=True)
class PsnrSsim:
    """Mean PSNR/SSIM of uint8 SR images, and of the bicubic baseline (computed once per set).

    Metrics: `psnr`, `ssim`, `bicubic_psnr`, `bicubic_ssim`. `border`: pixels cropped at each side
    before measuring (None: the scale, as the published tables do).
    """

    border: int | None = None

    def __post_init__(self) -> None:
        protocol.check_border(self.border)

    def check(self, validation: ValidationSet) -> None:
        """Raises `ValueError` naming the first image too small for SSIM after the border."""
        protocol.require_size(validation.images, self.border, metrics.SSIM_WINDOW, "SSIM")

    def __call__(self, validation: ValidationSet, sr_images: Sequence[np.ndarray]
                 ) -> dict[str, float]:
        scores = validation.score(sr_images, self.border)
        baseline = validation.bicubic_scores(self.border)
        return {
            "psnr": scores.psnr,
            "ssim": scores.ssim,
            "bicubic_psnr": baseline.psnr,
            "bicubic_ssim": baseline.ssim,
        }
