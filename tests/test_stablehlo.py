"""`srgan-jax export --format stablehlo`: a jax.export artifact with symbolic batch, height and
width that equals the Flax model on any size, and runs without the Generator code."""
import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from fake_models import TINY, random_variables

from srgan_jax.upscaling import export_cli, model_file, registry, stablehlo


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny model file and its StableHLO export (through the CLI)."""
    root = tmp_path_factory.mktemp("stablehlo")
    model_file.save_model(root / "tiny.msgpack", random_variables(TINY, seed=3), TINY)
    out = root / "tiny_stablehlo"
    assert export_cli.main(["--format", "stablehlo", "--model", str(root / "tiny.msgpack"),
                            "-o", str(out)]) == 0
    return out


@pytest.mark.parametrize("shape", [(1, 7, 9, 3), (2, 12, 5, 3)])
def test_artifact_equals_the_flax_model_on_two_sizes(exported, shape):
    variables = random_variables(TINY, seed=3)
    lr = np.random.default_rng(0).random(shape, dtype=np.float32)
    expected = TINY.generator().apply(variables, jnp.asarray(lr), train=False)
    sr = stablehlo.load_stablehlo(exported)(lr)
    assert sr.shape == (shape[0], 4 * shape[1], 4 * shape[2], 3)
    np.testing.assert_allclose(np.asarray(sr), np.asarray(expected), atol=1e-5)


def test_metadata_says_how_to_use_it(exported):
    metadata = json.loads((exported / stablehlo.METADATA).read_text())
    assert metadata["scale"] == 4
    assert metadata["input_range"] == [0.0, 1.0] and metadata["output_range"] == [-1.0, 1.0]
    assert metadata["architecture"] == {"name": "SRResNet", "num_blocks": 2, "channels": 16}
    assert set(metadata["platforms"]) == {"cpu", "cuda", "tpu"}
    assert metadata["sha256"][stablehlo.ARTIFACT].startswith("sha256:")


def test_shipped_model_export_records_its_training_recipe(tmp_path):
    out = tmp_path / "shipped"
    assert export_cli.main(["--format", "stablehlo", "-o", str(out)]) == 0
    metadata = json.loads((out / stablehlo.METADATA).read_text())
    assert metadata["source"] == "srresnet_mse_x4"
    shipped = registry.shipped_models()["srresnet_mse_x4"]
    assert metadata["recipe"] == shipped.recipe and metadata["recipe"]["loss"] == "pixel MSE"


def test_runs_in_a_program_without_flax_or_the_model_code(exported):
    """Only jax: the loader's module imports neither flax nor srgan_jax.models."""
    code = (
        "import sys, numpy as np\n"
        "from srgan_jax.upscaling.stablehlo import load_stablehlo\n"
        f"model = load_stablehlo({str(exported)!r})\n"
        "sr = model(np.zeros((1, 3, 4, 3), np.float32))\n"
        "assert sr.shape == (1, 12, 16, 3), sr.shape\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'flax'\n"
        "             or m in ('srgan_jax.models', 'srgan_jax.upscaling.inference'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"JAX_PLATFORMS": "cpu"})


def test_damaged_or_missing_artifacts_are_named(exported, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / stablehlo.METADATA).write_bytes((exported / stablehlo.METADATA).read_bytes())
    with pytest.raises(stablehlo.StableHLOError, match="missing .*model.stablehlo"):
        stablehlo.load_stablehlo(copy)
    data = bytearray((exported / stablehlo.ARTIFACT).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / stablehlo.ARTIFACT).write_bytes(bytes(data))
    with pytest.raises(stablehlo.StableHLOError, match="damaged"):
        stablehlo.load_stablehlo(copy)


def test_existing_export_needs_overwrite(exported, capsys):
    assert export_cli.main(["--format", "stablehlo", "-o", str(exported)]) == 1
    assert "--overwrite" in capsys.readouterr().err


def edited_copy(exported, tmp_path, edit, artifact=None):
    """A copy of the export whose metadata `edit` changed (and artifact replaced, re-signed)."""
    copy = tmp_path / "copy"
    copy.mkdir()
    data = artifact if artifact is not None else (exported / stablehlo.ARTIFACT).read_bytes()
    (copy / stablehlo.ARTIFACT).write_bytes(data)
    metadata = json.loads((exported / stablehlo.METADATA).read_text())
    metadata["sha256"][stablehlo.ARTIFACT] = stablehlo._sha256(data)
    edit(metadata)
    (copy / stablehlo.METADATA).write_text(json.dumps(metadata))
    return copy


@pytest.mark.parametrize(("field", "value", "message"), [
    ("scale", 2, "says scale 2, but the artifact upscales x4 (8x8 -> 32x32)"),
    ("scale", "4", "scale must be a positive integer, got '4'"),
    ("format_version", 2, "format_version 2 is not supported (this srgan-jax reads 1)"),
    ("input_range", "0..1", "input_range must be [low, high] with low < high, got '0..1'"),
    ("output_range", [1, -1], "output_range must be [low, high] with low < high, got [1, -1]"),
    ("sha256", "abc", "sha256 must be {'model.stablehlo': 'sha256:<64 hex digits>'}, got 'abc'"),
])
def test_metadata_that_does_not_fit_the_artifact_is_refused(exported, tmp_path, field, value,
                                                            message):
    """Was: accepted (then `.scale` lied), or a raw AttributeError for a bad sha256 field."""
    copy = edited_copy(exported, tmp_path, lambda metadata: metadata.update({field: value}))
    with pytest.raises(stablehlo.StableHLOError) as error:
        stablehlo.load_stablehlo(copy)
    assert str(error.value) == f"{copy / stablehlo.METADATA}: {message}"


def test_a_truncated_artifact_with_a_matching_checksum_is_named(exported, tmp_path):
    """Was: a raw flatbuffers error from jax.export.deserialize."""
    data = (exported / stablehlo.ARTIFACT).read_bytes()
    copy = edited_copy(exported, tmp_path, lambda metadata: None, data[: len(data) // 3])
    with pytest.raises(stablehlo.StableHLOError) as error:
        stablehlo.load_stablehlo(copy)
    assert str(error.value).startswith(
        f"{copy / stablehlo.ARTIFACT}: not a readable jax.export artifact (")
