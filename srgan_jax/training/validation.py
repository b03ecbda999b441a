"""Validation during training: the evaluation protocol on the generator, and sample strips.

Every `eval_every` steps the generator super-resolves the validation images exactly as
`srgan-jax evaluate` does (`srgan_jax.evaluation`: uint8 LR by MATLAB bicubic, the model through
`upscaling.inference.Upscaler`, uint8 SR, Y channel, `scale` border) and `config.evals` score it,
next to the bicubic baseline computed once (`val/psnr`, `val/bicubic_psnr`, ...). Every
`sample_every` steps strips LR-bicubic | SR | HR of the first images go to TensorBoard and
`<workdir>/samples/`.
"""
from __future__ import annotations

import ml_collections
import numpy as np
from absl import logging

from srgan_jax import models, workdirs
from srgan_jax.data import input_pipeline
from srgan_jax.evaluation import evaluators
from srgan_jax.evaluation.validation_set import ValidationSet
from srgan_jax.training import metric_writers
from srgan_jax.training.train_state import TrainState
from srgan_jax.upscaling.inference import Upscaler

SAMPLE_SIZE = 384  # sample strips show at most the central SAMPLE_SIZE^2 pixels of each panel


def validation_set(config: ml_collections.ConfigDict) -> ValidationSet:
    """The first `config.num_eval_images` validation images of `config.data`, prepared once.

    Image folders are read as `srgan-jax evaluate` reads them, so that the logged numbers are the
    ones it prints for the exported model on the same folder.
    """
    scale, count = config.model.scale, config.num_eval_images
    if config.data.source == "folder":
        return ValidationSet.from_folders(config.data.eval_dirs, scale, max_images=count)
    source = input_pipeline.make_source(config.data, split="validation")
    if source.lr is not None and source.lr_scale != scale:
        raise ValueError(f"config.model.scale={scale} differs from the dataset's LR scale "
                         f"{source.lr_scale} ({source.name})")
    count = min(count, len(source))
    return ValidationSet.from_arrays(
        source.names[:count], [source.hr[i] for i in range(count)], scale,
        None if source.lr is None else [source.lr[i] for i in range(count)], name=source.name)


class Validation:
    """The evaluators of `config.evals` on the generator's uint8 SR images of `validation_set`."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.set = validation_set(config)
        for error in self.set.skipped:
            logging.warning("validation: %s", error)
        self.evaluators = evaluators.create_evaluators(config.evals)
        evaluators.check_evaluators(self.evaluators, self.set)
        self._upscaler: Upscaler | None = None

    def super_resolve(self, generator: TrainState) -> list[np.ndarray]:
        """uint8 SR images of every validation image (host states of the generator)."""
        variables = {"params": generator.params, "batch_stats": generator.batch_stats}
        # The architecture as trained (the GAN phase's may be BN-free: gan.fold_batch_norm)
        architecture = models.ModelConfig.from_variables(variables)
        if self._upscaler is None or self._upscaler.config != architecture:
            # float32 whatever the training dtype: the numbers `srgan-jax evaluate` gives by
            # default. The compiled forward pass is cached across validations.
            self._upscaler = Upscaler(variables, architecture, dtype="float32")
        else:
            self._upscaler = self._upscaler.with_variables(variables)
        return self.set.super_resolve(self._upscaler)

    def evaluate(self, sr_images: list[np.ndarray]) -> dict[str, float]:
        """Every evaluator's metrics of `sr_images` (PSNR/SSIM and bicubic's by default)."""
        return evaluators.run_evaluators(self.evaluators, self.set, sr_images)

    def samples(self, sr_images: list[np.ndarray], count: int) -> list[np.ndarray]:
        """uint8 RGB strips LR-bicubic | SR | HR (centre crops) of the first `count` images."""
        panels = zip(self.set.bicubic, sr_images, [image.hr for image in self.set.images],
                     strict=True)
        return [np.concatenate([_centre_crop(_rgb(x), SAMPLE_SIZE) for x in images], axis=1)
                for images in list(panels)[:count]]


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image


def _centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    top, left = max(0, (image.shape[0] - size) // 2), max(0, (image.shape[1] - size) // 2)
    return image[top : top + size, left : left + size]


def write_samples(
    writer: metric_writers.MetricWriter, workdir: str, step: int, strips: list[np.ndarray]
) -> None:
    """Sample strips to TensorBoard and to `<workdir>/samples/step<step>_<i>.png`."""
    writer.write_images(step, {f"samples/{i}": strip for i, strip in enumerate(strips)})
    sample_dir = workdirs.workdir_path(workdir) / "samples"
    sample_dir.mkdir(parents=True, exist_ok=True)
    for i, strip in enumerate(strips):
        workdirs.write_png(sample_dir / f"step{step:08d}_{i}.png", strip)
