"""Single-file generator models: `srgan-jax export` and the model file format it writes.

A model file is one msgpack document (flax.serialization; never pickle) holding

    format          'srgan-jax-generator'
    format_version  1
    config          {'num_blocks', 'channels', 'scale', 'lr_range', 'sr_range'}
    variables       the generator's {'params', 'batch_stats'} as float32 arrays

Loading checks the document against the architecture its config describes, so a file from a
different model or a damaged file fails with an error naming the tensor and both shapes instead of
a shape error deep inside XLA.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

from srgan_jax.models import ModelConfig

FORMAT = "srgan-jax-generator"
FORMAT_VERSION = 1
COLLECTIONS = ("params", "batch_stats")
Variables = dict[str, Any]


class ModelFileError(ValueError):
    """A model file or variables dict that cannot be used as the generator it claims to be."""


def config_from_dict(config: Mapping[str, Any], source: str) -> ModelConfig:
    """The `ModelConfig` a model file's `config` entry describes (`ModelFileError` if malformed)."""
    unknown = sorted(set(config) - {f.name for f in dataclasses.fields(ModelConfig)})
    if unknown:
        raise ModelFileError(f"{source}: unknown model config fields {unknown}")
    try:
        values = {
            name: tuple(float(x) for x in value) if name.endswith("_range") else int(value)
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


def random_variables(config: ModelConfig, seed: int = 0) -> Variables:
    """Randomly initialised generator variables with random (not unit) BN statistics, as float32
    numpy arrays: stand-ins for a trained model in tests and benchmarks, where the identity BN
    statistics of a fresh `init` would hide whether inference normalises with them."""
    key_init, key_stats = jax.random.split(jax.random.key(seed))
    variables = config.generator().init(key_init, jnp.zeros((1, 8, 8, 3), jnp.float32))
    stats = _flatten(variables["batch_stats"])
    for key, (path, value) in zip(jax.random.split(key_stats, len(stats)), stats.items(),
                                  strict=True):
        noise = jax.random.uniform(key, value.shape, minval=-0.5, maxval=0.5)
        stats[path] = value + noise if path.endswith("mean") else value * (1.0 + noise)
    batch_stats = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in stats.items()})
    return jax.tree.map(np.asarray, {"params": variables["params"], "batch_stats": batch_stats})


def _flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(dict(tree)).items()}


def validate_variables(variables: Any, config: ModelConfig, source: str) -> Variables:
    """Checks `variables` against `config`'s architecture; returns them as float32 numpy arrays.

    Raises `ModelFileError` naming the first missing, unexpected or wrongly shaped tensor.
    """
    if not isinstance(variables, Mapping) or not all(c in variables for c in COLLECTIONS):
        raise ModelFileError(f"{source}: expected variables with collections {list(COLLECTIONS)}")
    found = _flatten({c: variables[c] for c in COLLECTIONS})
    expected = expected_shapes(config)
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
    flat = {tuple(p.split("/")): np.asarray(v, dtype=np.float32) for p, v in found.items()}
    return traverse_util.unflatten_dict(flat)


def save_model(path: str | os.PathLike, variables: Variables, config: ModelConfig) -> None:
    """Writes `variables` (checked against `config`) and `config` to one model file, atomically."""
    path = os.fspath(path)
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "variables": validate_variables(variables, config, "variables to export"),
    }
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(serialization.msgpack_serialize(document))
    os.replace(tmp, path)


def load_model(path: str | os.PathLike) -> tuple[ModelConfig, Variables]:
    """Reads a model file written by `save_model`: (config, float32 numpy variables)."""
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
    config = config_from_dict(document.get("config", {}), path)
    return config, validate_variables(document.get("variables"), config, path)


def checkpoint_variables(workdir: str, step: int | None = None, best: bool = False) -> Variables:
    """Generator variables of a training workdir's checkpoint: latest, `step`, or best PSNR."""
    from srgan_jax.training import checkpoints  # orbax: only for workdirs, not for model files

    if best:
        step = checkpoints.best_step(workdir)
    path = workdir if step is None else os.path.join(checkpoints.checkpoint_dir(workdir), str(step))
    if step is not None and not os.path.isdir(path):
        raise FileNotFoundError(f"{workdir}: no checkpoint for step {step} (looked for {path})")
    return checkpoints.load_generator_variables(path)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="srgan-jax export",
        description="Write a trained generator (variables and model config) to one model file.",
    )
    parser.add_argument("--workdir", required=True, help="training workdir with checkpoints/")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    which.add_argument("--best", action="store_true", help="checkpoint with the best val PSNR")
    parser.add_argument("-o", "--output", required=True, help="model file to write (.msgpack)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.path.exists(args.output) and not args.overwrite:
        print(f"srgan-jax export: {args.output} exists; pass --overwrite", file=sys.stderr)
        return 1
    try:
        variables = checkpoint_variables(args.workdir, args.step, args.best)
        config = ModelConfig.from_variables(variables)
        save_model(args.output, variables, config)
    except (OSError, ValueError) as e:
        print(f"srgan-jax export: {e}", file=sys.stderr)
        return 1
    size = os.path.getsize(args.output) / 2**20
    print(
        f"wrote {args.output} ({size:.1f} MiB): num_blocks={config.num_blocks}, "
        f"channels={config.channels}, scale={config.scale}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
