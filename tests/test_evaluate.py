"""Evaluation protocol: published bicubic baselines, pipeline alignment, CLI output and errors."""
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from srgan_jax.evaluation import evaluate
from srgan_jax.imresize import degrade, im2uint8, modcrop
from srgan_jax.metrics import psnr, ssim

# x4 bicubic, Y channel, border 4: what a correct MATLAB-compatible evaluator gets on these files
# (published values, from rounded-Y MATLAB scripts: 28.42/0.8104, 26.00/0.7027, 25.96/0.6675).
BICUBIC_X4 = {
    "Set5": (28.43, 0.8111, 5),
    "Set14": (26.00, 0.7029, 14),
    "BSD100": (25.96, 0.6681, 100),
}


@pytest.mark.parametrize("dataset", list(BICUBIC_X4))
def test_bicubic_x4_reproduces_published_baseline(shared_data, dataset):
    result = evaluate.evaluate_folder(
        shared_data / "benchmarks" / dataset, evaluate.bicubic_upscaler(4), scale=4
    )
    want_psnr, want_ssim, count = BICUBIC_X4[dataset]
    print(f"{dataset}: {result['psnr']:.4f} dB / {result['ssim']:.5f}")
    assert result["num_images"] == count
    assert result["psnr"] == pytest.approx(want_psnr, abs=0.02)
    assert result["ssim"] == pytest.approx(want_ssim, abs=0.002)


def write_images(folder: pathlib.Path) -> dict[str, np.ndarray]:
    """A colour and a grayscale HR image with sizes that are not multiples of 4."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:30, 0:37]
    smooth = 0.5 + 0.4 * np.sin(xx / 5.0)[..., None] * np.cos(yy / 7.0)[..., None]
    images = {
        "colour.png": im2uint8(smooth * rng.uniform(0.6, 1.0, (1, 1, 3))),
        "gray.png": im2uint8(0.5 + 0.3 * np.cos(xx[:27] / 3.0 + yy[:27] / 4.0)),
    }
    for name, pixels in images.items():
        Image.fromarray(pixels).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return images


def test_pipeline_is_aligned_so_an_oracle_scores_perfectly(tmp_path):
    images = write_images(tmp_path / "toy")
    seen = []

    def oracle(lr: np.ndarray) -> np.ndarray:
        # The LR image must be the 8-bit MATLAB degradation of the modcropped HR image.
        name = "gray.png" if lr.ndim == 2 else "colour.png"
        hr = modcrop(images[name], 4)
        np.testing.assert_array_equal(lr * 255, degrade(hr, 4))
        seen.append(name)
        return hr / 255.0

    result = evaluate.evaluate_folder(tmp_path / "toy", oracle, scale=4)
    assert seen == ["colour.png", "gray.png"]
    assert result["dataset"] == "toy" and result["num_images"] == 2 and result["border"] == 4
    assert result["psnr"] == float("inf") and result["ssim"] == pytest.approx(1.0)


def test_sr_is_quantized_then_measured_with_border(tmp_path):
    images = write_images(tmp_path / "toy")
    rng = np.random.default_rng(1)
    outputs = {}

    def noisy(lr: np.ndarray) -> np.ndarray:
        name = "gray.png" if lr.ndim == 2 else "colour.png"
        hr = modcrop(images[name], 4) / 255.0
        outputs[name] = np.clip(hr + rng.normal(0, 0.02, hr.shape), -0.1, 1.1)
        return outputs[name]

    result = evaluate.evaluate_folder(tmp_path / "toy", noisy, scale=4, border=2,
                                      save_dir=tmp_path / "out")
    for entry in result["images"]:
        name = entry["name"]
        sr = np.floor(np.clip(outputs[name], 0, 1) * 255 + 0.5) / 255
        hr = modcrop(images[name], 4) / 255.0
        assert entry["psnr"] == pytest.approx(psnr(sr, hr, border=2), abs=1e-12)
        assert entry["ssim"] == pytest.approx(ssim(sr, hr, border=2), abs=1e-12)
        saved = np.asarray(Image.open(tmp_path / "out" / name))
        np.testing.assert_array_equal(saved, np.round(sr * 255))
    assert result["psnr"] == pytest.approx(np.mean([e["psnr"] for e in result["images"]]))


def test_gray_via_rgb_feeds_three_channels_and_returns_luma():
    calls = []

    def rgb_only(lr: np.ndarray) -> np.ndarray:
        assert lr.ndim == 3 and lr.shape[-1] == 3
        calls.append(lr)
        return np.stack([lr[..., 0], lr[..., 1] * 0.5, np.zeros_like(lr[..., 2])], axis=-1)

    wrapped = evaluate.gray_via_rgb(rgb_only)
    gray = np.full((2, 3), 0.8)
    np.testing.assert_allclose(wrapped(gray), 0.8 * (0.299 + 0.587 * 0.5), atol=1e-6)
    np.testing.assert_array_equal(calls[0], np.full((2, 3, 3), 0.8))
    colour = np.full((2, 3, 3), 0.4)
    np.testing.assert_array_equal(wrapped(colour), rgb_only(colour))


def test_wrong_sr_size_is_an_error_naming_the_image(tmp_path):
    write_images(tmp_path / "toy")
    with pytest.raises(ValueError, match=r"colour\.png: SR image is shaped"):
        evaluate.evaluate_folder(tmp_path / "toy", lambda lr: lr, scale=4)


def test_missing_or_empty_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        evaluate.evaluate_folder(tmp_path / "nowhere", evaluate.bicubic_upscaler(4))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="empty contains no images"):
        evaluate.evaluate_folder(tmp_path / "empty", evaluate.bicubic_upscaler(4))


def test_cli_bicubic_table_json_markdown(tmp_path, capsys):
    write_images(tmp_path / "toy")
    write_images(tmp_path / "other")
    code = evaluate.main([
        "--bicubic", str(tmp_path / "toy"), str(tmp_path / "other"), "--scale", "2",
        "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md"),
        "--save-dir", str(tmp_path / "sr"),
    ])
    assert code == 0
    direct = evaluate.evaluate_folder(tmp_path / "toy", evaluate.bicubic_upscaler(2), scale=2)
    table = (tmp_path / "r.md").read_text()
    assert f"| toy | 2 | {direct['psnr']:.2f} | {direct['ssim']:.4f} |" in table
    assert table in capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["scale"] == 2 and report["border"] == 2
    assert [r["dataset"] for r in report["results"]["bicubic"]] == ["toy", "other"]
    assert report["results"]["bicubic"][0]["psnr"] == pytest.approx(direct["psnr"])
    assert Image.open(tmp_path / "sr" / "other" / "gray.png").size == (36, 26)


def test_cli_model_column_next_to_bicubic(tmp_path, monkeypatch, capsys):
    write_images(tmp_path / "toy")

    class FakeModel:
        scale = 2

        def __call__(self, lr: np.ndarray) -> np.ndarray:
            assert lr.ndim == 3
            return np.repeat(np.repeat(lr, 2, axis=0), 2, axis=1)  # nearest neighbour

    monkeypatch.setattr(evaluate, "_load_model", lambda args: FakeModel())
    assert evaluate.main(["--model", "fake.msgpack", str(tmp_path / "toy")]) == 0
    out = capsys.readouterr().out
    assert "x2," in out and "| bicubic PSNR | bicubic SSIM | model PSNR | model SSIM |" in out
    assert evaluate.main(["--model", "m", "--scale", "4", str(tmp_path / "toy")]) == 1
    assert "does not match the model's scale 2" in capsys.readouterr().err


def test_cli_errors(tmp_path, capsys):
    assert evaluate.main(["--bicubic", str(tmp_path / "missing")]) == 1
    assert "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main([str(tmp_path)])  # one of --bicubic/--model/--workdir is required
    with pytest.raises(SystemExit):
        evaluate.main(["--bicubic", "--model", "m", str(tmp_path)])
