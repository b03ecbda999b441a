"""Model files: export from a training workdir, load, and clear errors for damaged files."""
import jax
import ml_collections
import numpy as np
import pytest
from fake_models import TINY, random_variables
from flax import serialization

from srgan_jax.models import ModelConfig
from srgan_jax.training import checkpoints
from srgan_jax.upscaling import export_cli
from srgan_jax.upscaling.inference import Upscaler, upscale
from srgan_jax.upscaling.model_file import ModelFileError, checksum, load_model, save_model

PSNRS = {1: 20.0, 2: 30.0, 3: 25.0}  # step -> validation PSNR: best is 2, latest is 3


def assert_same_variables(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A training workdir with three checkpoints of different (tiny) generators."""
    path = str(tmp_path_factory.mktemp("workdir"))
    config = ml_collections.ConfigDict(
        {"model": {"num_blocks": 2, "channels": 16, "scale": 4}, "crop_size": 32}
    )
    with checkpoints.Checkpointer(path, config) as ckpt:
        for step, psnr in PSNRS.items():
            state = {**random_variables(TINY, seed=step), "step": np.int32(step)}
            rng = jax.random.key(0)
            ckpt.save(checkpoints.TrainingCheckpoint(step, "pretrain", state, None, rng, {}),
                      {"psnr": psnr})
    return path


@pytest.mark.parametrize("flags, step", [([], 3), (["--step", "1"], 1), (["--best"], 2)])
def test_export_then_load_is_identical(workdir, tmp_path, flags, step):
    out = tmp_path / "model.msgpack"
    assert export_cli.main(["--workdir", workdir, *flags, "-o", str(out)]) == 0
    config, variables = load_model(out)
    assert config == TINY
    assert_same_variables(variables, random_variables(TINY, seed=step))
    image = np.random.default_rng(0).integers(0, 256, (9, 10, 3)).astype(np.uint8)
    from_file = upscale(Upscaler.from_path(out), image)
    np.testing.assert_array_equal(from_file, upscale(random_variables(TINY, seed=step), image))
    if not flags:  # a workdir loads directly too (its latest checkpoint)
        np.testing.assert_array_equal(upscale(Upscaler.from_path(workdir), image), from_file)


def test_export_refuses_to_overwrite_and_names_missing_steps(workdir, tmp_path, capsys):
    out = tmp_path / "model.msgpack"
    out.write_bytes(b"keep me")
    assert export_cli.main(["--workdir", workdir, "-o", str(out)]) == 1
    assert out.read_bytes() == b"keep me" and "--overwrite" in capsys.readouterr().err
    assert export_cli.main(["--workdir", workdir, "--step", "7", "-o", str(tmp_path / "b")]) == 1
    assert "step 7" in capsys.readouterr().err


def test_config_round_trips(tmp_path):
    config = ModelConfig(num_blocks=1, channels=8, scale=8)
    save_model(tmp_path / "m", random_variables(config), config)
    assert load_model(tmp_path / "m")[0] == config


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.msgpack"
    save_model(path, random_variables(TINY), TINY)
    return path


def rewrite(path, edit) -> None:
    """Edits a model file's document and re-signs it: a consistent file of another model."""
    document = serialization.msgpack_restore(path.read_bytes())
    edit(document)
    document["checksum"] = checksum(document["config"], document["variables"])
    path.write_bytes(serialization.msgpack_serialize(document))


@pytest.mark.parametrize("keep", [0.5, 0.99, 0.0])
def test_truncated_file_is_a_clear_error(model_file, keep):
    data = model_file.read_bytes()
    model_file.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelFileError, match=f"{model_file}.*truncated or corrupt"):
        load_model(model_file)


def test_not_a_model_file(tmp_path):
    path = tmp_path / "x.msgpack"
    path.write_bytes(serialization.msgpack_serialize({"weights": np.zeros(3)}))
    with pytest.raises(ModelFileError, match="not a srgan-jax model file"):
        load_model(path)


def test_mismatched_tensor_names_it_and_both_shapes(model_file):
    def edit(doc):
        doc["variables"]["params"]["ResidualBlock_1"]["Conv_0"]["kernel"] = np.zeros((3, 3, 16, 8))

    rewrite(model_file, edit)
    with pytest.raises(ModelFileError) as error:
        load_model(model_file)
    message = str(error.value)
    assert "params/ResidualBlock_1/Conv_0/kernel" in message
    assert "(3, 3, 16, 8)" in message and "(3, 3, 16, 16)" in message


def test_missing_and_unexpected_tensors(model_file):
    rewrite(model_file, lambda doc: doc["variables"]["batch_stats"]["BatchNorm_0"].pop("var"))
    with pytest.raises(ModelFileError, match=r"missing tensor batch_stats/BatchNorm_0/var \(exp"):
        load_model(model_file)
    rewrite(model_file, lambda doc: doc["variables"]["batch_stats"]["BatchNorm_0"].update(
        var=np.ones(16, np.float32), extra=np.ones(2)))
    with pytest.raises(ModelFileError, match="unexpected tensors.*BatchNorm_0/extra"):
        load_model(model_file)


def test_wrong_config_in_file(model_file):
    rewrite(model_file, lambda doc: doc["config"].update(num_blocks=3))
    with pytest.raises(ModelFileError, match="missing tensor batch_stats/ResidualBlock_2/"):
        load_model(model_file)
    rewrite(model_file, lambda doc: doc["config"].update(num_blocks=2, sr_range=[1.0, 1.0]))
    with pytest.raises(ModelFileError, match=r"sr_range must be \[low, high\]"):
        load_model(model_file)
    rewrite(model_file, lambda doc: doc.update(format_version=99))
    with pytest.raises(ModelFileError, match="version 99"):
        load_model(model_file)


def test_variables_of_another_model_are_rejected():
    with pytest.raises(ValueError, match="not the variables of a srgan_jax Generator"):
        Upscaler({"params": {"Dense_0": {}}, "batch_stats": {}})
