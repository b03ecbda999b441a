"""Evaluators chosen by name in the config, as big_vision's `config.evals`.

    config.evals = ml_collections.ConfigDict({"psnr_ssim": {"border": placeholder(int)}})

Each entry `name: {options}` makes the evaluator `EVALUATORS[name]` (or `EVALUATORS[type]`, when
the options have a `type`, to run one kind twice with different options) with the remaining
options. An evaluator is a callable `(validation_set, sr_images) -> {metric: value}` on the uint8
SR images of a `ValidationSet`; the trainer logs the metrics as `val/<metric>`. A new metric (a
perceptual one, say) is one more module with such a class, and one more line below.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import ml_collections
import numpy as np
from ml_collections.config_dict import placeholder

from srgan_jax.evaluation.niqe_evaluator import Niqe
from srgan_jax.evaluation.psnr_ssim import PsnrSsim
from srgan_jax.evaluation.validation_set import ValidationSet


class Evaluator(Protocol):
    def __call__(self, validation: ValidationSet, sr_images: Sequence[np.ndarray]
                 ) -> dict[str, float]: ...

    def check(self, validation: ValidationSet) -> None:
        """Raises `ValueError` naming an image this evaluator cannot measure (at start-up)."""


EVALUATORS: dict[str, type] = {"psnr_ssim": PsnrSsim, "niqe": Niqe}


def default_config() -> ml_collections.ConfigDict:
    """`config.evals` of the published protocol: PSNR/SSIM with the border at the scale."""
    return ml_collections.ConfigDict({"psnr_ssim": {"border": placeholder(int)}})


def create_evaluators(evals: Mapping[str, Any]) -> dict[str, Evaluator]:
    """The evaluators `evals` (`config.evals`) names; cheap, so call it to check a config early.

    Raises `ValueError` naming the `config.evals` field for an unknown evaluator or option, or
    an option's bad value.
    """
    if not evals:
        raise ValueError("config.evals is empty; name at least one of "
                         + ", ".join(sorted(EVALUATORS)))
    evaluators = {}
    for name, options in evals.items():
        options = dict(options.to_dict() if hasattr(options, "to_dict") else options or {})
        kind = options.pop("type", name)
        if kind not in EVALUATORS:
            raise ValueError(f"config.evals.{name}: unknown evaluator {kind!r}; "
                             f"known: {', '.join(sorted(EVALUATORS))}")
        try:
            inspect.signature(EVALUATORS[kind]).bind(**options)
            evaluators[name] = EVALUATORS[kind](**options)
        except (TypeError, ValueError) as error:
            raise ValueError(f"config.evals.{name}: {error}") from error
    return evaluators


def check_evaluators(evaluators: Mapping[str, Evaluator], validation: ValidationSet) -> None:
    """Raises `ValueError` naming the `config.evals` field and the image when an evaluator
    cannot measure one of the validation images: at start-up, not at the first validation."""
    for name, evaluator in evaluators.items():
        try:
            evaluator.check(validation)
        except ValueError as error:
            raise ValueError(f"config.evals.{name}: {error}") from error


def run_evaluators(
    evaluators: Mapping[str, Evaluator],
    validation: ValidationSet,
    sr_images: Sequence[np.ndarray],
) -> dict[str, float]:
    """All evaluators' metrics of `sr_images` in one dict (an error if two share a name)."""
    results: dict[str, float] = {}
    for name, evaluator in evaluators.items():
        metrics = evaluator(validation, sr_images)
        clash = sorted(set(metrics) & set(results))
        if clash:
            raise ValueError(f"config.evals.{name}: metrics {clash} are also another "
                             "evaluator's; give it other options or remove one")
        results.update(metrics)
    return results
