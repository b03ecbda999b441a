"""`python -m srgan_jax.main` / `srgan-jax train`: flags, config overrides, exit statuses."""

import importlib
import json
import pathlib

import pytest

from srgan_jax import cli, main
from srgan_jax.configs import test as test_config


def test_srgan_jax_train_runs_the_config_with_overrides(tmp_path):
    workdir = tmp_path / "workdir"
    argv = [
        "train",
        f"--workdir={workdir}",
        f"--config={test_config.__file__}",
        "--config.pretrain.steps=2",
        "--config.gan.steps=0",
        "--config.seed=3",
    ]
    assert cli.main(argv) == 0
    step_dir = workdir / "checkpoints" / "2"
    saved = json.loads((step_dir / "config" / "metadata").read_text())
    assert saved["pretrain"]["steps"] == 2 and saved["gan"]["steps"] == 0 and saved["seed"] == 3
    assert saved["model"]["num_blocks"] == test_config.get_config().model.num_blocks


def test_default_config_is_the_papers_srgan_vgg54_run():
    from srgan_jax.configs import default
    from srgan_jax.training import train_state

    config = default.get_config()
    assert default.__file__ == main.DEFAULT_CONFIG
    assert (config.pretrain.steps, config.gan.steps) == (1_000_000, 200_000)
    assert (config.pretrain.content_loss, config.gan.content_loss) == ("mse", "vgg54")
    assert train_state.learning_rate_points(config, "gan") == ([100_000], [1e-4, 1e-5])
    assert train_state.learning_rate_points(config, "pretrain") == ([], [1e-4])
    assert (config.batch_size, config.crop_size, config.model.scale) == (16, 96, 4)


@pytest.mark.parametrize(
    "argv",
    [
        [],  # --workdir is required
        ["--workdir=/tmp/x", "stray-argument"],
        ["--workdir=/tmp/x", "--config.no_such_field=1"],
    ],
)
def test_usage_errors_return_a_nonzero_status(argv, capsys):
    assert main.main(argv) != 0


def test_every_config_file_loads_with_the_shared_fields():
    configs = pathlib.Path(main.DEFAULT_CONFIG).parent
    names = sorted(p.stem for p in configs.glob("*.py") if p.stem != "__init__")
    assert names == [
        "default",
        "demo",
        "srgan_mse",
        "srgan_vgg22",
        "srgan_vgg54",
        "srresnet_mse",
        "srresnet_vgg22",
        "test",
    ]
    losses = {}
    for name in names:
        config = importlib.import_module(f"srgan_jax.configs.{name}").get_config()
        assert config.crop_size % 16 == 0 and config.crop_size % config.model.scale == 0, name
        assert config.batch_size % 8 == 0, name  # runs on 8-device hosts
        losses[name] = (config.pretrain.content_loss, config.gan.steps and config.gan.content_loss)
    assert losses["srresnet_mse"] == ("mse", 0)
    assert losses["srresnet_vgg22"] == ("vgg22", 0)
    assert losses["srgan_mse"] == ("mse", "mse")
    assert losses["srgan_vgg22"] == ("mse", "vgg22")
    assert losses["srgan_vgg54"] == losses["default"] == ("mse", "vgg54")
