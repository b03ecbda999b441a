"""Reading a training workdir's checkpoints without the trainer: where they are, which step, the
generator's variables.

A workdir keeps its checkpoints in `<workdir>/checkpoints/<step>/` (orbax), with the config of the
run and, for evaluated steps, the validation metrics by which `best_step` chooses. Writing them is
`training.checkpoints`; reading a generator out of one is shared by the GAN phase's start
(`config.gan.init_from`) and by export and upscale (`upscaling.registry`), so it lives here, below
both: the upscaler reads a workdir without importing the training stack.
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from srgan_jax import workdirs

PyTree = Any

# Config fields a checkpoint's arrays depend on: restoring into a different value cannot work.
ARCHITECTURE_FIELDS = ("model.num_blocks", "model.channels", "model.scale")
BEST_METRIC = "psnr"
PHASE_METRIC = "phase"  # stored with the metrics: the index of the phase in PHASE_ORDER
PHASE_ORDER = ("pretrain", "gan")
READ_ATTEMPTS = 3  # checkpoints a reader tries when a running training removes the one it reads


class CheckpointMismatchError(ValueError):
    """A checkpoint was written for a different model than the config describes."""


def checkpoint_dir(workdir: str | os.PathLike) -> str:
    """The checkpoint directory of a workdir: absolute if local (orbax wants that), or a URL."""
    return os.fspath(workdirs.workdir_path(workdir) / "checkpoints")


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for key in dotted.split("."):
        value = value[key]
    return value


def check_compatible(
    saved: dict[str, Any], config: ml_collections.ConfigDict, fields: tuple[str, ...], where: str
) -> None:
    """Raises `CheckpointMismatchError` naming the first field where `saved` and `config` differ."""
    current = config.to_dict()
    for field in fields:
        old, new = _lookup(saved, field), _lookup(current, field)
        if old != new:
            raise CheckpointMismatchError(
                f"checkpoint {where} was written with {field}={old!r} but the config has "
                f"{field}={new!r}; use a new --workdir, or set --config.{field}={old!r}"
            )


def best_in_latest_phase(metrics: dict[str, float]) -> tuple[float, float]:
    """Sort key of "best": later phases first, then PSNR (checkpoints from before phases were
    recorded count as pre-training). SRGAN trades PSNR for perceptual quality, so ranking its
    checkpoints against the pre-trained SRResNet's would always pick the SRResNet."""
    return metrics.get(PHASE_METRIC, 0.0), metrics[BEST_METRIC]


def manager_options(**options: Any) -> ocp.CheckpointManagerOptions:
    """Options of every orbax manager of a checkpoint directory, reading or writing."""
    # Orbax writes metrics to disk (so `best` survives restarts) only when best_fn is set.
    return ocp.CheckpointManagerOptions(
        best_fn=best_in_latest_phase, best_mode="max", **options
    )


def _is_step_dir(path: epath.Path) -> bool:
    """Whether `path` is one checkpoint step's directory (named by its step, with a generator)."""
    return path.name.isdigit() and (path / "generator").is_dir()


def _resolve_step_dir(path: str | os.PathLike) -> tuple[str, int]:
    """(checkpoint directory, step) for a workdir, its `checkpoints/` dir or one step's dir."""
    path = workdirs.workdir_path(path)
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    if _is_step_dir(path):
        return os.fspath(path.parent), int(path.name)
    steps = sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) if path.is_dir() else []
    if not steps:
        raise FileNotFoundError(
            f"no checkpoint found at {path}: expected a training workdir, its checkpoints/ "
            "directory or one step's directory"
        )
    return os.fspath(path), steps[-1]


def best_step(workdir: str) -> int:
    """The step of `workdir`'s best checkpoint (`best_in_latest_phase`), read-only."""
    directory = checkpoint_dir(workdir)
    with ocp.CheckpointManager(directory, options=manager_options(read_only=True)) as manager:
        step = manager.best_step()
    if step is None:
        raise FileNotFoundError(
            f"{workdir}: no checkpoint was saved with a validation {BEST_METRIC}"
        )
    return step


def load_generator_variables(
    path: str, config: ml_collections.ConfigDict | None = None
) -> dict[str, PyTree]:
    """`{'params', 'batch_stats'}` of the generator in a checkpoint (latest step of a workdir).

    This is how the GAN phase starts from a trained SRResNet (`config.gan.init_from`); with
    `config` the checkpoint's architecture is checked against it first. The workdir may belong to
    a training that is running: if the latest step is removed while it is read (the training
    keeps only its last few), the newest step then present is read instead.
    """
    one_step = _is_step_dir(workdirs.workdir_path(path))
    removed: list[int] = []
    for _ in range(READ_ATTEMPTS):
        directory, step = _resolve_step_dir(path)
        try:
            return _read_generator(directory, step, config)
        except Exception:
            if one_step or epath.Path(directory, str(step)).exists():
                raise  # damaged or another model, not removed; or the one step asked for
            removed.append(step)
    raise FileNotFoundError(
        f"{path}: the checkpoints of steps {removed} were removed while they were read (a "
        "training rotating its checkpoints); try again, or export with --step or --best")


def _read_generator(
    directory: str, step: int, config: ml_collections.ConfigDict | None
) -> dict[str, PyTree]:
    """The generator variables of checkpoint `step` in `directory`, read-only."""
    options = ocp.CheckpointManagerOptions(read_only=True)
    with ocp.CheckpointManager(directory, options=options) as m:
        if config is not None:
            saved = m.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
            where = os.path.join(directory, str(step))
            check_compatible(saved["config"], config, ARCHITECTURE_FIELDS, where)
        generator = m.restore(step, args=ocp.args.Composite(generator=ocp.args.StandardRestore()))
    state = generator["generator"]
    return {"params": state["params"], "batch_stats": state["batch_stats"]}
