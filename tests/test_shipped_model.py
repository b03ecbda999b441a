"""The generators shipped in srgan_jax/weights/: installed, loadable, the default model the default
of `upscale`, and each as good on Set5 as its model card says."""
from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

import srgan_jax
from srgan_jax.evaluation import evaluate
from srgan_jax.upscaling import model_file, registry, upscale_cli

# Made to look natural (NIQE) rather than to score PSNR: at bicubic's PSNR, as the paper's SRGAN
# is (Set14 26.02 dB against bicubic's 25.99).
NATURALNESS_MODELS = {"srgan_mse_gridfree_x4"}


def card_row(name: str, dataset: str) -> dict[str, float]:
    """Shipped model `name`'s card, its measured row for `dataset`: bicubic's and the model's
    PSNR/SSIM/NIQE, and HR's NIQE."""
    card = registry.WEIGHTS_DIR / registry.shipped_models()[name].card
    names = ("bicubic_psnr", "bicubic_ssim", "bicubic_niqe", "psnr", "ssim", "niqe", "hr_niqe")
    pattern = rf"^\| {dataset} \| \d+ \|" + r" ([\d.]+) \|" * len(names) + "$"
    match = re.search(pattern, card.read_text(), flags=re.MULTILINE)
    assert match, f"no {dataset} row in {card}"
    return dict(zip(names, map(float, match.groups()), strict=True))


def test_shipped_model_is_the_papers_generator():
    path = registry.shipped_model_path()
    config = model_file.load_model(path)[0]
    assert (config.num_blocks, config.channels, config.scale) == (16, 64, 4)
    assert path.stat().st_size < 8 << 20  # a few MB, float32


def test_load_generator_and_upscale_default_to_the_shipped_model():
    lr = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    shipped = srgan_jax.load_generator()
    sr = srgan_jax.upscale(None, lr)
    assert sr.shape == (48, 40, 3) and sr.dtype == np.uint8
    np.testing.assert_array_equal(sr, srgan_jax.upscale(shipped, lr))


def test_cli_upscales_without_a_model_argument(tmp_path):
    Image.fromarray(np.full((9, 11, 3), 120, np.uint8)).save(tmp_path / "photo.png")
    assert upscale_cli.main([str(tmp_path / "photo.png"), "-o", str(tmp_path / "out")]) == 0
    assert Image.open(tmp_path / "out" / "photo_x4.png").size == (44, 36)


@pytest.mark.parametrize("name", list(registry.shipped_models()))
def test_set5_matches_the_model_card_and_beats_bicubic(shared_data, name):
    upscaler = evaluate.gray_via_rgb(srgan_jax.load_generator(name))
    measured = evaluate.evaluate_folder(shared_data / "benchmarks" / "Set5", upscaler, scale=4,
                                        with_niqe=True)
    card = card_row(name, "Set5")
    assert measured["psnr"] == pytest.approx(card["psnr"], abs=0.01)
    assert measured["ssim"] == pytest.approx(card["ssim"], abs=1e-4)
    assert measured["niqe"] == pytest.approx(card["niqe"], abs=0.01)
    assert measured["hr_niqe"] == pytest.approx(card["hr_niqe"], abs=0.01)
    assert measured["niqe"] < card["bicubic_niqe"] - 0.5
    if name not in NATURALNESS_MODELS:
        assert measured["psnr"] > card["bicubic_psnr"] + 0.5
