"""Evaluators by name from `config.evals`: the default PSNR/SSIM one and config errors."""
import ml_collections
import numpy as np
import pytest

from srgan_jax.evaluation import evaluators, niqe
from srgan_jax.evaluation.niqe_evaluator import Niqe
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
    ({}, "config.evals is empty; name at least one of niqe, psnr_ssim"),
    ({"lpips": {}}, "config.evals.lpips: unknown evaluator 'lpips'; known: niqe, psnr_ssim"),
    ({"niqe": {"border": -1}}, "config.evals.niqe: border must be None .* got -1"),
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


def textured(shape, seed):
    """uint8 RGB with smooth shading, an edge and noise: NIQE is finite on it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    plane = 128 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0) + 40 * (x > shape[1] // 3)
    rgb = plane[..., None] + rng.normal(0, 8, (*shape, 3))
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def test_niqe_evaluator_measures_sr_bicubic_and_hr_on_the_cropped_images():
    hr = [textured((104, 112), 0), textured((120, 104), 1)]
    validation = ValidationSet.from_arrays(["a.png", "b.png"], hr, 4)
    created = evaluators.create_evaluators({"niqe": {}})
    assert created == {"niqe": Niqe(border=None)}
    evaluators.check_evaluators(created, validation)
    sr_images = [np.clip(image.hr.astype(int) - 5, 0, 255).astype(np.uint8)
                 for image in validation.images]
    results = evaluators.run_evaluators(created, validation, sr_images)
    expected = {
        "niqe": np.mean([niqe.niqe(sr, 4) for sr in sr_images]),
        "bicubic_niqe": np.mean([niqe.niqe(b, 4) for b in validation.bicubic]),
        "hr_niqe": np.mean([niqe.niqe(image.hr, 4) for image in validation.images]),
    }
    assert results == pytest.approx(expected, rel=1e-12)
    assert len(set(results.values())) == 3


@pytest.mark.parametrize(("evals", "message"), [
    ({"niqe": {}}, r"config.evals.niqe: b.png: 96x92 pixels after the 4-pixel border; NIQE needs "
                   r"at least 96x96"),
    ({"psnr_ssim": {"border": 45}}, r"config.evals.psnr_ssim: b.png: 14x10 pixels after the "
                                    r"45-pixel border; SSIM needs at least 11x11"),
])
def test_images_an_evaluator_cannot_measure_are_named_before_training(evals, message):
    hr = [textured((104, 112), 0), textured((100, 104), 1)]
    validation = ValidationSet.from_arrays(["a.png", "b.png"], hr, 4)
    created = evaluators.create_evaluators(evals)
    with pytest.raises(ValueError, match=message):
        evaluators.check_evaluators(created, validation)
