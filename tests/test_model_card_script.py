"""experiments/model_card.py: the card's table (the evaluate protocol, texture and grid energy)
and its side-by-side picture, on a tiny model and a small folder."""
from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest
from fake_models import TINY, random_variables
from PIL import Image

from srgan_jax.evaluation import evaluate, niqe, protocol, texture
from srgan_jax.upscaling import model_file
from srgan_jax.upscaling.inference import Upscaler

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "model_card.py"


def _script():
    spec = importlib.util.spec_from_file_location("model_card", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_and_picture(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "bench" / "Tiny"
    folder.mkdir(parents=True)
    y, x = np.mgrid[0:108, 0:104]  # one 96x96 NIQE block after the 4-pixel border
    for i in range(2):
        smooth = 128 + 60 * np.sin((x + 7 * i) / 5.0)[..., None] * np.cos(y / 7.0)[..., None]
        image = np.clip(smooth + rng.normal(0, 10, (108, 104, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"img{i}.png")
    model = tmp_path / "tiny.msgpack"
    model_file.save_model(model, random_variables(TINY), TINY)
    tiny = Upscaler.from_path(str(model))
    picture, table = tmp_path / "card.png", tmp_path / "card.json"
    assert _script().main([
        "--model", f"tiny={model}", "--data_dir", str(tmp_path / "bench"), "--sets", "Tiny",
        "--crop", "Tiny/img1.png:8,4", "--crop_size", "16", "--picture", str(picture),
        "--json", str(table)]) == 0

    results = json.loads(table.read_text())["Tiny"]
    assert list(results) == ["bicubic", "tiny", "HR"]
    bicubic = evaluate.evaluate_folder(folder, evaluate.bicubic_upscaler(4))
    assert results["bicubic"]["psnr"] == pytest.approx(bicubic["psnr"], abs=1e-9)
    for method, upscale in (("bicubic", evaluate.bicubic_upscaler(4)), ("tiny", tiny),
                            ("HR", None)):
        images = [protocol.prepare_image(p.name, np.asarray(Image.open(p)), 4)
                  for p in sorted(folder.glob("*.png"))]
        pictures = [image.hr if upscale is None else protocol.super_resolve(image, upscale)
                    for image in images]
        expected = np.mean([niqe.niqe(p, 4) for p in pictures])
        assert results[method]["niqe"] == pytest.approx(expected, rel=1e-12), method
    assert results["bicubic"]["images"] == results["HR"]["images"] == 2
    assert results["HR"]["texture"] == pytest.approx(1.0)
    assert 0 < results["bicubic"]["texture"] < 1

    panels = np.asarray(Image.open(picture))
    assert panels.shape == (32, 3 * 32 + 2 * 4, 3)  # bicubic | tiny | HR, each zoomed 2x
    hr = np.asarray(Image.open(folder / "img1.png"))[8:24, 4:20]
    np.testing.assert_array_equal(panels[:, -32:], hr.repeat(2, 0).repeat(2, 1))
    assert (panels[:, 32:36] == 255).all()
    hr_full = np.asarray(Image.open(folder / "img1.png"))
    energy = texture.texture_energy(hr_full, hr_full, 4)
    assert energy.high_frequency == pytest.approx(1.0)


def test_a_crop_outside_the_sets_is_refused(tmp_path, capsys):
    (tmp_path / "Tiny").mkdir()
    with pytest.raises(SystemExit):
        _script().main(["--data_dir", str(tmp_path), "--sets", "Tiny", "--crop",
                        "Other/b.png:0,0", "--picture", str(tmp_path / "p.png")])
    assert "not an image of --sets Tiny" in capsys.readouterr().err
