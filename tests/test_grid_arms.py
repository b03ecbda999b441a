"""The grid experiment's script: every arm is a valid training config, and `report` turns measured
results into the table and the 2x-zoom strips (a fake root: measuring needs trained arms)."""
import importlib.util
import json
import pathlib
import sys

import numpy as np
import pytest

from srgan_jax import image_io
from srgan_jax.training import config_validation

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "grid_arms.py"


@pytest.fixture(scope="module")
def grid_arms():
    spec = importlib.util.spec_from_file_location("grid_arms", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["grid_arms"] = module
    spec.loader.exec_module(module)
    return module


def test_every_arm_is_a_valid_config_with_its_overrides(grid_arms, tmp_path):
    for arm, overrides in grid_arms.ARMS.items():
        config = grid_arms.arm_config(arm, 1000, tmp_path)
        config_validation.validate(config)
        assert config.gan.steps == 1000 and config.data.source == "folder", arm
        for field, value in overrides.items():
            section, name = field.split(".")
            assert config[section][name] == value, (arm, field)
        restart = grid_arms.gan_start(arm)
        assert restart == config.pretrain.steps, arm
        assert bool(config.gan.init_from) == (restart == 0), arm  # one start, never two


def test_checkpoint_steps_are_every_100_and_the_table_steps_of_the_gan_phase(grid_arms,
                                                                            tmp_path):
    for step in (0, 50, 450, 500, 550, 600, 750, 800, 1500, 1550):
        (tmp_path / "checkpoints" / str(step)).mkdir(parents=True)
    (tmp_path / "checkpoints" / "tmp-write").mkdir()
    assert grid_arms.checkpoint_steps(tmp_path, 500) == [500, 600, 750, 800, 1500]
    assert grid_arms.checkpoint_steps(tmp_path, 0) == [0, 500, 600, 800, 1500]


def test_report_writes_the_table_and_the_strips(grid_arms, tmp_path, capsys):
    crop = grid_arms.CROP_SIZE
    rng = np.random.default_rng(0)

    def crops(folder):
        folder.mkdir(parents=True)
        for name in grid_arms.STRIP_CROPS:
            image_io.write_image(folder / f"{name}.png",
                                 rng.integers(0, 256, (crop, crop, 3), dtype=np.uint8))

    row = {"psnr": 26.5, "ssim": 0.7, "niqe": 6.25, "texture": 0.2, "grid": 0.07,
           "d_real": 0.9, "d_fake": 0.1}
    for arm in ("paper", "spectral"):
        results = {str(s): dict(row, psnr=row["psnr"] - s / 1000) for s in (100, 250, 500, 1000)}
        if arm == "spectral":
            del results["1000"]  # stopped early: in the table, not in the strips
        (tmp_path / arm).mkdir()
        (tmp_path / arm / "set14.json").write_text(json.dumps(results))
        for step in results:
            crops(tmp_path / arm / "crops" / step)
    reference = {"psnr": 27.0, "niqe": 6.5, "texture": 0.1, "grid": 0.06}
    (tmp_path / "references.json").write_text(json.dumps(
        {"start": reference, "HR": {"niqe": 4.9, "grid": 0.07, "texture": 1.0}}))
    crops(tmp_path / "start_crops")
    crops(tmp_path / "hr_crops")

    assert grid_arms.main(["report", "paper", "spectral", "--root", str(tmp_path),
                           "--strips", str(tmp_path / "strip")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "| paper | 1,000 | 25.50 | 6.25 | 0.200 | 0.070 | 0.90 / 0.10 |" in printed
    assert "| spectral | 500 | 26.00 | 6.25 | 0.200 | 0.070 | 0.90 / 0.10 |" in printed
    assert not any(line.startswith("| spectral | 1,000") for line in printed)
    assert "| HR | - | - | 4.90 | 1.000 | 0.070 | |" in printed
    panel, gap = crop * grid_arms.ZOOM, 4
    for name in grid_arms.STRIP_CROPS:  # paper only: 5 columns (start, 250, 500, 1,000, HR)
        strip = image_io.read_image(tmp_path / f"strip_{name}.png").pixels
        assert strip.shape == (panel, 5 * panel + 4 * gap, 3)
        hr = image_io.read_image(tmp_path / "hr_crops" / f"{name}.png").pixels
        np.testing.assert_array_equal(strip[::2, -panel::2], hr)


def test_the_gridfree_config_is_the_combination_arms_recipe(grid_arms):
    """`srgan_mse_gridfree.py` (the shipped model's recipe) changes from SRGAN-MSE exactly the
    fields the `resize_conv_spectral` arm changes, to the same values."""
    from srgan_jax.configs import srgan_mse, srgan_mse_gridfree

    paper, recipe = srgan_mse.get_config().to_dict(), srgan_mse_gridfree.get_config().to_dict()
    changed = {f"{section}.{name}": value
               for section, fields in recipe.items() if isinstance(fields, dict)
               for name, value in fields.items() if paper[section].get(name) != value}
    assert not {k for k in recipe if recipe[k] != paper[k] and not isinstance(recipe[k], dict)}
    arm = {field: value for field, value in grid_arms.ARMS["resize_conv_spectral"].items()
           if paper[field.split(".")[0]][field.split(".")[1]] != value}  # a change, not a restate
    assert changed == arm
    assert changed["pretrain.init_from"] == grid_arms.START
