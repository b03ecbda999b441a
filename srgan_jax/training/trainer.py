"""The training loop: SRResNet pre-training, then the SRGAN phase, resumable at any checkpoint.

`train_and_evaluate(config, workdir)` runs phase 'pretrain' (steps 0 .. pretrain.steps) and then
phase 'gan' (the next gan.steps), either of which may be empty. Steps are counted globally; the
batch of step `s` is a pure function of (seed, s) and the PRNG key of step `s` is
`fold_in(key(seed), s)`, so a run resumed from a checkpoint continues exactly as if it had never
stopped.

Every `log_every` steps the metrics are fetched (only then: the loop otherwise never waits for the
devices), checked for NaN/Inf and logged with steps/s and the phase's ETA. Every `eval_every` steps
the generator is evaluated on the validation images (Y-channel PSNR/SSIM, float64) and every
`sample_every` steps LR-bicubic | SR | HR strips go to TensorBoard and `<workdir>/samples/`.
Checkpoints are written every `checkpoint_every` steps, at the end of each phase and on SIGTERM
or Ctrl-C (after which the run returns); a non-finite loss stops the run before it is saved.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from PIL import Image

from srgan_jax import metrics, models, vgg
from srgan_jax.data import input_pipeline
from srgan_jax.imresize import imresize
from srgan_jax.training import checkpoints, device_prefetch, metric_writers
from srgan_jax.training import parallel as parallel_lib
from srgan_jax.training import steps as train
from srgan_jax.training import train_state as train_state_lib

PHASES = ("pretrain", "gan")
SAMPLE_SIZE = 384  # sample strips show at most the central SAMPLE_SIZE^2 pixels of each panel


class NonFiniteLossError(FloatingPointError):
    """A training metric became NaN or Inf; the state after that step is never checkpointed."""


@dataclasses.dataclass(frozen=True)
class PhaseSpan:
    """Global steps [start, end) of one training phase."""

    name: str
    start: int
    end: int


def phase_spans(config: ml_collections.ConfigDict) -> list[PhaseSpan]:
    """The two phases in order, with their global step ranges (possibly empty)."""
    for name in PHASES:
        if config[name].steps < 0:
            raise ValueError(f"config.{name}.steps must be >= 0, got {config[name].steps}")
    pretrain_end = config.pretrain.steps
    return [
        PhaseSpan("pretrain", 0, pretrain_end),
        PhaseSpan("gan", pretrain_end, pretrain_end + config.gan.steps),
    ]


@dataclasses.dataclass
class HostStates:
    """Where training stands, on the host: what checkpoints hold besides the iterator position."""

    step: int
    phase: str | None  # None before the first step of a fresh run
    generator: train_state_lib.TrainState | None
    discriminator: train_state_lib.TrainState | None


class StopRequest:
    """Turns SIGTERM (preemption, `kill`) and Ctrl-C into a flag the loop checks after every step.

    The loop then saves a checkpoint and returns. A second Ctrl-C aborts at once, unsaved.
    Single-process runs only: in a multi-host run, JAX's preemption service catches the signal and
    every host learns of it at the same step through `Checkpointer.reached_preemption`.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        del frame
        logging.warning(
            "%s: saving a checkpoint after this step, then stopping (Ctrl-C again aborts)",
            signal.Signals(signum).name,
        )
        self.requested = True
        signal.signal(signal.SIGINT, self._previous[signal.SIGINT])

    def __exit__(self, *exc_info: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class MetricsLog:
    """Per-step device metrics, fetched together only when logging or before a checkpoint."""

    def __init__(self) -> None:
        self._pending: list[tuple[int, dict[str, jax.Array]]] = []

    def append(self, step: int, step_metrics: dict[str, jax.Array]) -> None:
        self._pending.append((step, step_metrics))

    def fetch(self) -> dict[str, float]:
        """The mean of every metric since the last fetch; raises on the first non-finite one."""
        if not self._pending:
            return {}
        fetched = jax.device_get(self._pending)
        self._pending = []
        for step, step_metrics in fetched:
            for name, value in step_metrics.items():
                if not np.isfinite(value):
                    raise NonFiniteLossError(
                        f"{name} is {value} at step {step}: training stopped; the last checkpoint "
                        "(if any) is from before this step and is intact"
                    )
        return {name: float(np.mean([m[name] for _, m in fetched])) for name in fetched[0][1]}


class Evaluator:
    """Y-channel PSNR/SSIM (float64, border = scale) of the generator on full validation images.

    The same numbers for bicubic upscaling (`bicubic_psnr`, `bicubic_ssim`) are reported with
    them, as the baseline a model has to beat.
    """

    def __init__(self, config: ml_collections.ConfigDict):
        self.scale = config.model.scale
        source = input_pipeline.make_source(config.data, split="validation")
        self.pairs = input_pipeline.load_validation_set(
            source, self.scale, max_images=config.num_eval_images
        )
        self.hr = [(hr.astype(np.float64) + 1.0) / 2.0 for _, hr in self.pairs]
        self.bicubic = [
            np.clip(imresize(lr.astype(np.float64), scale=self.scale), 0.0, 1.0)
            for lr, _ in self.pairs
        ]
        self.baseline = {f"bicubic_{k}": v for k, v in self._scores(self.bicubic).items()}
        model = models.ModelConfig.from_training_config(config.model).generator(
            train_state_lib.compute_dtype(config)
        )
        self._apply = jax.jit(functools.partial(model.apply, train=False))

    def super_resolve(self, g_state: train_state_lib.TrainState) -> list[np.ndarray]:
        """SR images in [0, 1] (float64), one per validation image."""
        variables = {"params": g_state.params, "batch_stats": g_state.batch_stats}
        outputs = [self._apply(variables, lr[None]) for lr, _ in self.pairs]
        return [np.clip((np.asarray(sr[0], np.float64) + 1.0) / 2.0, 0.0, 1.0) for sr in outputs]

    def _scores(self, images: list[np.ndarray]) -> dict[str, float]:
        pairs = list(zip(images, self.hr, strict=True))
        return {
            "psnr": float(np.mean([metrics.psnr(x, hr, border=self.scale) for x, hr in pairs])),
            "ssim": float(np.mean([metrics.ssim(x, hr, border=self.scale) for x, hr in pairs])),
        }

    def evaluate(self, sr_images: list[np.ndarray]) -> dict[str, float]:
        """Mean PSNR/SSIM of `sr_images`, plus the bicubic baseline's."""
        return {**self._scores(sr_images), **self.baseline}

    def samples(self, sr_images: list[np.ndarray], count: int) -> list[np.ndarray]:
        """uint8 strips LR-bicubic | SR | HR (centre crops) of the first `count` images."""
        strips = []
        for images in list(zip(self.bicubic, sr_images, self.hr, strict=True))[:count]:
            strip = np.concatenate([_centre_crop(x, SAMPLE_SIZE) for x in images], axis=1)
            strips.append(np.round(strip * 255.0).astype(np.uint8))
        return strips


def _centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    top, left = max(0, (image.shape[0] - size) // 2), max(0, (image.shape[1] - size) // 2)
    return image[top : top + size, left : left + size]


def _vgg_params(config: ml_collections.ConfigDict, content_loss: str, rng: jax.Array) -> Any:
    """Frozen VGG19 params for a content loss (None for the pixel MSE)."""
    layer = train.vgg_layer(content_loss)
    if layer is None:
        return None
    if config.vgg.random_weights:
        logging.warning("VGG19 with RANDOM weights (config.vgg.random_weights): smoke runs only")
        return vgg.random_vgg19_params(rng, layer)
    return vgg.load_vgg19_params(config.vgg.weights_path, layer=layer, download=config.vgg.download)


def _create_states(
    config: ml_collections.ConfigDict, phase: str, rng: jax.Array, bn_axis_name: str | None
) -> tuple[train_state_lib.TrainState, train_state_lib.TrainState | None]:
    """Freshly initialised states of `phase` (G, and D for the GAN phase), with its optimizers."""
    g_rng, d_rng = jax.random.split(jax.random.fold_in(rng, PHASES.index(phase)))
    generator = train_state_lib.create_generator_state(config, g_rng, phase, bn_axis_name)
    if phase == "pretrain":
        return generator, None
    return generator, train_state_lib.create_discriminator_state(config, d_rng, bn_axis_name)


def abstract_states(
    config: ml_collections.ConfigDict, phase: str, bn_axis_name: str | None = None
) -> tuple[train_state_lib.TrainState, train_state_lib.TrainState | None]:
    """Shapes and structure of `phase`'s states, without initialising them: restore targets."""
    return jax.eval_shape(lambda: _create_states(config, phase, jax.random.key(0), bn_axis_name))


def _enter_phase(
    config: ml_collections.ConfigDict,
    phase: str,
    rng: jax.Array,
    previous_generator: train_state_lib.TrainState | None,
    bn_axis_name: str | None,
) -> tuple[train_state_lib.TrainState, train_state_lib.TrainState | None]:
    """States at the start of `phase`: new optimizers, and for the GAN phase a trained G."""
    generator, discriminator = _create_states(config, phase, rng, bn_axis_name)
    if phase == "gan":
        variables = gan_generator_variables(config, previous_generator)
        if variables is not None:
            generator = generator.replace(**variables)
    return generator, discriminator


def gan_generator_variables(
    config: ml_collections.ConfigDict, previous_generator: train_state_lib.TrainState | None
) -> dict[str, Any] | None:
    """`{'params', 'batch_stats'}` the GAN phase's generator starts from (None: from scratch).

    That is `config.gan.init_from`'s checkpoint if set, else this run's pre-trained generator if
    there is one: the paper initialises SRGAN with the trained SRResNet-MSE.
    """
    if config.gan.init_from:
        logging.info("GAN phase: generator initialised from %s", config.gan.init_from)
        return checkpoints.load_generator_variables(config.gan.init_from, config)
    if previous_generator is not None:
        return {"params": previous_generator.params, "batch_stats": previous_generator.batch_stats}
    logging.warning("GAN phase without a pre-trained generator: G starts from scratch")
    return None


def _require_vgg_weights(config: ml_collections.ConfigDict) -> None:
    """Finds (or downloads) the VGG19 weights now if a phase needs them, not days into a run."""
    needed = any(config[p].steps and train.vgg_layer(config[p].content_loss) for p in PHASES)
    if needed and not config.vgg.random_weights:
        vgg.resolve_vgg19_weights(config.vgg.weights_path, download=config.vgg.download)


def _validate(config: ml_collections.ConfigDict) -> None:
    if config.gan.init_from and config.pretrain.steps:
        raise ValueError(
            f"config.gan.init_from={config.gan.init_from!r} would replace the generator this run "
            f"pre-trains (config.pretrain.steps={config.pretrain.steps}); set "
            "config.pretrain.steps=0 to start the GAN phase from that checkpoint"
        )
    for field in ("log_every", "eval_every", "checkpoint_every", "sample_every"):
        if config[field] < 1:
            raise ValueError(f"config.{field} must be >= 1, got {config[field]}")


class _Run:
    """One training run's long-lived pieces: devices, data, checkpoints, logs, validation."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        self.config = config
        self.workdir = workdir
        self.parallel = parallel_lib.Parallel.create(config)
        self.is_chief = jax.process_index() == 0
        self.writer = metric_writers.create_writer(workdir, write_tensorboard=self.is_chief)
        self.evaluator = Evaluator(config)
        host_batches = input_pipeline.create_train_iterator(
            input_pipeline.make_source(config.data, split="train"),
            global_batch_size=config.batch_size,
            crop_size=config.crop_size,
            scale=config.model.scale,
            seed=config.seed,
            layout=self.parallel.layout,
            local_device_count=self.parallel.num_local_devices,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            prefetch=config.data.prefetch,
            num_workers=config.data.num_workers,
        )
        self.train_iter = device_prefetch.DevicePrefetcher(
            host_batches, self.parallel.put_batch, config.data.device_prefetch
        )
        self.checkpointer = checkpoints.Checkpointer(workdir, config, keep=config.keep_checkpoints)
        self.metrics_log = MetricsLog()
        self.last_saved_step: int | None = self.checkpointer.latest_step()

    def close(self) -> None:
        self.train_iter.close()
        self.checkpointer.close()
        self.writer.close()

    # Checkpoints -------------------------------------------------------------------------------

    def restore(self, rng: jax.Array) -> tuple[HostStates, jax.Array]:
        """The latest checkpoint's states (and key), or the start of a fresh run."""
        step = self.checkpointer.latest_step()
        if step is None:
            return HostStates(0, None, None, None), rng
        phase = self.checkpointer.read_meta(step)["phase"]
        templates = abstract_states(self.config, phase, self.parallel.bn_axis_name)
        restored = self.checkpointer.restore(step, *templates)
        self.train_iter.set_state(restored.data_state)
        logging.info(
            "resumed at step %d (phase %s) from %s", step, phase, self.checkpointer.directory
        )
        states = HostStates(
            restored.step, restored.phase, restored.generator, restored.discriminator
        )
        return states, restored.rng

    def save(
        self, states: HostStates, rng: jax.Array, val_metrics: dict[str, float] | None
    ) -> None:
        """Checkpoints `states` (host copies) with the iterator position, once per step."""
        if states.step == self.last_saved_step:
            return
        self.checkpointer.save(
            checkpoints.TrainingCheckpoint(
                step=states.step,
                phase=states.phase,
                generator=states.generator,
                discriminator=states.discriminator,
                rng=rng,
                data_state=self.train_iter.get_state(),
            ),
            metrics=val_metrics,
        )
        self.last_saved_step = states.step
        logging.info("checkpoint of step %d saving to %s", states.step, self.checkpointer.directory)

    # Validation and samples --------------------------------------------------------------------

    def evaluate(
        self, states: HostStates, *, eval_metrics: bool, samples: bool
    ) -> dict[str, float] | None:
        sr_images = self.evaluator.super_resolve(states.generator)
        results = None
        if eval_metrics:
            results = self.evaluator.evaluate(sr_images)
            self.writer.write_scalars(states.step, {f"val/{k}": v for k, v in results.items()})
        if samples and self.is_chief:
            strips = self.evaluator.samples(sr_images, self.config.num_samples)
            self.writer.write_images(
                states.step, {f"samples/{i}": strip for i, strip in enumerate(strips)}
            )
            sample_dir = os.path.join(self.workdir, "samples")
            os.makedirs(sample_dir, exist_ok=True)
            for i, strip in enumerate(strips):
                Image.fromarray(strip).save(
                    os.path.join(sample_dir, f"step{states.step:08d}_{i}.png")
                )
        self.writer.flush()
        return results

    # Training ----------------------------------------------------------------------------------

    def compile_step(self, phase: str, rng: jax.Array) -> tuple[Callable[..., Any], Any]:
        """The phase's compiled step and its placed VGG params."""
        phase_config = self.config[phase]
        content_loss = phase_config.content_loss
        vgg_params = _vgg_params(self.config, content_loss, jax.random.fold_in(rng, 7))
        vgg_dtype = train_state_lib.compute_dtype(self.config)
        if phase == "pretrain":
            step_fn = self.parallel.compile(
                train.pretrain_step, donate_states=1, content_loss=content_loss, vgg_dtype=vgg_dtype
            )
        else:
            step_fn = self.parallel.compile(
                train.gan_step,
                donate_states=2,
                content_loss=content_loss,
                adversarial_weight=phase_config.adversarial_weight,
                vgg_dtype=vgg_dtype,
            )
        return step_fn, self.parallel.put_state(vgg_params)

    def run_phase(
        self, span: PhaseSpan, states: HostStates, rng: jax.Array, stop: StopRequest
    ) -> HostStates:
        """Trains `span` from `states.step`; returns the host states where it stopped."""
        config, par = self.config, self.parallel
        step_fn, vgg_params = self.compile_step(span.name, rng)
        generator = par.put_state(states.generator)
        discriminator = (
            None if states.discriminator is None else par.put_state(states.discriminator)
        )
        step = first_step = states.step

        def host_states() -> HostStates:
            """Host copies of the current (device) states."""
            return HostStates(
                step,
                span.name,
                par.get_state(generator),
                None if discriminator is None else par.get_state(discriminator),
            )

        logging.info("phase %s: steps %d..%d", span.name, step, span.end)
        timer = _Throughput(span.end)
        host_rng = _on_host(rng)
        while step < span.end:
            batch = next(self.train_iter)  # already placed by put_batch
            step_rng = par.put_state(jax.random.key_data(jax.random.fold_in(host_rng, step)))
            if discriminator is None:
                generator, step_metrics = step_fn(generator, batch, step_rng, vgg_params)
            else:
                generator, discriminator, step_metrics = step_fn(
                    generator, discriminator, batch, step_rng, vgg_params
                )
            step += 1
            self.metrics_log.append(step, step_metrics)

            stopping = stop.requested or self.checkpointer.reached_preemption(step)
            phase_end = step == span.end
            checkpoint = phase_end or stopping or step % config.checkpoint_every == 0
            if checkpoint or step % config.log_every == 0 or step == first_step + 1:
                scalars = self.metrics_log.fetch()  # raises on NaN/Inf before anything is saved
                self.writer.write_scalars(step, {**scalars, **timer.scalars(step)})
                logging.info("%s step %d/%d: %s", span.name, step, span.end, timer.describe(step))
            eval_now = phase_end or step % config.eval_every == 0
            sample_now = phase_end or step % config.sample_every == 0
            val_metrics = None
            if checkpoint or eval_now or sample_now:
                current = host_states()
                if eval_now or sample_now:
                    val_metrics = self.evaluate(current, eval_metrics=eval_now, samples=sample_now)
                if checkpoint:
                    self.save(current, rng, val_metrics)
            if stopping:
                break
        return host_states()


def _on_host(key: jax.Array) -> jax.Array:
    """`key` on this host's CPU, so that deriving a step's key never waits for the accelerators.

    An accelerator runs its programs in order: a `fold_in` placed there would queue behind the
    training steps already dispatched, and reading it back (`put_state` replicates keys through the
    host) would make the loop wait for every step instead of running ahead of the devices.
    """
    try:
        cpu = jax.local_devices(backend="cpu")[0]
    except RuntimeError:  # the CPU backend is excluded (JAX_PLATFORMS): keys stay where they are
        return key
    return jax.device_put(key, cpu)


class _Throughput:
    """Steps/s since the phase's first logged step, and the phase's ETA from it."""

    def __init__(self, end_step: int):
        self.end_step = end_step
        self._start: tuple[int, float] | None = None
        self._rate = float("nan")

    def scalars(self, step: int) -> dict[str, float]:
        now = time.perf_counter()
        if self._start is None:  # the first step includes compilation: time from its end
            self._start = (step, now)
        elif step > self._start[0]:
            self._rate = (step - self._start[0]) / (now - self._start[1])
        return {"steps_per_sec": self._rate} if np.isfinite(self._rate) else {}

    def describe(self, step: int) -> str:
        if not np.isfinite(self._rate):
            return "compiled"
        eta = (self.end_step - step) / self._rate
        return f"{self._rate:.3g} steps/s, phase ETA {_duration(eta)}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> HostStates:
    """Trains (or resumes) the run of `config` in `workdir`; returns the final host states.

    Stops early, after saving a checkpoint, on SIGTERM or Ctrl-C; raises `NonFiniteLossError` on a
    NaN/Inf metric and `checkpoints.CheckpointMismatchError` if `workdir` holds another model.
    Multi-host runs call `parallel.maybe_initialize_distributed(config)` first (main.py does).
    """
    _validate(config)
    _require_vgg_weights(config)
    os.makedirs(workdir, exist_ok=True)
    run = _Run(config, workdir)
    try:
        with StopRequest() as stop:
            states, rng = run.restore(jax.random.key(config.seed))
            for span in phase_spans(config):
                if states.step >= span.end:
                    continue
                if states.phase != span.name:
                    generator, discriminator = _enter_phase(
                        config, span.name, rng, states.generator, run.parallel.bn_axis_name
                    )
                    states = HostStates(states.step, span.name, generator, discriminator)
                states = run.run_phase(span, states, rng, stop)
                if states.step < span.end:
                    logging.info("stopped at step %d on request", states.step)
                    break
    finally:
        run.close()
    return states
