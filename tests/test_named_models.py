"""Named models: `srgan-jax models`, `--model NAME`, `load_generator(NAME)`, and the registry's
metadata files (one per shipped model) against the model cards they summarise."""
import json
import re
import shutil

import numpy as np
import pytest
from fake_models import TINY, random_variables

import srgan_jax
from srgan_jax import cli
from srgan_jax.upscaling import model_file, models_cli, registry, upscale_cli


@pytest.fixture
def two_models(tmp_path, monkeypatch):
    """A weights folder with the shipped model and a second (tiny) one: adding a model is one
    weights file and one metadata file."""
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("srresnet_mse_x4.json", "srresnet_mse_x4.msgpack"):
        (weights / name).symlink_to(registry.WEIGHTS_DIR / name)
    model_file.save_model(weights / "tiny_x4.msgpack", random_variables(TINY), TINY)
    entry = {"name": "tiny_x4", "file": "tiny_x4.msgpack", "card": "TINY_CARD.md",
             "kind": "SRGAN (test)", "scale": 4, "training_data": "none", "recipe": {},
             "psnr": {"Set5": 12.5}, "ssim": {"Set5": 0.25}, "niqe": {"Set5": 9.5},
             "baselines": {}}
    (weights / "tiny_x4.json").write_text(json.dumps(entry))
    monkeypatch.setattr(registry, "WEIGHTS_DIR", weights)
    return weights


def test_models_lists_the_shipped_model_with_its_card_numbers(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "srresnet_mse_x4 (default)" in out and "x4" in out and "T91 + BSD200" in out
    shipped = registry.shipped_models()["srresnet_mse_x4"]
    bicubic, hr = shipped.baselines["bicubic"], shipped.baselines["HR"]
    for b in registry.BENCHMARKS:
        assert f"{shipped.psnr[b]:.2f} / {shipped.ssim[b]:.4f} / {shipped.niqe[b]:.2f}" in out
        assert (f"{bicubic['psnr'][b]:.2f} / {bicubic['ssim'][b]:.4f} / "
                f"{bicubic['niqe'][b]:.2f}") in out
        assert f"- / - / {hr['niqe'][b]:.2f}" in out
    assert "NIQE (lower is more natural)" in out


@pytest.mark.parametrize("name", list(registry.shipped_models()))
def test_metadata_numbers_are_the_cards_table(name):
    """The numbers `models` shows are the model card's measured ones, not a second copy that
    could drift: each benchmark's row of the card (bicubic PSNR, SSIM, NIQE, model PSNR, SSIM,
    NIQE, HR NIQE) holds what the metadata gives."""
    entry = registry.shipped_models()[name]
    card = (registry.WEIGHTS_DIR / entry.card).read_text()
    assert set(entry.psnr) == set(entry.ssim) == set(entry.niqe) == set(registry.BENCHMARKS)
    for benchmark in registry.BENCHMARKS:
        row = re.search(rf"^\| {benchmark} \| \d+ \|(.*)\|$", card, flags=re.MULTILINE)
        assert row, f"{entry.card} has no {benchmark} row"
        cells = [c.strip() for c in row.group(1).split("|")]
        bicubic, hr = entry.baselines["bicubic"], entry.baselines["HR"]
        expected = [f"{bicubic['psnr'][benchmark]:.2f}", f"{bicubic['ssim'][benchmark]:.4f}",
                    f"{bicubic['niqe'][benchmark]:.2f}", f"{entry.psnr[benchmark]:.2f}",
                    f"{entry.ssim[benchmark]:.4f}", f"{entry.niqe[benchmark]:.2f}",
                    f"{hr['niqe'][benchmark]:.2f}"]
        assert cells == expected, (benchmark, cells, expected)
    assert entry.path.is_file() and model_file.load_model(entry.path).config.scale == entry.scale


def test_a_second_model_is_one_metadata_file(two_models, capsys):
    assert models_cli.main(["--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed] == ["srresnet_mse_x4", "tiny_x4"]  # the default first
    assert listed[0]["default"] and not listed[1]["default"]
    assert models_cli.main([]) == 0
    table = capsys.readouterr().out
    assert ("| tiny_x4 | SRGAN (test) | x4 | none | 12.50 / 0.2500 / 9.50 | - / - / - | - / - / - |"
            in table)
    upscaler = srgan_jax.load_generator("tiny_x4")
    assert (upscaler.config.num_blocks, upscaler.config.channels) == (2, 16)


def test_names_work_in_upscale_and_the_cli(two_models, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    by_name = srgan_jax.upscale("tiny_x4", pixels)
    np.testing.assert_array_equal(by_name, srgan_jax.upscale(random_variables(TINY), pixels))
    from PIL import Image

    Image.fromarray(pixels).save(tmp_path / "a.png")
    assert upscale_cli.main([str(tmp_path / "a.png"), "-o", str(tmp_path / "out"),
                             "-n", "tiny_x4"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "a_x4.png")), by_name)


def test_an_existing_path_wins_over_a_name(two_models, tmp_path, monkeypatch):
    shutil.copy(two_models / "tiny_x4.msgpack", tmp_path / "srresnet_mse_x4")
    monkeypatch.chdir(tmp_path)
    assert srgan_jax.load_generator("srresnet_mse_x4").config.channels == 16


def test_an_unknown_name_lists_the_known_ones(two_models, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match=r"srresnet_mse_x4 \(default\), tiny_x4"):
        srgan_jax.load_generator("srgan_x4")
    (tmp_path / "a.png").write_bytes(b"")
    assert upscale_cli.main([str(tmp_path / "a.png"), "--model", "srgan_x4"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("srgan-jax upscale: srgan_x4: no such model file, training workdir or "
                          "shipped model (shipped models: srresnet_mse_x4 (default), tiny_x4")
    assert len(err.splitlines()) == 1


def test_a_malformed_metadata_file_is_named(two_models):
    (two_models / "tiny_x4.json").write_text('{"name": "tiny_x4"}')
    with pytest.raises(model_file.ModelFileError, match="tiny_x4.json: malformed"):
        registry.shipped_models()
