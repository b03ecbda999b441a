"""Which generator a `--model` argument means: a shipped model's name, a model file or a workdir.

Each model shipped in `srgan_jax/weights/` is described by a small JSON file beside it
(`<name>.json`: name, file, card, kind, scale, training data, recipe, and the PSNR/SSIM/NIQE of its
card with bicubic's and HR's, written by `experiments/model_card.py --update_registry`), so
shipping another model is one weights file, one card and one JSON file. `srgan-jax
models` lists them; `load_weights(NAME)` loads one. A path that exists wins over a name.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
from typing import Any

from srgan_jax.upscaling import model_file
from srgan_jax.upscaling.model_file import GeneratorWeights, ModelFileError

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parents[1] / "weights"
DEFAULT_MODEL = "srresnet_mse_x4"
BENCHMARKS = ("Set5", "Set14", "BSD100")


@dataclasses.dataclass(frozen=True)
class ShippedModel:
    """One entry of `srgan_jax/weights/`: what `srgan-jax models` shows about a model."""

    name: str
    file: str
    card: str
    kind: str
    scale: int
    training_data: str
    recipe: dict[str, Any]
    psnr: dict[str, float]  # benchmark -> Y-channel PSNR (dB), as measured on its card
    ssim: dict[str, float]  # benchmark -> Y-channel SSIM
    niqe: dict[str, float]  # benchmark -> NIQE (lower is more natural)
    # The same measurements of bicubic ('bicubic': psnr, ssim, niqe) and of HR ('HR': niqe)
    baselines: dict[str, dict[str, dict[str, float]]]

    @property
    def path(self) -> pathlib.Path:
        return WEIGHTS_DIR / self.file

    @classmethod
    def from_json(cls, path: pathlib.Path) -> ShippedModel:
        """The entry described by one metadata file (`ModelFileError` naming it if malformed)."""
        try:
            entry = json.loads(path.read_text())
            fields = {f.name: entry[f.name] for f in dataclasses.fields(cls)}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelFileError(f"{path}: malformed shipped-model description ({e!r})") from e
        return cls(**fields)


@functools.cache
def _shipped_models(weights_dir: pathlib.Path) -> dict[str, ShippedModel]:
    entries = [ShippedModel.from_json(p) for p in sorted(weights_dir.glob("*.json"))]
    return {entry.name: entry for entry in entries}


def shipped_models() -> dict[str, ShippedModel]:
    """The models shipped with the package, by name (the default first)."""
    models = _shipped_models(WEIGHTS_DIR)
    return dict(sorted(models.items(), key=lambda item: item[0] != DEFAULT_MODEL))


def shipped_model_path(name: str = DEFAULT_MODEL) -> pathlib.Path:
    """The weights file of shipped model `name` (FileNotFoundError if this install lacks it)."""
    models = shipped_models()
    if name not in models or not models[name].path.is_file():
        raise FileNotFoundError(
            f"{WEIGHTS_DIR / (models[name].file if name in models else name)}: the shipped model "
            f"{name!r} is missing from this installation; pass a model file or a training workdir"
        )
    return models[name].path


def describe_known() -> str:
    """'a, b (default)' for error messages: the names `load_weights` accepts."""
    names = [f"{name} (default)" if name == DEFAULT_MODEL else name for name in shipped_models()]
    return ", ".join(names) or "none in this installation"


def load_weights(
    model: str | os.PathLike | None = None, *, step: int | None = None, best: bool = False
) -> GeneratorWeights:
    """The checked weights `model` names: None (the default shipped model), a shipped model's name,
    a model file, or a training workdir (its latest checkpoint, `step`, or the `best` one)."""
    if model is None:
        return model_file.load_model(shipped_model_path(DEFAULT_MODEL))
    path = os.fspath(model)
    if os.path.isdir(path):
        return model_file.check_weights(workdir_variables(path, step, best), source=path)
    if step is not None or best:
        raise ValueError(f"{path}: --step and --best choose among a training workdir's checkpoints")
    if os.path.isfile(path):
        return model_file.load_model(path)
    if path in shipped_models():
        return model_file.load_model(shipped_model_path(path))
    raise FileNotFoundError(
        f"{path}: no such model file, training workdir or shipped model (shipped models: "
        f"{describe_known()}; `srgan-jax models` lists them)"
    )


def workdir_variables(workdir: str, step: int | None = None, best: bool = False) -> dict[str, Any]:
    """Generator variables of a training workdir's checkpoint: latest, `step`, or best PSNR."""
    from srgan_jax import checkpoint_reading  # orbax: only for workdirs, not for model files

    if best:
        step = checkpoint_reading.best_step(workdir)
    path = workdir if step is None else os.path.join(checkpoint_reading.checkpoint_dir(workdir),
                                                     str(step))
    if step is not None and not os.path.isdir(path):
        raise FileNotFoundError(f"{workdir}: no checkpoint for step {step} (looked for {path})")
    try:
        return checkpoint_reading.load_generator_variables(path)
    except (KeyError, json.JSONDecodeError) as e:  # orbax: an item missing, or empty metadata
        raise ModelFileError(
            f"{path}: unreadable checkpoint (no generator, or damaged metadata: {e!r})"
        ) from e
