"""A portable generator: a `jax.export` (StableHLO) artifact that runs without this package's code.

`export_stablehlo` writes a folder with two files:

    model.stablehlo  the serialized `jax.export.Exported` of `Generator.apply(variables, lr,
                     train=False)` with the weights inside, for a symbolic batch, height and width
                     (float32 [b, h, w, 3] -> [b, scale*h, scale*w, 3]), lowered for CPU, CUDA and
                     TPU
    metadata.json    scale, value ranges, architecture, receptive field, where the weights came
                     from and how they were trained, and the artifact's sha256

Any JAX program can run it with `jax.export.deserialize(bytes).call(lr)`; `load_stablehlo` does
that after checking the metadata and checksum. This module imports neither flax nor the model code
(the generator to export is reached through the weights' own config).
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

FORMAT = "srgan-jax-stablehlo"
FORMAT_VERSION = 1
ARTIFACT = "model.stablehlo"
METADATA = "metadata.json"
PLATFORMS = ("cpu", "cuda", "tpu")


class StableHLOError(ValueError):
    """An exported folder that is missing, damaged, or not an srgan-jax StableHLO export."""


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _write_atomically(path: pathlib.Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_stablehlo(
    weights: Any,
    directory: str | os.PathLike,
    *,
    source: str,
    recipe: Mapping[str, Any] | None = None,
    receptive_field: int | None = None,
) -> dict[str, Any]:
    """Writes the StableHLO artifact and metadata of checked `weights` (config, variables) into
    `directory` (created if needed; existing files there are replaced); returns the metadata."""
    config, variables = weights
    model = config.generator(jnp.float32)

    def generator(lr: jax.Array) -> jax.Array:
        return model.apply(variables, lr, train=False)

    batch, height, width = jax.export.symbolic_shape("batch, height, width")
    lr_spec = jax.ShapeDtypeStruct((batch, height, width, 3), jnp.float32)
    exported = jax.export.export(jax.jit(generator), platforms=PLATFORMS)(lr_spec)
    data = bytes(exported.serialize())
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "function": "SR = generator(LR), float32 NHWC RGB: [batch, height, width, 3] -> "
                    "[batch, scale * height, scale * width, 3]",
        "scale": config.scale,
        "input_range": list(config.lr_range),
        "output_range": list(config.sr_range),
        "output_clipped": False,
        "architecture": {"name": "SRResNet", "num_blocks": config.num_blocks,
                         "channels": config.channels},
        "receptive_field": receptive_field,
        "platforms": list(exported.platforms),
        "calling_convention_version": exported.calling_convention_version,
        "jax_version": jax.__version__,
        "source": source,
        "recipe": dict(recipe) if recipe is not None else None,
        "sha256": {ARTIFACT: _sha256(data)},
    }
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomically(directory / ARTIFACT, data)
    _write_atomically(directory / METADATA, (json.dumps(metadata, indent=2) + "\n").encode())
    return metadata


class StableHLOModel:
    """A loaded export: `model(lr)` runs the generator on a float32 [N, H, W, 3] batch in
    `metadata['input_range']` and returns [N, sH, sW, 3] in `metadata['output_range']`."""

    def __init__(self, exported: jax.export.Exported, metadata: dict[str, Any]):
        self.exported, self.metadata = exported, metadata

    @property
    def scale(self) -> int:
        return int(self.metadata["scale"])

    def __call__(self, lr: Any) -> jax.Array:
        lr = jnp.asarray(lr, jnp.float32)
        if lr.ndim != 4 or lr.shape[-1] != 3:
            raise ValueError(f"expected a float32 [N, H, W, 3] batch, got shape {lr.shape}")
        return self.exported.call(lr)


def load_stablehlo(directory: str | os.PathLike) -> StableHLOModel:
    """Loads an `export_stablehlo` folder, checking its metadata and the artifact's checksum."""
    directory = pathlib.Path(directory)
    try:
        metadata = json.loads((directory / METADATA).read_text())
        data = (directory / ARTIFACT).read_bytes()
    except FileNotFoundError as e:
        raise StableHLOError(f"{directory}: not a StableHLO export (missing {e.filename})") from e
    except ValueError as e:
        raise StableHLOError(f"{directory / METADATA}: unreadable metadata ({e})") from e
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise StableHLOError(f"{directory / METADATA}: not an srgan-jax StableHLO export")
    if metadata.get("sha256", {}).get(ARTIFACT) != _sha256(data):
        raise StableHLOError(f"{directory / ARTIFACT}: damaged (does not match its checksum)")
    return StableHLOModel(jax.export.deserialize(bytearray(data)), metadata)

