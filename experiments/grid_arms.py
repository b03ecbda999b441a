"""The grid experiment: SRGAN-MSE arms from one start, measured on Set14 as they train.

The adversarial phase started from the shipped SRResNet grows a 4x4 grid over SR images
(`benchmarks/RESULTS.md`). Each arm changes one thing (or, for a combination, the named few)
against the paper's SRGAN-MSE step; all start from `srresnet_mse_x4` and draw the same batches
(same seed and data: T91 + BSD200, batch 16 of 96x96 crops, Adam at 1e-4).

    python experiments/grid_arms.py train paper            # one arm, resumable; see ARMS
    python experiments/grid_arms.py measure                # every arm's checkpoints on Set14
    python experiments/grid_arms.py report --figure experiments/figures/grid_arms.png

`train` writes `<root>/<arm>/` (a training workdir, a checkpoint every 50 updates, all kept).
`measure` exports the generator of each checkpoint at a multiple of 100 updates and at 250 and
measures it on Set14 as `srgan-jax evaluate --niqe` does (PSNR/SSIM on Y with a 4-pixel border,
NIQE) plus `srgan_jax.evaluation.texture` (energy above the LR Nyquist limit relative to HR's,
and the power of the exact 4-pixel-periodic component: the grid); results go to
`<root>/<arm>/set14.json`, cached per step, and the SR crops of `STRIP_CROPS` to
`<root>/<arm>/crops/`. `report` prints the table (each arm at 250 / 500 / 1,000 updates), draws
the curves (needs matplotlib: `pip install -e '.[plots]'`) and the strips at 2x zoom.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from srgan_jax import image_io, metrics
from srgan_jax.evaluation import protocol, texture
from srgan_jax.evaluation.validation_set import list_dataset, load_image

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DEFAULT_ROOT = REPO.parent / "runs" / "grid_arms"
START = "srresnet_mse_x4"

# Arms with a start of their own: the shipped SRResNet with fresh upsampling layers, fine-tuned on
# the MSE for 500 updates (global steps 0..500), then the GAN phase from it.
RESTART = {"pretrain.init_from": START, "pretrain.reinit_upsampling": True,
           "pretrain.steps": 500, "gan.init_from": ""}
# Each arm's config overrides on top of the common SRGAN-MSE set-up (`arm_config`).
ARMS: dict[str, dict[str, Any]] = {
    "paper": {},
    "antialias": {"gan.discriminator_antialias": True},
    "shift": {"gan.discriminator_random_shift": 4},
    "fold_bn": {"gan.fold_batch_norm": True},
    "spectral": {"gan.discriminator_normalization": "spectral"},
    "relativistic": {"gan.adversarial_loss": "relativistic"},
    "d_lr_0.1": {"gan.discriminator_lr_scale": 0.1},
    "adv_5e-4": {"gan.adversarial_weight": 5e-4},
    "resize_conv": {"model.upsampler": "resize_conv", **RESTART},
    "icnr_start": RESTART,
    # the two that delayed the grid longest, together
    "resize_conv_spectral": {"model.upsampler": "resize_conv",
                             "gan.discriminator_normalization": "spectral", **RESTART},
}
TABLE_STEPS = (250, 500, 1000)
STRIP_CROPS = {"comic": ("comic.png", 60, 40), "foreman": ("foreman.png", 40, 90),
               "baboon": ("baboon.png", 200, 180)}  # Set14 image, top-left y, x (HR pixels)
CROP_SIZE = 64
ZOOM = 2


def arm_config(arm: str, steps: int, data: pathlib.Path):
    """The SRGAN-MSE config of `arm`: pretrain skipped, G from the shipped SRResNet."""
    from srgan_jax.configs import srgan_mse

    config = srgan_mse.get_config()
    config.pretrain.steps = 0
    config.gan.init_from = START
    config.gan.steps = steps
    config.data.source = "folder"
    config.data.train_dirs = (str(data / "train" / "T91"), str(data / "train" / "BSD200"))
    config.data.eval_dirs = (str(data / "benchmarks" / "Set5"),)
    config.eval_every = config.sample_every = 100_000  # measured afterwards, from checkpoints
    config.checkpoint_every, config.keep_checkpoints, config.log_every = 50, 100, 25
    for field, value in ARMS[arm].items():
        section, name = field.split(".")
        config[section][name] = value
    return config


def train(arm: str, root: pathlib.Path, steps: int, data: pathlib.Path) -> None:
    from absl import logging

    from srgan_jax.training import trainer

    logging.set_verbosity(logging.INFO)  # the trainer's progress lines, as `srgan_jax.main` shows
    trainer.train_and_evaluate(arm_config(arm, steps, data), str(root / arm))


def gan_start(arm: str) -> int:
    """The global step where `arm`'s GAN phase starts (after its fine-tune, if any)."""
    return ARMS[arm].get("pretrain.steps", 0)


def checkpoint_steps(workdir: pathlib.Path, start: int) -> list[int]:
    """The global steps of `workdir`'s checkpoints that the curves and the table use: every 100
    GAN updates and the table's, counted from the GAN phase's `start` (included)."""
    found = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    return [s for s in found
            if s >= start and ((s - start) % 100 == 0 or s - start in TABLE_STEPS)]


def measure_generator(upscale: protocol.UpscaleFn, images: list, keep: dict[str, tuple]
                      ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Mean PSNR/SSIM/NIQE/texture/grid of `upscale` on the prepared images, and its crops."""
    rows, crops = [], {}
    for image in images:
        sr = protocol.super_resolve(image, upscale)
        score = protocol.score(image, sr, with_niqe=True)
        energy = texture.texture_energy(sr, image.hr, image.scale)
        rows.append((score.psnr, score.ssim, score.niqe, energy.high_frequency, energy.grid))
        for name, (file, y, x) in keep.items():
            if image.name == file:
                crops[name] = sr[y:y + CROP_SIZE, x:x + CROP_SIZE]
    means = np.mean(rows, axis=0)
    return dict(zip(("psnr", "ssim", "niqe", "texture", "grid"), map(float, means),
                    strict=True)), crops


def set14(data: pathlib.Path) -> list:
    folder = data / "benchmarks" / "Set14"
    return [load_image(path, folder, 4) for path in list_dataset(folder)]


def discriminator_outputs(workdir: pathlib.Path) -> dict[int, dict[str, float]]:
    """d_real / d_fake as the trainer logged them (means over each logging interval)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    outputs: dict[int, dict[str, float]] = {}
    for events in sorted(workdir.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in ("d_real", "d_fake"):
            if tag in accumulator.Tags()["scalars"]:
                for event in accumulator.Scalars(tag):
                    outputs.setdefault(event.step, {})[tag] = event.value
    return outputs


def measure(arms: Sequence[str], root: pathlib.Path, data: pathlib.Path) -> None:
    from srgan_jax.upscaling import registry
    from srgan_jax.upscaling.inference import Upscaler

    images = set14(data)
    keep = STRIP_CROPS
    references = root / "references.json"
    if not references.exists():
        start, start_crops = measure_generator(Upscaler.from_path(START), images, keep)
        bicubic, _ = measure_generator(protocol.bicubic_upscaler(4), images, {})
        hr = {"niqe": float(np.mean([protocol.naturalness(i, i.hr) for i in images])),
              "grid": float(np.mean([texture.grid_energy(metrics.y_plane(i.hr, 4))
                                     for i in images])), "texture": 1.0}
        references.write_text(json.dumps({"start": start, "bicubic": bicubic, "HR": hr}, indent=1))
        save_crops(root / "start_crops", start_crops)
        save_crops(root / "hr_crops", {name: next(i.hr for i in images if i.name == file)
                                       [y:y + CROP_SIZE, x:x + CROP_SIZE]
                                       for name, (file, y, x) in keep.items()})
    for arm in arms:
        workdir = root / arm
        if not (workdir / "checkpoints").is_dir():
            continue
        path = workdir / "set14.json"
        results = json.loads(path.read_text()) if path.exists() else {}
        d_outputs = discriminator_outputs(workdir)
        start = gan_start(arm)
        for step in checkpoint_steps(workdir, start):
            updates = step - start  # GAN updates, the key of the results
            if str(updates) in results:
                continue
            variables = registry.workdir_variables(str(workdir), step)
            upscaler = Upscaler(variables, dtype="float32")
            row, crops = measure_generator(upscaler, images, keep)
            logged = [s for s in d_outputs if start < s <= step]
            row.update(d_outputs[max(logged)] if logged else {})
            results[str(updates)] = row
            save_crops(workdir / "crops" / str(updates), crops)
            path.write_text(json.dumps(results, indent=1))
            print(f"{arm} {updates}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()),
                  flush=True)


def save_crops(folder: pathlib.Path, crops: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, crop in crops.items():
        image_io.write_image(folder / f"{name}.png", crop)


def load_results(root: pathlib.Path, arms: Sequence[str]) -> dict[str, dict[int, dict]]:
    results = {}
    for arm in arms:
        path = root / arm / "set14.json"
        if path.exists():
            results[arm] = {int(k): v for k, v in json.loads(path.read_text()).items()}
    return results


def table(results: dict[str, dict[int, dict]], references: dict[str, dict]) -> str:
    """Markdown: one row per arm and table step: PSNR, NIQE, texture/HR, grid, D's outputs."""
    lines = ["| arm | updates | PSNR-Y (dB) | NIQE | texture / HR | 4-px grid power | "
             "d_real / d_fake |", "|---|---|---|---|---|---|---|"]
    for name, ref in references.items():
        psnr = f"{ref['psnr']:.2f}" if "psnr" in ref else "-"
        lines.append(f"| {name} | - | {psnr} | {ref['niqe']:.2f} | {ref['texture']:.3f} | "
                     f"{ref['grid']:.3f} | |")
    for arm, rows in results.items():
        for step in TABLE_STEPS:
            if step in rows:
                r = rows[step]
                d = (f"{r['d_real']:.2f} / {r['d_fake']:.2f}" if "d_real" in r else "")
                lines.append(f"| {arm} | {step:,} | {r['psnr']:.2f} | {r['niqe']:.2f} | "
                             f"{r['texture']:.3f} | {r['grid']:.3f} | {d} |")
    return "\n".join(lines)


def curves(results: dict[str, dict[int, dict]], references: dict[str, dict],
           figure: pathlib.Path) -> None:
    """Grid power (log), texture / HR, NIQE and PSNR-Y against updates, one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("grid", "4-px grid power (grey levels$^2$)", True),
              ("texture", "texture / HR", False), ("niqe", "NIQE (lower: more natural)", False),
              ("psnr", "PSNR-Y (dB)", False))
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    start = references["start"]
    for ax, (key, label, log) in zip(axes, panels, strict=True):
        for arm, rows in results.items():  # an arm with a start of its own measured it as 0
            steps = sorted({0, *(s for s in rows if s % 100 == 0)})
            values = [rows[s][key] if s in rows else start[key] for s in steps]
            ax.plot(steps, values, marker=".", label=arm)
        if key in references["HR"]:
            ax.axhline(references["HR"][key], color="k", linestyle="--", linewidth=1, label="HR")
        ax.set_xlabel("GAN updates")
        ax.set_title(label)
        if log:
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figure, dpi=90)


def strips(results: dict[str, dict[int, dict]], root: pathlib.Path, crop: str,
           figure: pathlib.Path) -> None:
    """One row per arm: start | 250 | 500 | 1,000 updates | HR of one crop, zoomed 2x."""
    gap = 4
    columns = ["start", *TABLE_STEPS, "HR"]
    panel = CROP_SIZE * ZOOM
    rows = [arm for arm, r in results.items() if all(s in r for s in TABLE_STEPS)]
    canvas = np.full((len(rows) * (panel + gap) - gap, len(columns) * (panel + gap) - gap, 3),
                     255, np.uint8)
    for i, arm in enumerate(rows):
        for j, column in enumerate(columns):
            own_start = root / arm / "crops" / "0"  # an arm with a start of its own
            folder = {"start": own_start if own_start.is_dir() else root / "start_crops",
                      "HR": root / "hr_crops"}.get(column, root / arm / "crops" / str(column))
            pixels = image_io.read_image(folder / f"{crop}.png").pixels
            pixels = np.repeat(pixels[..., None], 3, -1) if pixels.ndim == 2 else pixels[..., :3]
            canvas[i * (panel + gap):i * (panel + gap) + panel,
                   j * (panel + gap):j * (panel + gap) + panel] = pixels.repeat(ZOOM, 0).repeat(
                       ZOOM, 1)
    image_io.write_image(figure, canvas)
    print(f"{figure}: rows {', '.join(rows)}; columns {' | '.join(map(str, columns))}",
          file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("train", "measure", "report"))
    parser.add_argument("arms", nargs="*", help=f"arms (default: all): {', '.join(ARMS)}")
    parser.add_argument("--root", type=pathlib.Path, default=DEFAULT_ROOT)
    parser.add_argument("--data", type=pathlib.Path, default=DATA)
    parser.add_argument("--steps", type=int, default=1000, help="GAN updates per arm (train)")
    parser.add_argument("--figure", type=pathlib.Path, help="curves PNG (report)")
    parser.add_argument("--strips", type=pathlib.Path,
                        help="strip PNG prefix (report): <prefix>_<crop>.png per crop")
    args = parser.parse_args(argv)
    arms = args.arms or list(ARMS)
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        parser.error(f"unknown arms {unknown}; known: {', '.join(ARMS)}")
    if args.command == "train":
        if len(arms) != 1:
            parser.error("train takes exactly one arm")
        train(arms[0], args.root, args.steps, args.data)
    elif args.command == "measure":
        measure(arms, args.root, args.data)
    else:
        results = load_results(args.root, arms)
        references = json.loads((args.root / "references.json").read_text())
        print(table(results, references))
        if args.figure:
            curves(results, references, args.figure)
        if args.strips:
            for crop in STRIP_CROPS:
                strips(results, args.root, crop,
                       args.strips.with_name(f"{args.strips.name}_{crop}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
