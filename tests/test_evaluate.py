"""`srgan-jax evaluate`: published bicubic baselines, its outputs, and the same numbers as the
library the trainer validates with."""
import json
import pathlib

import numpy as np
import pytest
from fake_models import random_variables
from PIL import Image

from srgan_jax import cli
from srgan_jax.evaluation import evaluate, protocol
from srgan_jax.evaluation.validation_set import ValidationSet, read_hr
from srgan_jax.imresize import im2uint8
from srgan_jax.models import ModelConfig
from srgan_jax.upscaling import model_file
from srgan_jax.upscaling.inference import Upscaler

# x4 bicubic, Y channel, border 4: what a correct MATLAB-compatible evaluator gets on these files
# (published values, from rounded-Y MATLAB scripts: 28.42/0.8104, 26.00/0.7027, 25.96/0.6675).
BICUBIC_X4 = {
    "Set5": (28.43, 0.8111, 5),
    "Set14": (25.99, 0.7029, 14),
    "BSD100": (25.96, 0.6681, 100),
}


@pytest.mark.parametrize("dataset", list(BICUBIC_X4))
def test_bicubic_x4_reproduces_published_baseline(shared_data, dataset):
    result = evaluate.evaluate_folder(
        shared_data / "benchmarks" / dataset, protocol.bicubic_upscaler(4), scale=4
    )
    want_psnr, want_ssim, count = BICUBIC_X4[dataset]
    print(f"{dataset}: {result['psnr']:.4f} dB / {result['ssim']:.5f}")
    assert result["num_images"] == count
    assert result["psnr"] == pytest.approx(want_psnr, abs=0.01)
    assert result["ssim"] == pytest.approx(want_ssim, abs=0.0005)


def write_images(folder: pathlib.Path) -> None:
    """A colour and a grayscale HR image with sizes that are not multiples of 4 or 2."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:30, 0:37]
    smooth = 0.5 + 0.4 * np.sin(xx / 5.0)[..., None] * np.cos(yy / 7.0)[..., None]
    Image.fromarray(im2uint8(smooth * rng.uniform(0.6, 1.0, (1, 1, 3)))).save(folder / "colour.png")
    gray = im2uint8(0.5 + 0.3 * np.cos(xx[:27] / 3.0 + yy[:27] / 4.0))
    Image.fromarray(gray).save(folder / "gray.png")
    (folder / "notes.txt").write_text("not an image")


def test_evaluate_folder_is_the_validation_sets_scores(tmp_path):
    write_images(tmp_path / "toy")
    result = evaluate.evaluate_folder(tmp_path / "toy", protocol.bicubic_upscaler(2), 2, border=3)
    validation = ValidationSet.from_folders([tmp_path / "toy"], 2)
    scores = validation.score(validation.bicubic, border=3)
    assert result["dataset"] == "toy" and result["num_images"] == 2 and result["border"] == 3
    assert (result["psnr"], result["ssim"]) == (scores.psnr, scores.ssim)
    assert result["images"] == [{"name": s.name, "psnr": s.psnr, "ssim": s.ssim}
                                for s in scores.images]
    Image.fromarray(np.zeros((1, 5), np.uint8)).save(tmp_path / "toy" / "tiny.png")
    with pytest.raises(protocol.ImageError, match=r"tiny\.png: 5x1 pixels is too small"):
        evaluate.evaluate_folder(tmp_path / "toy", protocol.bicubic_upscaler(2), 2)


def test_cli_bicubic_table_json_markdown_and_sr_images(tmp_path, capsys):
    write_images(tmp_path / "toy")
    write_images(tmp_path / "other")
    code = evaluate.main([
        "--bicubic", str(tmp_path / "toy"), str(tmp_path / "other"), "--scale", "2",
        "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md"),
        "--save-dir", str(tmp_path / "sr"),
    ])
    assert code == cli.EXIT_OK
    direct = evaluate.evaluate_folder(tmp_path / "toy", protocol.bicubic_upscaler(2), scale=2)
    table = (tmp_path / "r.md").read_text()
    assert f"| toy | 2 | {direct['psnr']:.2f} | {direct['ssim']:.4f} |" in table
    captured = capsys.readouterr()
    assert captured.out == f"x2, Y-channel PSNR (dB) / SSIM, border 2\n{table}"  # stdout: only
    assert "srgan-jax evaluate: 4/4 images" in captured.err  # progress goes to stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["scale"] == 2 and report["border"] == 2 and report["failed"] == []
    assert [r["dataset"] for r in report["results"]["bicubic"]] == ["toy", "other"]
    assert report["results"]["bicubic"][0] == direct
    validation = ValidationSet.from_folders([tmp_path / "other"], 2)
    saved = np.asarray(Image.open(tmp_path / "sr" / "other" / "gray.png"))
    np.testing.assert_array_equal(saved, validation.bicubic[1])


def tiny_model(path: pathlib.Path, scale: int = 2) -> tuple[ModelConfig, dict]:
    """A small generator with random weights and BN statistics, written as a model file."""
    config = ModelConfig(num_blocks=1, channels=8, scale=scale)
    variables = random_variables(config, seed=1)
    model_file.save_model(path, variables, config)
    return config, variables


def test_cli_on_a_model_file_gives_what_the_library_gives(tmp_path, capsys):
    """What the trainer logs (a ValidationSet and its generator in memory) is what the CLI
    prints for the exported model: the same per-image values, not merely close ones."""
    write_images(tmp_path / "toy")
    config, variables = tiny_model(tmp_path / "model.msgpack")
    code = evaluate.main(["--model", str(tmp_path / "model.msgpack"), str(tmp_path / "toy"),
                          "--json", str(tmp_path / "r.json")])
    assert code == cli.EXIT_OK
    assert "| bicubic PSNR | bicubic SSIM | model PSNR | model SSIM |" in capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["scale"] == 2 and report["model"] == str(tmp_path / "model.msgpack")

    validation = ValidationSet.from_folders([tmp_path / "toy"], config.scale)
    in_memory = Upscaler(variables, config)  # the generator the trainer holds, not the file
    sr_images = validation.super_resolve(in_memory)
    scores = validation.score(sr_images)
    model_row = report["results"]["model"][0]
    assert (model_row["psnr"], model_row["ssim"]) == (scores.psnr, scores.ssim)
    assert model_row["images"] == [{"name": s.name, "psnr": s.psnr, "ssim": s.ssim}
                                   for s in scores.images]
    baseline = validation.bicubic_scores()
    bicubic_row = report["results"]["bicubic"][0]
    assert (bicubic_row["psnr"], bicubic_row["ssim"]) == (baseline.psnr, baseline.ssim)


def test_cli_niqe_of_bicubic_and_hr_in_table_json_and_markdown(shared_data, tmp_path, capsys):
    out, table = tmp_path / "out.json", tmp_path / "table.md"
    set14 = shared_data / "benchmarks" / "Set14"
    status = cli.main(["evaluate", "--bicubic", "--niqe", str(set14), "--json", str(out),
                       "--markdown", str(table)])
    assert status == cli.EXIT_OK
    printed = capsys.readouterr().out
    assert "NIQE (lower is more natural)" in printed
    assert "| dataset | images | bicubic PSNR | bicubic SSIM | bicubic NIQE | HR NIQE |" in printed
    row = json.loads(out.read_text())["results"]["bicubic"][0]
    images = [protocol.prepare_image(p.name, read_hr(p), 4) for p in sorted(set14.glob("*.png"))]
    hr = np.mean([protocol.naturalness(image, image.hr) for image in images])
    bicubic = np.mean([protocol.naturalness(image, protocol.super_resolve(
        image, protocol.bicubic_upscaler(4))) for image in images])
    assert row["hr_niqe"] == pytest.approx(hr, rel=1e-12)
    assert row["niqe"] == pytest.approx(bicubic, rel=1e-12)
    assert row["niqe"] > row["hr_niqe"] + 2  # bicubic blur is far from natural statistics
    assert [image["niqe"] for image in row["images"]] == pytest.approx(
        [protocol.naturalness(image, protocol.super_resolve(image, protocol.bicubic_upscaler(4)))
         for image in images], rel=1e-12)
    assert f"| Set14 | 14 | 25.99 | 0.7029 | {bicubic:.3f} | {hr:.3f} |" in table.read_text()


def test_cli_niqe_names_an_image_too_small_for_it_and_measures_the_others(tmp_path, capsys):
    folder = tmp_path / "set"
    folder.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:112, 0:120]
    big = 128 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    Image.fromarray(np.clip(big + rng.normal(0, 8, big.shape), 0, 255).astype(np.uint8)).save(
        folder / "big.png")
    Image.fromarray(np.full((100, 300), 90, np.uint8)).save(folder / "small.png")
    out = tmp_path / "out.json"
    status = cli.main(["evaluate", "--bicubic", "--niqe", str(folder), "--json", str(out)])
    assert status == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert f"{folder / 'small.png'}: NIQE needs at least 96x96 pixels, got 292x92" in err
    report = json.loads(out.read_text())
    assert report["results"]["bicubic"][0]["num_images"] == 1
    assert np.isfinite(report["results"]["bicubic"][0]["niqe"])
    assert len(report["failed"]) == 1
