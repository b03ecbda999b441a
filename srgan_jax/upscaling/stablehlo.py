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
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from srgan_jax.output_paths import write_output

FORMAT = "srgan-jax-stablehlo"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)  # the format versions `load_stablehlo` reads
SCALE_PROBE = 8  # LR side of the shape the artifact's scale is measured on (no compilation)
ARTIFACT = "model.stablehlo"
METADATA = "metadata.json"
PLATFORMS = ("cpu", "cuda", "tpu")


class StableHLOError(ValueError):
    """An exported folder that is missing, damaged, or not an srgan-jax StableHLO export."""


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def export_stablehlo(
    weights: Any,
    directory: str | os.PathLike,
    *,
    source: str,
    recipe: Mapping[str, Any] | None = None,
    receptive_field: int | None = None,
    overwrite: bool = True,
) -> dict[str, Any]:
    """Writes the StableHLO artifact and metadata of checked `weights` (config, variables) into
    `directory` (created if needed; existing files there are replaced only with `overwrite`, see
    `output_paths.write_output`); returns the metadata."""
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
    write_output(directory / ARTIFACT, data, overwrite=overwrite)
    write_output(directory / METADATA, (json.dumps(metadata, indent=2) + "\n").encode(),
                 overwrite=overwrite)
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
    """Loads an `export_stablehlo` folder, checking its metadata and the artifact's checksum, and
    the metadata against the artifact: the scale it computes, a format version this package
    reads, and the type of each field the loaded model uses. Every failure is a `StableHLOError`
    naming the file."""
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
    _check_fields(metadata, directory / METADATA)
    if metadata["sha256"][ARTIFACT] != _sha256(data):
        raise StableHLOError(f"{directory / ARTIFACT}: damaged (does not match its checksum)")
    try:
        exported = jax.export.deserialize(bytearray(data))
        probe = jax.ShapeDtypeStruct((1, SCALE_PROBE, SCALE_PROBE, 3), jnp.float32)
        out_shape = jax.eval_shape(exported.call, probe).shape
    except Exception as e:  # noqa: BLE001 (flatbuffers and jax raise many kinds on bad bytes)
        raise StableHLOError(f"{directory / ARTIFACT}: not a readable jax.export artifact "
                             f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from e
    computed = out_shape[1] / SCALE_PROBE
    if out_shape[1:] != (metadata["scale"] * SCALE_PROBE,) * 2 + (3,):
        raise StableHLOError(f"{directory / METADATA}: says scale {metadata['scale']}, but the "
                             f"artifact upscales x{computed:g} ({SCALE_PROBE}x{SCALE_PROBE} -> "
                             f"{out_shape[1]}x{out_shape[2]})")
    return StableHLOModel(exported, metadata)


def _check_fields(metadata: dict[str, Any], path: pathlib.Path) -> None:
    """Raises `StableHLOError` naming the first field of `metadata` (at `path`) whose value is
    not what this package writes, or a format version it cannot read."""
    version = metadata.get("format_version")
    if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
        raise StableHLOError(f"{path}: format_version {version!r} is not supported (this "
                             f"srgan-jax reads {', '.join(map(str, SUPPORTED_VERSIONS))})")
    scale = metadata.get("scale")
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise StableHLOError(f"{path}: scale must be a positive integer, got {scale!r}")
    for field in ("input_range", "output_range"):
        value = metadata.get(field)
        if not (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
                and value[0] < value[1]):
            raise StableHLOError(f"{path}: {field} must be [low, high] with low < high, "
                                 f"got {value!r}")
    digest = metadata.get("sha256")
    if not (isinstance(digest, dict) and isinstance(digest.get(ARTIFACT), str)
            and re.fullmatch(r"sha256:[0-9a-f]{64}", digest[ARTIFACT])):
        raise StableHLOError(f"{path}: sha256 must be {{{ARTIFACT!r}: 'sha256:<64 hex digits>'}},"
                             f" got {digest!r}")
