"""Training checkpoints: orbax, under `<workdir>/checkpoints`, resumable at any saved step.

One checkpoint step holds these items:
  generator      the generator `TrainState` (params, batch_stats, optimizer state)
  discriminator  the discriminator `TrainState`, during the GAN phase only (SRResNet runs never
                 build the 23M-parameter discriminator)
  meta           {'step', 'phase', 'rng'}: the global step, 'pretrain' or 'gan', the base PRNG key
  data           the training input iterator's position, for exact resume
  config         the run's config, so a restart with a different model gets a clear error
  metrics        (written by orbax) the validation PSNR/SSIM, when the step was evaluated

Saves are asynchronous (the arrays are on the host, so training goes on while files are written)
and atomic: orbax writes into a temporary directory and renames it when complete, so a process
killed mid-save leaves the previous checkpoint as the latest one. The last `keep` checkpoints are
kept, plus the one with the best validation PSNR overall and the best one of the latest phase.

"Best" (`best_step`, `srgan-jax export --best`) means the best validation PSNR within the run's
latest phase: SRGAN trades PSNR for perceptual quality, so ranking its checkpoints against the
pre-trained SRResNet's would always pick the SRResNet. Reading a checkpoint's generator without
training (`gan.init_from`, `srgan-jax export`) is `srgan_jax.checkpoint_reading`, which also owns
the directory layout and that ranking.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from orbax.checkpoint import checkpoint_managers

from srgan_jax.checkpoint_reading import (
    ARCHITECTURE_FIELDS,
    BEST_METRIC,
    PHASE_METRIC,
    PHASE_ORDER,
    CheckpointMismatchError,
    best_in_latest_phase,
    check_compatible,
    checkpoint_dir,
    manager_options,
)

PyTree = Any

# The discriminator's dense layer is sized by the crop; it matters once a GAN phase has run.
DISCRIMINATOR_FIELDS = ("crop_size",)
# Config fields that change how a run is watched, stored or spread over hosts, not what it trains:
# a resumed run may change them without a word.
LOGISTICS_FIELDS = frozenset({
    "log_every", "eval_every", "checkpoint_every", "sample_every", "keep_checkpoints",
    "num_samples", "num_eval_images", "evals", "distributed", "coordinator_address",
    "num_processes", "process_id", "vgg.download", "data.prefetch", "data.num_workers",
    "data.device_prefetch", "data.tfds_data_dir", "data.cache_bytes",
})
DAMAGED_DIR = "damaged_checkpoints"  # unreadable steps are moved here, never deleted


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a lost connection): the run stops; the
    checkpoints written before are intact."""


@dataclasses.dataclass
class TrainingCheckpoint:
    """Where a run stands: everything needed to continue it from `step`.

    The trainer's one representation of a training state on the host (unreplicated arrays):
    restored from a checkpoint, returned by `train_and_evaluate`, and saved. `phase` is None
    and the states are None before the first step of a fresh run.
    """

    step: int
    phase: str
    generator: PyTree
    discriminator: PyTree | None
    rng: jax.Array
    data_state: Any


def config_changes(saved: dict[str, Any], config: ml_collections.ConfigDict) -> list[str]:
    """'field old -> new' for each training field (not `LOGISTICS_FIELDS`) whose value in
    `config` differs from the checkpoint's `saved` config, in field order. Fields only one of them
    has (added or removed in another version of this package) are not compared."""
    old, new = _flatten_config(saved), _flatten_config(json.loads(config.to_json()))
    return [f"{field} {old[field]!r} -> {new[field]!r}" for field in new
            if field in old and old[field] != new[field]
            and not any(field == f or field.startswith(f + ".") for f in LOGISTICS_FIELDS)]


def _flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'data.source': 'demo', ...}: the leaves of a config as JSON stores it, by dotted name."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _abstract(tree: PyTree) -> PyTree:
    """Shape/dtype targets, so orbax restores host numpy arrays whatever the target's placement."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def _best_metric(metrics: dict[str, float]) -> float:
    return metrics[BEST_METRIC]


def _preservation_policy(keep: int) -> checkpoint_managers.PreservationPolicy:
    """The latest `keep` checkpoints, the best by validation PSNR, the best of the latest phase."""
    best = [
        checkpoint_managers.BestN(
            get_metric_fn=key, reverse=False, n=1, keep_checkpoints_without_metrics=False
        )
        for key in (_best_metric, best_in_latest_phase)
    ]
    return checkpoint_managers.AnyPreservationPolicy(
        policies=[checkpoint_managers.LatestN(n=keep), *best]
    )


class Checkpointer:
    """Saves and restores the `TrainingCheckpoint`s of one run; `close()` it (or use `with`)."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict, *, keep: int = 3):
        if keep < 1:
            raise ValueError(f"config.keep_checkpoints must be at least 1, got {keep}")
        self.config = config
        self.directory = checkpoint_dir(workdir)
        options = manager_options(
            preservation_policy=_preservation_policy(keep),
            enable_async_checkpointing=True,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._saving: int | None = None  # the step whose asynchronous save may still fail

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def best_step(self) -> int | None:
        """The step with the best validation PSNR of the latest phase (None: none evaluated)."""
        return self._manager.best_step()

    def save(self, ckpt: TrainingCheckpoint, metrics: dict[str, float] | None = None) -> None:
        """Starts an asynchronous save of `ckpt`; `metrics` (with 'psnr') rank it for `best`."""
        items = {
            "generator": ocp.args.StandardSave(ckpt.generator),
            "meta": ocp.args.JsonSave(
                {
                    "step": ckpt.step,
                    "phase": ckpt.phase,
                    "rng": np.asarray(jax.random.key_data(ckpt.rng)).tolist(),
                }
            ),
            "data": ocp.args.JsonSave(ckpt.data_state),
            "config": ocp.args.JsonSave(json.loads(self.config.to_json())),
        }
        if ckpt.discriminator is not None:
            items["discriminator"] = ocp.args.StandardSave(ckpt.discriminator)
        self.wait()  # a failure of the previous save is reported as that step's
        self._saving = ckpt.step
        self._finishing(lambda: self._manager.save(
            ckpt.step,
            args=ocp.args.Composite(**items),
            metrics=None
            if metrics is None
            else {
                **{k: float(v) for k, v in metrics.items()},
                PHASE_METRIC: float(PHASE_ORDER.index(ckpt.phase)),
            },
            force=True,
        ))

    def _finishing(self, call: Callable[[], Any]) -> Any:
        """`call()` (which may end the pending save), a failed save raised as one
        `CheckpointWriteError` naming its step, the reason and the checkpoint that is intact."""
        try:
            return call()
        except Exception as error:  # noqa: BLE001 (orbax re-raises its writer threads' errors)
            step, self._saving = self._saving, None
            if step is None:
                raise
            code = re.search(r"os_error_code='?(\d+)", str(error))
            reason = os.strerror(int(code[1])) if code else " ".join(str(error).split())[:300]
            intact = [s for s in self._committed_steps() if s != step]
            raise CheckpointWriteError(
                f"cannot write the checkpoint of step {step} to {self.directory} ({reason}); "
                + (f"the checkpoint of step {max(intact)} is intact: fix that, then run the same "
                   "command to resume from it" if intact else "no earlier checkpoint exists")
            ) from error

    def reached_preemption(self, step: int) -> bool:
        """Whether JAX's preemption service has asked every host to save and stop at `step`."""
        return jax.process_count() > 1 and self._manager.reached_preemption(step)

    def read_meta(self, step: int) -> dict[str, Any]:
        """The `meta` item of `step` (its phase decides the state targets to restore into)."""
        restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return restored["meta"]

    def read_config(self, step: int) -> dict[str, Any]:
        """The config `step` was written with, as JSON stores it."""
        restored = self._manager.restore(
            step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return restored["config"]

    def restore_newest_readable(
        self, templates: Callable[[str], tuple[PyTree, PyTree | None]]
    ) -> TrainingCheckpoint | None:
        """The newest checkpoint that reads back whole (None if there is none).

        `templates(phase)` gives the (generator, discriminator) structures of a phase. A step that
        cannot be read (a truncated or missing file, broken metadata) is moved to
        `<workdir>/damaged_checkpoints/` with a warning naming it, and the step before it is
        tried: a crash that damaged the latest checkpoint costs only the steps since the one
        before. A checkpoint of another model is an error, not damage.
        """
        for step in sorted(self.all_steps(), reverse=True):
            try:
                phase = self.read_meta(step)["phase"]
                return self.restore(step, *templates(phase))
            except CheckpointMismatchError:
                raise
            except Exception as error:  # noqa: BLE001 (orbax, tensorstore and json all raise)
                kept = self._set_aside(step)
                logging.warning(
                    "checkpoint of step %d is unreadable (%s: %s); moved it to %s and trying "
                    "the step before", step, type(error).__name__, str(error)[:300], kept)
        return None

    def _set_aside(self, step: int) -> str:
        """Moves step `step`'s directory out of the manager's sight; returns where it went."""
        directory = epath.Path(self.directory)
        target_dir = directory.parent / DAMAGED_DIR
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        (directory / str(step)).rename(target)
        self._manager.reload()
        return os.fspath(target)

    def restore(
        self, step: int, generator: PyTree, discriminator: PyTree | None
    ) -> TrainingCheckpoint:
        """Restores `step` into the structure of the given template states (arrays or shapes).

        Checks the checkpoint's config against ours first, so a different model is a clear error
        rather than an orbax shape mismatch.
        """
        items: dict[str, Any] = {
            "config": ocp.args.JsonRestore(),
            "meta": ocp.args.JsonRestore(),
            "data": ocp.args.JsonRestore(),
        }
        saved = self._manager.restore(step, args=ocp.args.Composite(**items))
        where = os.path.join(self.directory, str(step))
        check_compatible(saved["config"], self.config, ARCHITECTURE_FIELDS, where)
        meta = saved["meta"]
        states = {"generator": ocp.args.StandardRestore(_abstract(generator))}
        if discriminator is not None:
            check_compatible(saved["config"], self.config, DISCRIMINATOR_FIELDS, where)
            states["discriminator"] = ocp.args.StandardRestore(_abstract(discriminator))
        restored = self._manager.restore(step, args=ocp.args.Composite(**states))
        return TrainingCheckpoint(
            step=meta["step"],
            phase=meta["phase"],
            generator=restored["generator"],
            discriminator=restored["discriminator"] if discriminator is not None else None,
            rng=jax.random.wrap_key_data(np.asarray(meta["rng"], dtype=np.uint32)),
            data_state=saved["data"],
        )

    def interrupted(self) -> KeyboardInterrupt:
        """The KeyboardInterrupt for a second Ctrl-C, which abandons a save under way: its message
        says which step was being written and where the next run resumes (none without one)."""
        if self._saving is None or not self._manager.is_saving_in_progress():
            return KeyboardInterrupt()
        intact = [s for s in self._committed_steps() if s != self._saving]
        return KeyboardInterrupt(
            f"the checkpoint of step {self._saving} was being written: if it is incomplete, the "
            "next run ignores it and resumes from "
            + (f"step {max(intact)}" if intact else "the start"))

    def _committed_steps(self) -> list[int]:
        """The steps whose directories are complete (orbax renames them into place)."""
        directory = epath.Path(self.directory)
        return sorted(int(p.name) for p in directory.iterdir()
                      if p.name.isdigit()) if directory.is_dir() else []

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk (`CheckpointWriteError` if the
        last one failed)."""
        self._finishing(self._manager.wait_until_finished)
        self._saving = None

    def close(self) -> None:
        """Waits for the pending save, then releases orbax's threads. A second Ctrl-C while
        waiting leaves the save unfinished: orbax ignores such a step on the next start."""
        try:
            self.wait()
        except KeyboardInterrupt:
            raise self.interrupted() from None
        except Exception:
            with contextlib.suppress(Exception):  # the save's error is the one to report
                self._manager.close()
            raise
        self._manager.close()

