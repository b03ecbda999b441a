"""`gan.fold_batch_norm`: BatchNorm folded into the generator's convolutions computes the same
images in inference mode; model files, the GAN phase and a whole run carry the BN-free model."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fake_models import TINY, random_variables
from flax import traverse_util

from srgan_jax import models
from srgan_jax.configs import test as test_config
from srgan_jax.training import config_validation, phases
from srgan_jax.upscaling import model_file, registry

FOLDED = dataclasses.replace(TINY, batch_norm=False)


def bn_variables(seed: int) -> dict:
    """Random generator variables whose BatchNorms all have non-trivial scale, offset and
    running statistics (a fresh init's 1, 0, 0, 1 would hide a wrong formula)."""
    variables = random_variables(TINY, seed)
    flat = traverse_util.flatten_dict(variables["params"])
    rng = np.random.default_rng(seed)
    for path in flat:
        if any(part.startswith("BatchNorm_") for part in path):
            flat[path] = flat[path] + rng.uniform(-0.5, 0.5, flat[path].shape).astype(np.float32)
    return {"params": traverse_util.unflatten_dict(flat), "batch_stats": variables["batch_stats"]}


def lr_images() -> jnp.ndarray:
    return jax.random.uniform(jax.random.key(1), (2, 12, 10, 3))


def test_folded_generator_computes_the_same_images_in_inference_mode():
    variables = bn_variables(0)
    folded = models.fold_batch_norm(variables)
    original = np.asarray(TINY.generator().apply(variables, lr_images(), train=False))
    twin = np.asarray(FOLDED.generator().apply(folded, lr_images(), train=False))
    np.testing.assert_allclose(twin, original, rtol=1e-5, atol=1e-5 * np.abs(original).max())
    assert folded["batch_stats"] == {}
    names = traverse_util.flatten_dict(folded["params"])
    assert not any("BatchNorm" in part for path in names for part in path)
    assert models.ModelConfig.from_variables(folded) == FOLDED


def test_each_pair_folds_by_the_batch_norm_formula_in_float64():
    variables = bn_variables(1)
    block = variables["params"]["ResidualBlock_1"]
    stats = variables["batch_stats"]["ResidualBlock_1"]["BatchNorm_1"]
    folded = models.fold_batch_norm(variables)["params"]["ResidualBlock_1"]["Conv_1"]
    scale, offset = (np.float64(block["BatchNorm_1"][k]) for k in ("scale", "bias"))
    mean, var = np.float64(stats["mean"]), np.float64(stats["var"])
    kernel = np.float64(block["Conv_1"]["kernel"])
    # y = scale * (W x - mean) / sqrt(var + eps) + offset, per output channel
    gain = scale / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(folded["kernel"], kernel * gain, rtol=1e-6)
    np.testing.assert_allclose(folded["bias"], offset - mean * gain, rtol=1e-6, atol=1e-7)


def test_the_shipped_srresnet_folds_exactly():
    weights = registry.load_weights(registry.DEFAULT_MODEL)
    folded = models.fold_batch_norm(weights.variables)
    lr = jax.random.uniform(jax.random.key(2), (1, 16, 16, 3))
    original = np.asarray(weights.config.generator().apply(weights.variables, lr, train=False))
    config = dataclasses.replace(weights.config, batch_norm=False)
    twin = np.asarray(config.generator().apply(folded, lr, train=False))
    np.testing.assert_allclose(twin, original, atol=2e-5)


def test_a_generator_without_batch_norm_cannot_be_folded():
    with pytest.raises(ValueError, match="no BatchNorm to fold"):
        models.fold_batch_norm(models.fold_batch_norm(bn_variables(2)))


def test_model_files_record_a_batch_norm_free_generator(tmp_path):
    folded = models.fold_batch_norm(bn_variables(3))
    path = tmp_path / "folded.msgpack"
    model_file.save_model(path, folded)
    loaded = model_file.load_model(path)
    assert loaded.config == FOLDED and loaded.variables["batch_stats"] == {}
    assert TINY.to_dict().get("batch_norm") is None  # the paper's files are what they were
    assert FOLDED.to_dict()["batch_norm"] is False
    bad = dict(FOLDED.to_dict(), batch_norm="no")
    with pytest.raises(model_file.ModelFileError, match="batch_norm must be true or false"):
        model_file.config_from_dict(bad, "x.msgpack")


def gan_config(init_from: str):
    config = test_config.get_config()
    config.model.num_blocks, config.model.channels = TINY.num_blocks, TINY.channels
    config.model.scale = TINY.scale
    config.pretrain.steps, config.gan.init_from = 0, init_from
    config.gan.fold_batch_norm = True
    return config


def test_gan_phase_starts_from_the_folded_twin(tmp_path):
    variables = bn_variables(4)
    path = tmp_path / "srresnet.msgpack"
    model_file.save_model(path, variables, TINY)
    generator, _ = phases.enter_phase(gan_config(str(path)), "gan", jax.random.key(0), None, None)
    start = {"params": generator.params, "batch_stats": generator.batch_stats}
    original = np.asarray(TINY.generator().apply(variables, lr_images(), train=False))
    twin = np.asarray(generator.apply_fn(start, lr_images(), train=False))
    np.testing.assert_allclose(twin, original, rtol=1e-5, atol=1e-5 * np.abs(original).max())


def test_folding_a_generator_without_batch_norm_is_refused_by_name(tmp_path):
    path = tmp_path / "folded.msgpack"
    model_file.save_model(path, models.fold_batch_norm(bn_variables(5)))
    with pytest.raises(ValueError, match=r"^config.gan.fold_batch_norm=True, but config.gan"
                                         r".init_from=.*folded.msgpack has no BatchNorm to fold"):
        phases.enter_phase(gan_config(str(path)), "gan", jax.random.key(0), None, None)
    config = gan_config(str(path))
    config.model.batch_norm = False
    with pytest.raises(ValueError, match="config.gan.fold_batch_norm=True needs a generator with "
                                         "BatchNorm to fold, but config.model.batch_norm=False"):
        config_validation.validate(config)


@pytest.mark.slow
def test_a_folded_run_trains_resumes_and_exports_a_batch_norm_free_model(tmp_path):
    """Both phases through `main`, the GAN phase folded; a second invocation resumes it; the
    exported file is BN-free and upscales."""
    workdir, model = tmp_path / "run", tmp_path / "model.msgpack"
    command = [sys.executable, "-m", "srgan_jax.main", f"--workdir={workdir}",
               "--config=srgan_jax/configs/test.py", "--config.pretrain.steps=4",
               "--config.checkpoint_every=2", "--config.gan.fold_batch_norm=True"]
    for gan_steps in (2, 4):
        run = subprocess.run([*command, f"--config.gan.steps={gan_steps}"], capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
    assert "resumed at step 6 (phase gan)" in run.stderr
    export = subprocess.run([sys.executable, "-m", "srgan_jax.cli", "export", "--workdir",
                             str(workdir), "-o", str(model)], capture_output=True, text=True)
    assert export.returncode == 0, export.stderr
    weights = model_file.load_model(model)
    assert weights.config.batch_norm is False
