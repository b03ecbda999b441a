"""Trains SRResNet-MSE (then optionally SRGAN-MSE from it) for a fixed wall-clock budget.

The training is the package's own: `srgan_jax.training.trainer.train_and_evaluate` with a config
from `srgan_jax/configs/` (default `srgan_mse.py`, overridable with `--config.field=value`), on
the T91 + BSD200 images of a folder source. When a phase's budget is spent, the script sends itself
SIGTERM, which the trainer handles as it handles a preemption: it finishes the current step, saves a
checkpoint and returns. The budget therefore includes compilation and the first step.

Each trained generator is exported as a model file (`srgan_jax.upscaling.model_file`) and evaluated
on Set5/Set14/BSD100 (Y channel, 4-pixel border, MATLAB bicubic degradation:
`srgan_jax.evaluation.evaluate`) next to bicubic. Everything lands in `--workdir`: `srresnet/` and
`srgan/` (training workdirs, TensorBoard events, samples), `srresnet_mse.msgpack` /
`srgan_mse.msgpack`, `results.md` (the table with steps, wall time and device) and `results.json`.
With `--ship_dir` each model is also written there in the shipped format of `srgan_jax/weights/`
(`srresnet_mse_x4.msgpack` + `.json` metadata + `.md` card with the table), ready to replace the
shipped models.

    python experiments/budget_training.py --workdir /tmp/budget --pretrain_minutes 8
    python experiments/budget_training.py --workdir /tmp/budget --pretrain_minutes 8 \
        --gan_minutes 4 --config.dtype=bfloat16

The GAN phase uses the MSE content loss: the VGG losses need the ImageNet VGG19 weights, which an
offline machine does not have (pass `--config.gan.content_loss=vgg54` where it does). Running the
script again with the same `--workdir` resumes each phase from its checkpoint for another budget.
"""
from __future__ import annotations

import contextlib
import json
import logging as pylogging
import os
import pathlib
import platform
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from srgan_jax.evaluation import evaluate
from srgan_jax.training import train_state, trainer
from srgan_jax.upscaling import model_file, registry
from srgan_jax.upscaling.inference import Upscaler

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
TRAIN_SETS = ("T91", "BSD200")
UNLIMITED_STEPS = 10**9  # a budgeted phase runs until its budget stops it

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Output directory (training workdirs, models, results).")
config_flags.DEFINE_config_file(
    "config",
    str(REPO / "srgan_jax" / "configs" / "srgan_mse.py"),
    "Training config; its data, step counts and GAN init are set by this script.",
    lock_config=False,
)
flags.DEFINE_string("data_dir", str(DEFAULT_DATA), "Folder with train/{T91,BSD200}, benchmarks/.")
flags.DEFINE_float("pretrain_minutes", 8.0, "Wall-clock budget of the SRResNet-MSE phase.")
flags.DEFINE_float("gan_minutes", 0.0, "Wall-clock budget of SRGAN (from the SRResNet); 0: none.")
flags.DEFINE_list("benchmarks", ["Set5", "Set14", "BSD100"], "Evaluation sets in benchmarks/.")
flags.DEFINE_string("validation_set", "Set5", "Benchmark set the trainer validates on.")
flags.DEFINE_string("ship_dir", None, "Also write the models here in srgan_jax/weights' format.")
flags.mark_flags_as_required(["workdir"])


class _QuietOrbax(pylogging.Filter):
    """Drops orbax's many INFO lines per checkpoint (its warnings and errors still show)."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        orbax = f"{os.sep}orbax{os.sep}" in record.pathname
        return record.levelno >= pylogging.WARNING or not orbax


@contextlib.contextmanager
def wall_clock_budget(seconds: float) -> Iterator[None]:
    """SIGTERMs this process after `seconds`, once the trainer is listening for it.

    The trainer installs its own SIGTERM handler (save a checkpoint, stop) only while it runs;
    a signal outside that window must not kill the process. So a placeholder handler is
    installed around the block and the timer fires only while a *different* handler (the
    trainer's) is in place: if the budget ends during start-up, the signal waits for it.
    """
    done = threading.Event()

    def ignore(signum: int, frame: Any) -> None:
        del signum, frame
        logging.info("budget signal arrived outside training: ignored")

    def fire() -> None:
        if done.wait(seconds):
            return
        while not done.is_set():
            if signal.getsignal(signal.SIGTERM) is not ignore:
                logging.info("wall-clock budget of %.0f s spent: stopping", seconds)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.2)

    previous = signal.signal(signal.SIGTERM, ignore)
    timer = threading.Thread(target=fire, daemon=True, name="wall-clock-budget")
    timer.start()
    try:
        yield
    finally:
        done.set()
        timer.join()
        signal.signal(signal.SIGTERM, previous)


def phase_config(
    base: ml_collections.ConfigDict, data_dir: pathlib.Path, phase: str, init_from: str = ""
) -> ml_collections.ConfigDict:
    """`base` training only `phase` on the folder training sets, validating on Set5."""
    config = ml_collections.ConfigDict(base.to_dict())
    config.data.source = "folder"
    config.data.train_dirs = tuple(str(data_dir / "train" / name) for name in TRAIN_SETS)
    config.data.eval_dirs = (str(data_dir / "benchmarks" / FLAGS.validation_set),)
    if phase == "pretrain":
        config.pretrain.steps, config.gan.steps = UNLIMITED_STEPS, 0
    else:
        config.pretrain.steps, config.gan.steps = 0, UNLIMITED_STEPS
        config.gan.init_from = init_from
    return config


def train_for(config: ml_collections.ConfigDict, workdir: pathlib.Path, minutes: float) -> dict:
    """Trains `config` in `workdir` for `minutes` of wall-clock time; steps done and time taken."""
    start = time.perf_counter()
    with wall_clock_budget(60.0 * minutes):
        states = trainer.train_and_evaluate(config, str(workdir))
    return {"steps": states.step, "wall_s": round(time.perf_counter() - start, 1)}


def evaluate_models(
    models: dict[str, pathlib.Path], benchmark_dirs: Sequence[pathlib.Path], scale: int
) -> dict[str, list[dict[str, Any]]]:
    """Bicubic and each model file on every benchmark folder (`srgan-jax evaluate --niqe`'s
    protocol: PSNR/SSIM, and NIQE with HR's)."""
    methods = {"bicubic": evaluate.bicubic_upscaler(scale)}
    for name, path in models.items():
        methods[name] = evaluate.gray_via_rgb(Upscaler.from_path(path))
    return {
        name: [evaluate.evaluate_folder(folder, upscaler, scale, with_niqe=True)
               for folder in benchmark_dirs]
        for name, upscaler in methods.items()
    }


def describe_device() -> str:
    device = jax.devices()[0]
    if device.platform == "cpu":
        return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    return f"{jax.device_count()} x {device.device_kind}"


def results_markdown(runs: dict[str, dict], table: str, config: ml_collections.ConfigDict) -> str:
    lines = [
        f"Budget training on {describe_device()}, jax {jax.__version__}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"Data: {' + '.join(TRAIN_SETS)} ({FLAGS.data_dir}/train), batch {config.batch_size} of "
        f"{config.crop_size}x{config.crop_size} HR crops, dtype {config.dtype}, generator "
        f"{config.model.num_blocks} blocks x {config.model.channels} channels, "
        f"x{config.model.scale}.",
        "",
    ]
    for name, run in runs.items():
        lines.append(
            f"- {name}: {run['steps']} steps in {run['wall_s']:.0f} s (budget "
            f"{run['budget_minutes']:g} min, compilation included), lr {run['learning_rate']}"
        )
    lines += ["", "Y-channel PSNR (dB) / SSIM / NIQE (lower is more natural), 4-pixel border:", "",
              table, ""]
    return "\n".join(lines)


KINDS = {
    "srresnet_mse": "SRResNet-MSE (PSNR-oriented: smooth, no synthesised texture)",
    "srgan_mse": "SRGAN-MSE (adversarial phase from the SRResNet-MSE: synthesised texture)",
}


def per_dataset(rows: list[dict], keys: Sequence[str]) -> dict[str, dict[str, float]]:
    """{key: {dataset: value}} of result rows, rounded as the shipped metadata keeps them."""
    digits = {"ssim": 4}
    return {k: {row["dataset"]: round(row[k], digits.get(k, 2)) for row in rows} for k in keys}


def ship(ship_dir: pathlib.Path, summary: dict, config: ml_collections.ConfigDict,
         models: dict[str, pathlib.Path], results_md: str) -> None:
    """Each model of this run in the shipped format: weights, `registry` metadata and a card."""
    ship_dir.mkdir(parents=True, exist_ok=True)
    for run_name, path in models.items():
        name = f"{run_name}_x{config.model.scale}"
        run = summary["runs"][run_name]
        rows = summary["results"][run_name]
        discriminator = {} if run_name == "srresnet_mse" else {
            "adversarial_weight": config.gan.adversarial_weight,
            "discriminator_antialias": config.gan.discriminator_antialias}
        shutil.copyfile(path, ship_dir / f"{name}.msgpack")
        (ship_dir / f"{name}.md").write_text(
            f"# `{name}`: {KINDS[run_name]}\n\nTrained by `experiments/budget_training.py` "
            f"(`{run_name}` phase) on {summary['device']}.\n\n{results_md}")
        entry = {
            "name": name, "file": f"{name}.msgpack", "card": f"{name}.md",
            "kind": KINDS[run_name], "scale": config.model.scale,
            "training_data": f"{' + '.join(TRAIN_SETS)}, {run['steps']:,} updates",
            "recipe": {"script": "experiments/budget_training.py", "batch_size": config.batch_size,
                       "updates": run["steps"], "learning_rate": run["learning_rate"],
                       "dtype": config.dtype, "device": summary["device"], **discriminator},
            **per_dataset(rows, ("psnr", "ssim", "niqe")),
            "baselines": {"bicubic": per_dataset(summary["results"]["bicubic"],
                                                 ("psnr", "ssim", "niqe")),
                          "HR": {"niqe": per_dataset(rows, ("hr_niqe",))["hr_niqe"]}},
        }
        (ship_dir / f"{name}.json").write_text(json.dumps(entry, indent=2) + "\n")


def run(workdir: pathlib.Path, base: ml_collections.ConfigDict, data_dir: pathlib.Path) -> dict:
    """Both budgeted phases, exports and the evaluation; returns what results.json holds."""
    workdir.mkdir(parents=True, exist_ok=True)
    phases = [("srresnet_mse", "pretrain", FLAGS.pretrain_minutes)]
    if FLAGS.gan_minutes > 0:
        phases.append(("srgan_mse", "gan", FLAGS.gan_minutes))
    runs, models = {}, {}
    for name, phase, minutes in phases:
        train_dir = workdir / ("srresnet" if phase == "pretrain" else "srgan")
        config = phase_config(base, data_dir, phase, init_from=str(workdir / "srresnet"))
        runs[name] = {
            **train_for(config, train_dir, minutes),
            "budget_minutes": minutes,
            "learning_rate": train_state.describe_learning_rate(config, phase),
        }
        models[name] = workdir / f"{name}.msgpack"
        model_file.save_model(models[name], registry.workdir_variables(str(train_dir)))
        logging.info("%s: %s, exported to %s", name, runs[name], models[name])
    benchmark_dirs = [data_dir / "benchmarks" / name for name in FLAGS.benchmarks]
    results = evaluate_models(models, benchmark_dirs, base.model.scale)
    table = evaluate.markdown_table(results)
    report = results_markdown(runs, table, base)
    (workdir / "results.md").write_text(report)
    summary = {
        "device": describe_device(),
        "jax": jax.__version__,
        "runs": runs,
        "results": {
            name: [{k: r[k] for k in ("dataset", "num_images", "psnr", "ssim", "niqe", "hr_niqe")}
                   for r in rows]
            for name, rows in results.items()
        },
    }
    (workdir / "results.json").write_text(json.dumps(summary, indent=2))
    if FLAGS.ship_dir:
        ship(pathlib.Path(FLAGS.ship_dir), summary, base, models, report)
    print(table)
    return summary


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.get_absl_logger().addFilter(_QuietOrbax())
    data_dir = pathlib.Path(FLAGS.data_dir)
    needed = [f"train/{s}" for s in TRAIN_SETS]
    needed += [f"benchmarks/{s}" for s in {*FLAGS.benchmarks, FLAGS.validation_set}]
    for name in needed:
        if not (data_dir / name).is_dir():
            raise app.UsageError(f"--data_dir {data_dir}: no folder {name}")
    run(pathlib.Path(FLAGS.workdir), FLAGS.config, data_dir)


if __name__ == "__main__":
    app.run(main)
