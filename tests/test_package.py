"""The package surface: lazy public names, and the `srgan-jax` command dispatcher."""
import subprocess
import sys

import pytest

import srgan_jax
from srgan_jax import cli, models
from srgan_jax.upscaling import inference


def test_public_names_resolve_to_their_modules():
    assert srgan_jax.Generator is models.Generator
    assert srgan_jax.Discriminator is models.Discriminator
    assert srgan_jax.upscale is inference.upscale
    assert srgan_jax.load_generator is inference.load_generator
    assert srgan_jax.Upscaler is inference.Upscaler
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        srgan_jax.nonexistent  # noqa: B018


def test_import_is_light_and_tensorflow_free():
    code = (
        "import sys, srgan_jax\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('jax', 'flax', 'tensorflow', 'orbax'))\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_lists_commands_and_rejects_unknown_ones(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "upscale", "export"):
        assert f"  {command} " in out
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_cli_dispatches_to_the_command_module(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["evaluate", "--help"])
    assert exit_.value.code == 0
    assert "srgan-jax evaluate" in capsys.readouterr().out
