"""The single-file generator format: `save_model` writes it, `load_model` reads and checks it.

A model file is one msgpack document (flax.serialization; never pickle) holding

    format          'srgan-jax-generator'
    format_version  1
    config          {'num_blocks', 'channels', 'scale', 'lr_range', 'sr_range'}, and where the
                    generator is not the paper's, 'batch_norm': false (no BatchNorm) and
                    'upsampler': 'resize_conv' (absent: true and 'pixel_shuffle')
    variables       the generator's {'params', 'batch_stats'} as float32 arrays
    checksum        'sha256:<hex>' of the config and every tensor (files written before checksums
                    existed have none: they load with a `ModelFileWarning`)

Loading checks the checksum, then the tensors against the architecture the config describes, so
a damaged file, or one from a different model, fails with an error naming the file (and the tensor
and both shapes) instead of producing a garbled image or a shape error deep inside XLA.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

from srgan_jax.models import UPSAMPLERS, ModelConfig
from srgan_jax.output_paths import write_output

FORMAT = "srgan-jax-generator"
FORMAT_VERSION = 1
COLLECTIONS = ("params", "batch_stats")
CHECKSUM_ALGORITHM = "sha256"
Variables = dict[str, Any]


class ModelFileError(ValueError):
    """A model file or variables dict that cannot be used as the generator it claims to be."""


class ModelFileWarning(UserWarning):
    """A model file that loads but cannot be fully checked (written before checksums existed)."""


class GeneratorWeights(NamedTuple):
    """A generator's architecture and its variables, checked against each other (`check_weights`)
    and held as float32 numpy arrays. Unpacks as `config, variables`."""

    config: ModelConfig
    variables: Variables


def config_from_dict(config: Mapping[str, Any], source: str) -> ModelConfig:
    """The `ModelConfig` a model file's `config` entry describes (`ModelFileError` if malformed)."""
    if not isinstance(config, Mapping):
        raise ModelFileError(f"{source}: malformed model config {config!r}")
    unknown = sorted(set(config) - {f.name for f in dataclasses.fields(ModelConfig)})
    if unknown:
        raise ModelFileError(f"{source}: unknown model config fields {unknown}")
    if not isinstance(config.get("batch_norm", True), bool):
        raise ModelFileError(f"{source}: model config batch_norm must be true or false: "
                             f"{config['batch_norm']!r}")
    if config.get("upsampler", "pixel_shuffle") not in UPSAMPLERS:
        raise ModelFileError(f"{source}: model config upsampler must be one of {UPSAMPLERS}: "
                             f"{config['upsampler']!r}")
    try:
        values = {
            name: tuple(float(x) for x in value) if name.endswith("_range")
            else value if name in ("batch_norm", "upsampler") else int(value)
            for name, value in config.items()
        }
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{source}: malformed model config {dict(config)}: {e}") from e
    for name, value in values.items():
        if name.endswith("_range") and not (len(value) == 2 and value[0] < value[1]):
            raise ModelFileError(f"{source}: model config {name} must be [low, high]: {value}")
    return ModelConfig(**values)


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """'collection/layer/.../name' -> shape of every tensor of the generator `config` describes."""
    shapes = jax.eval_shape(
        config.generator().init, jax.random.key(0), jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)
    )
    return {path: tuple(s.shape) for path, s in _flatten(shapes).items()}


def _flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(dict(tree)).items()}


def check_weights(
    variables: Any, config: ModelConfig | None = None, source: str = "generator variables"
) -> GeneratorWeights:
    """Checks `variables` against `config`'s architecture (default: read off their shapes).

    Returns them as float32 numpy arrays with their config. Raises `ModelFileError` naming the
    first missing, unexpected, wrongly shaped or non-finite tensor.
    """
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise ModelFileError(f"{source}: expected variables with collections {list(COLLECTIONS)}")
    if config is None:
        config = ModelConfig.from_variables(variables)
    # A BatchNorm-free generator has no statistics: its 'batch_stats' are empty or absent.
    found = _flatten({c: variables.get(c) or {} for c in COLLECTIONS})
    try:
        expected = expected_shapes(config)
    except ValueError as e:  # an architecture the Generator refuses (scale 3, say)
        raise ModelFileError(f"{source}: {e}") from e
    for path, shape in expected.items():
        if path not in found:
            raise ModelFileError(f"{source}: missing tensor {path} (expected shape {shape})")
        got = tuple(np.shape(found[path]))
        if got != shape:
            raise ModelFileError(
                f"{source}: tensor {path} has shape {got} but the model "
                f"(num_blocks={config.num_blocks}, channels={config.channels}, "
                f"scale={config.scale}) expects {shape}"
            )
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise ModelFileError(f"{source}: unexpected tensors {unexpected}")
    arrays = {path: np.asarray(value, dtype=np.float32) for path, value in found.items()}
    for path, array in arrays.items():
        if not np.isfinite(array).all():
            raise ModelFileError(f"{source}: tensor {path} holds NaN or infinite values")
    flat = {tuple(path.split("/")): array for path, array in arrays.items()}
    return GeneratorWeights(config, {"batch_stats": {}, **traverse_util.unflatten_dict(flat)})


def checksum(config: Mapping[str, Any], variables: Mapping[str, Any]) -> str:
    """'sha256:<hex>' of a model file's config and tensors (names, shapes, float32 values).

    Tensors that cannot be read as float32 arrays raise `TypeError` or `ValueError`.
    """
    digest = hashlib.new(CHECKSUM_ALGORITHM)
    digest.update(json.dumps(dict(config), sort_keys=True).encode())
    for path, value in sorted(_flatten(variables).items()):
        array = np.ascontiguousarray(value, dtype="<f4")
        digest.update(f"{path}{array.shape}".encode())
        digest.update(array.tobytes())
    return f"{CHECKSUM_ALGORITHM}:{digest.hexdigest()}"


def save_model(
    path: str | os.PathLike, variables: Variables, config: ModelConfig | None = None, *,
    overwrite: bool = True,
) -> None:
    """Writes `variables` (checked against `config`, default: read off their shapes), their config
    and their checksum to one model file, atomically (`output_paths.write_output`: without
    `overwrite`, an existing file is kept)."""
    config, variables = check_weights(variables, config, "variables to export")
    config_dict = config.to_dict()
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config_dict,
        "variables": variables,
        "checksum": checksum(config_dict, variables),
    }
    write_output(path, serialization.msgpack_serialize(document), overwrite=overwrite)


def load_model(path: str | os.PathLike) -> GeneratorWeights:
    """Reads and checks a model file written by `save_model`: (config, float32 numpy variables)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        document = serialization.msgpack_restore(data)
    except Exception as e:  # msgpack raises ValueError or its own ExtraData/FormatError types
        raise ModelFileError(
            f"{path}: not a readable srgan-jax model file (truncated or corrupt?): {e}"
        ) from e
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a srgan-jax model file (no format={FORMAT!r} header)")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {version} is not supported "
            f"(this srgan-jax reads version {FORMAT_VERSION})"
        )
    _verify_checksum(document, path)
    config = config_from_dict(document.get("config", {}), path)
    return check_weights(document.get("variables"), config, path)


def _verify_checksum(document: dict[str, Any], path: str) -> None:
    """Raises `ModelFileError` if the document's tensors or config differ from its checksum."""
    stored = document.get("checksum")
    if stored is None:
        warnings.warn(
            f"{path}: this model file has no checksum (written by an older srgan-jax), so damage "
            "to its weights cannot be detected; `srgan-jax export` it again to add one",
            ModelFileWarning, stacklevel=3,
        )
        return
    damaged = f"{path}: the model file is damaged (its weights do not match their checksum)"
    try:
        actual = checksum(document["config"], document["variables"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ModelFileError(damaged) from e
    if actual != stored:
        raise ModelFileError(damaged)
