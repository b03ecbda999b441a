"""Evaluators by name from `config.evals`: the default PSNR/SSIM one and config errors."""
import ml_collections
import numpy as np
import pytest

from srgan_jax.evaluation import evaluators
from srgan_jax.evaluation.psnr_ssim import PsnrSsim
from srgan_jax.evaluation.validation_set import ValidationSet


@pytest.fixture(scope="module")
def validation():
    rng = np.random.default_rng(0)
    hr = [rng.integers(0, 256, (40, 44, 3), dtype=np.uint8),
          rng.integers(0, 256, (36, 48), dtype=np.uint8)]
    return ValidationSet.from_arrays(["a.png", "b.png"], hr, 2)


def test_default_config_runs_psnr_ssim_with_the_bicubic_baseline(validation):
    created = evaluators.create_evaluators(evaluators.default_config())
    assert created == {"psnr_ssim": PsnrSsim(border=None)}
    sr_images = [np.clip(hr.astype(int) + 3, 0, 255).astype(np.uint8)
                 for hr in (image.hr for image in validation.images)]
    results = evaluators.run_evaluators(created, validation, sr_images)
    scores, baseline = validation.score(sr_images), validation.bicubic_scores()
    assert results == {"psnr": scores.psnr, "ssim": scores.ssim,
                       "bicubic_psnr": baseline.psnr, "bicubic_ssim": baseline.ssim}


def test_options_reach_the_evaluator(validation):
    config = evaluators.default_config()
    config.psnr_ssim.border = 0
    created = evaluators.create_evaluators(config)
    results = evaluators.run_evaluators(created, validation, list(validation.bicubic))
    assert results["psnr"] == validation.bicubic_scores(border=0).psnr == results["bicubic_psnr"]
    assert results["psnr"] != validation.bicubic_scores().psnr


@pytest.mark.parametrize(("evals", "message"), [
    ({}, "config.evals is empty; name at least one of psnr_ssim"),
    ({"lpips": {}}, "config.evals.lpips: unknown evaluator 'lpips'; known: psnr_ssim"),
    ({"x": {"type": "fid"}}, "config.evals.x: unknown evaluator 'fid'"),
    ({"psnr_ssim": {"window": 7}}, "config.evals.psnr_ssim: .*'window'"),
    ({"psnr_ssim": {"border": -3}}, "config.evals.psnr_ssim: border must be None .* got -3"),
    ({"psnr_ssim": {"border": 1.5}}, "config.evals.psnr_ssim: border must be"),
])
def test_config_errors_name_the_field(evals, message):
    with pytest.raises(ValueError, match=message):
        evaluators.create_evaluators(ml_collections.ConfigDict(evals))


def test_one_kind_twice_needs_distinct_metric_names(validation):
    created = evaluators.create_evaluators(
        {"psnr_ssim": {}, "psnr_ssim_b0": {"type": "psnr_ssim", "border": 0}})
    assert created["psnr_ssim_b0"] == PsnrSsim(border=0)
    with pytest.raises(ValueError, match=r"config.evals.psnr_ssim_b0: metrics \['bicubic_psnr'"):
        evaluators.run_evaluators(created, validation, list(validation.bicubic))
