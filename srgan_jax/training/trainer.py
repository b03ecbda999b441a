"""The training loop: SRResNet pre-training, then the SRGAN phase, resumable at any checkpoint.

`train_and_evaluate(config, workdir)` checks the config and its inputs, locks the workdir, resumes
from the newest readable checkpoint (warning of each training field the config changed, refusing
a change that would go back a phase) or starts afresh, then runs each phase: enter it (new
optimizers; the GAN phase's generator is the trained SRResNet), and repeat [run one compiled call
of 1 or K steps, log, validate, write samples, checkpoint] until the phase ends or a stop is
requested (a stop cuts a validation short: the checkpoint comes first). Steps are
counted globally; the batch of step `s` is a pure function of (seed, s) and its PRNG key is
`fold_in(key(seed), s)`, so a resumed run continues exactly as if it had never stopped.

Metrics are fetched from the devices only when they are logged (`metrics_log`: the loop otherwise
never waits for them), checked for NaN/Inf and logged with steps/s and the phase's ETA. A
non-finite loss stops the run before the state after it is saved. The side jobs live in their own
modules: `phases` (what each phase starts from), `step_blocks` (which steps share a call),
`validation` (the evaluation protocol and sample strips), `run_control` (signals, the workdir
lock, throughput), `config_validation`, `checkpoints`.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Any

import jax
import ml_collections
from absl import logging

from srgan_jax import vgg, workdirs
from srgan_jax.data import input_pipeline, tfds_data
from srgan_jax.training import (
    batches,
    checkpoints,
    config_validation,
    device_prefetch,
    metric_writers,
    metrics_log,
    phases,
    run_control,
    step_blocks,
    steps,
    validation,
)
from srgan_jax.training.checkpoints import TrainingCheckpoint
from srgan_jax.training.parallel import Parallel
from srgan_jax.training.phases import PhaseSpan
from srgan_jax.upscaling.inference import NonFiniteOutputError


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    stop: run_control.StopRequest | None = None,
) -> TrainingCheckpoint:
    """Trains (or resumes) the run of `config` in `workdir`; returns where it stopped.

    Stops early, after saving a checkpoint, on SIGTERM or Ctrl-C (`stop.signal_name` says which;
    pass your own `StopRequest` to read it); raises `metrics_log.NonFiniteLossError` on a NaN/Inf
    metric, `checkpoints.CheckpointMismatchError` if `workdir` holds another model, and
    `ValueError` naming the field for a config that cannot work. Multi-host runs call
    `parallel.maybe_initialize_distributed(config)` first (main.py does).
    """
    parallel = Parallel.create(config.parallelism, config.batch_size)
    config_validation.validate(config)
    _require_inputs(config)
    path = workdirs.workdir_path(workdir)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"--workdir {workdir} is a file, not a folder")
    path.mkdir(parents=True, exist_ok=True)
    workdir = os.fspath(path)  # absolute, or a URL kept as it is (gs://...)
    with (
        run_control.WorkdirLock(workdir) if jax.process_index() == 0 else nullcontext(),
        _Run(config, workdir, parallel) as run,
        nullcontext(stop) if stop else run_control.StopRequest() as stop,
    ):
        state = run.restore()
        for span in phases.phase_spans(config):
            if state.step >= span.end:
                continue
            if state.phase != span.name:
                state = run.enter(span, state)
            state = run.train(span, state, stop)
            if stop.requested:
                logging.info("stopped at step %d (%s)", state.step, stop.signal_name)
                break
    return state


def _require_inputs(config: ml_collections.ConfigDict) -> None:
    """Checks that TFDS works if the data needs it, then finds (or downloads) the VGG19 weights if
    a phase needs them and reads the layers it needs: failures come first, before the workdir is
    made, not after a download or days into a run. Weights that are not Keras's get a warning."""
    tfds_data.require_tfds(config.data)
    layers = phases.vgg_layers_needed(config)
    if layers and not config.vgg.random_weights:
        path = vgg.resolve_vgg19_weights(config.vgg.weights_path, download=config.vgg.download)
        warning = vgg.check_vgg19_weights(path, layers)
        if warning:
            logging.warning("%s", warning)


def check_phase_order(
    state: TrainingCheckpoint, spans: list[PhaseSpan], saved: dict[str, Any], workdir: str
) -> None:
    """Raises `ValueError` if resuming `state` would go back to an earlier phase: a finished
    pre-training step count raised under a GAN checkpoint would pre-train the GAN-trained generator
    again, then start a second GAN phase. `saved` is the checkpoint's config."""
    following = next((span for span in spans if state.step < span.end), None)
    if state.phase is None or following is None:
        return
    if phases.PHASES.index(following.name) < phases.PHASES.index(state.phase):
        field = f"{following.name}.steps"
        raise ValueError(
            f"the checkpoint of step {state.step} is in the {state.phase} phase, but "
            f"config.{field}={following.end} puts step {state.step} back in the {following.name} "
            f"phase; to continue this run keep --config.{field}={saved[following.name]['steps']}; "
            f"to train its generator in the {following.name} phase again, start a new --workdir "
            f"with --config.{following.name}.init_from={workdir}"
        )


class _Run:
    """One training run's long-lived pieces: devices, data, checkpoints, logs, validation."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str, parallel: Parallel):
        self.config, self.workdir, self.parallel = config, workdir, parallel
        self.rng = jax.random.key(config.seed)
        self.is_chief = jax.process_index() == 0
        self.writer = metric_writers.create_writer(workdir, write_tensorboard=self.is_chief)
        self.validation = validation.Validation(config)
        spans = phases.phase_spans(config)
        cadences = [config.eval_every, config.sample_every, config.checkpoint_every]
        self.plan = step_blocks.BlockPlan(
            config.steps_per_call, [span.end for span in spans], cadences
        )
        host_batches = input_pipeline.create_train_iterator(
            input_pipeline.make_source(config.data, split="train"),
            global_batch_size=config.batch_size,
            crop_size=config.crop_size,
            scale=config.model.scale,
            seed=config.seed,
            layout=parallel.layout,
            local_device_count=parallel.num_local_devices,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            prefetch=config.data.prefetch,
            num_workers=config.data.num_workers,
            degrade_on_host=batches.degrade_on_host(config.data.degradation),
        )
        blocks = step_blocks.BlockIterator(host_batches, self.plan, parallel.stack)
        self.batches = device_prefetch.DevicePrefetcher(
            blocks, parallel.put_batch, config.data.device_prefetch
        )
        self.checkpointer = checkpoints.Checkpointer(workdir, config, keep=config.keep_checkpoints)
        self.metrics_log = metrics_log.MetricsLog()
        self.last_saved_step = self.checkpointer.latest_step()

    def __enter__(self) -> _Run:
        return self

    def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
        try:
            self.batches.close()
            if exc_type is KeyboardInterrupt:  # a second Ctrl-C: abandon a save under way
                raise self.checkpointer.interrupted() from None
            self.checkpointer.close()  # raises if the last save failed
        finally:
            self.writer.close()

    def restore(self) -> TrainingCheckpoint:
        """The newest readable checkpoint, or the start of a fresh run."""
        templates = lambda phase: phases.abstract_states(  # noqa: E731
            self.config, phase, self.parallel.bn_axis_name
        )
        restored = self.checkpointer.restore_newest_readable(templates)
        if restored is None:
            return TrainingCheckpoint(0, None, None, None, self.rng, self.batches.get_state())
        saved = self.checkpointer.read_config(restored.step)
        check_phase_order(restored, phases.phase_spans(self.config), saved, self.workdir)
        self.last_saved_step = restored.step
        self.batches.set_state(restored.data_state)
        logging.info("resumed at step %d (phase %s) from %s", restored.step, restored.phase,
                     self.checkpointer.directory)
        changes = checkpoints.config_changes(saved, self.config)
        if changes:
            logging.warning("resuming step %d with a config that differs from its checkpoint's: "
                            "%s", restored.step, ", ".join(changes))
        return restored

    def enter(self, span: PhaseSpan, state: TrainingCheckpoint) -> TrainingCheckpoint:
        """The states at the start of `span`'s phase."""
        generator, discriminator = phases.enter_phase(
            self.config, span.name, self.rng, state.generator, self.parallel.bn_axis_name
        )
        return TrainingCheckpoint(state.step, span.name, generator, discriminator, state.rng,
                                  state.data_state)

    def train(
        self, span: PhaseSpan, state: TrainingCheckpoint, stop: run_control.StopRequest
    ) -> TrainingCheckpoint:
        """Trains `span` from `state.step`; returns where it stopped."""
        config, par = self.config, self.parallel
        calls, vgg_params = phases.compiled_steps(self.config, span.name, par, self.rng)
        models = [par.put_state(state.generator)]
        if state.discriminator is not None:
            models.append(par.put_state(state.discriminator))
        step, first_step = state.step, state.step
        timer = run_control.Throughput(span.end)
        host_rng = steps.on_host(self.rng)
        logging.info("phase %s: steps %d..%d", span.name, step, span.end)

        def current() -> TrainingCheckpoint:
            host = [par.get_state(m) for m in models]
            return TrainingCheckpoint(step, span.name, host[0], host[1] if len(host) > 1 else None,
                                      self.rng, self.batches.get_state())

        while step < span.end:
            count = self.plan.size(step)
            keys = steps.step_keys(host_rng, step, count)
            *models, step_metrics = calls[count](
                *models, next(self.batches), par.put_state(keys), vgg_params
            )
            self.metrics_log.append(step + 1, count, step_metrics)
            previous, step = step, step + count

            stopping = stop.requested or self.checkpointer.reached_preemption(step)
            phase_end = step == span.end
            checkpoint = phase_end or stopping or step % config.checkpoint_every == 0
            log_steps = [s for s in range(previous + 1, step + 1) if s % config.log_every == 0]
            if previous == first_step:
                log_steps.insert(0, previous + 1)  # the first step, alone: it shows the compile
            if checkpoint:
                log_steps.append(step)
            if log_steps:
                self.log(span, step, sorted(set(log_steps)), timer)
            eval_now = phase_end or step % config.eval_every == 0
            sample_now = phase_end or step % config.sample_every == 0
            if checkpoint or eval_now or sample_now:
                self.metrics_log.check()  # a NaN stops the run before it is validated or saved
                host_state = current()
                val_metrics = None
                if not stopping:  # a stop, before or during validation, skips it: save at once
                    with stop.interruptible():
                        val_metrics = self.validate(host_state, eval_now, sample_now)
                    stopping = stop.requested
                if checkpoint or stopping:
                    self.save(host_state, val_metrics)
            if stopping:
                break
        return current()

    def log(
        self, span: PhaseSpan, step: int, log_steps: list[int], timer: run_control.Throughput
    ) -> None:
        """Writes the mean metrics since the previous log at each of `log_steps`, with steps/s
        measured at `step`, the end of this call (raises on a NaN/Inf before anything is saved)."""
        rate = timer.scalars(step)
        for end, means in self.metrics_log.means_at(log_steps):
            self.writer.write_scalars(end, {**means, **rate})
            logging.info("%s step %d/%d: %s", span.name, end, span.end, timer.describe(step))

    def validate(
        self, state: TrainingCheckpoint, eval_metrics: bool, samples: bool
    ) -> dict[str, float] | None:
        """Validation metrics (if `eval_metrics`) and sample strips (if `samples`) of `state`."""
        if not (eval_metrics or samples):
            return None
        try:
            sr_images = self.validation.super_resolve(state.generator)
        except ValueError as error:
            if isinstance(error.__cause__, NonFiniteOutputError):  # diverged: never save it
                raise metrics_log.NonFiniteLossError(
                    f"the generator's validation output is NaN or infinite at step {state.step}: "
                    "training stopped; the last checkpoint (if any) is from before this step and "
                    "is intact") from error
            raise
        results = None
        if eval_metrics:
            results = self.validation.evaluate(sr_images)
            self.writer.write_scalars(state.step, {f"val/{k}": v for k, v in results.items()})
        if samples and self.is_chief:
            strips = self.validation.samples(sr_images, self.config.num_samples)
            validation.write_samples(self.writer, self.workdir, state.step, strips)
        self.writer.flush()
        return results

    def save(self, state: TrainingCheckpoint, val_metrics: dict[str, float] | None) -> None:
        """Checkpoints `state` (host copies), once per step."""
        if state.step == self.last_saved_step:
            return
        self.checkpointer.save(state, metrics=val_metrics)
        self.last_saved_step = state.step
        logging.info("checkpoint of step %d saving to %s", state.step, self.checkpointer.directory)
