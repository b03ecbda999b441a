"""A model card's numbers and picture: PSNR/SSIM, NIQE, texture and grid energy, side-by-side crops.

For each benchmark folder, every method (MATLAB bicubic and each `--model`) upscales each image's
LR (MATLAB bicubic x4 of the HR image) as `srgan-jax evaluate` does; the table gives its mean
Y-channel PSNR/SSIM (4-pixel border), its mean NIQE (`srgan-jax evaluate --niqe`: no reference,
lower is more natural; HR's own is what a perfect upscaler reaches) and its mean texture energy
(`srgan_jax.evaluation.texture`): high-frequency energy above the LR Nyquist limit relative to
HR's (HR = 1.00; a 4-pixel-periodic grid removed first) and, apart, the power of the exactly
4-pixel-periodic component in grey levels^2 (a sub-pixel checkerboard; HR's own is the floor).

The picture: for each `--crop SET/IMAGE:Y,X` one row of the same HR region from every method and
the HR image (bicubic | models... | HR), each panel enlarged 2x by pixel repetition, so that the
picture shows what a 2x zoom shows.

    python experiments/model_card.py --model SRResNet=srresnet_mse_x4 --model SRGAN=srgan_mse_x4 \\
        --crop Set14/comic.png:40,60 --crop BSD100/8023.png:100,200 \\
        --picture experiments/figures/srgan_comparison.png --json /tmp/card.json

With `--update_registry` the PSNR, SSIM and NIQE of every `--model` that names a shipped model, and
bicubic's and HR's, are written into its metadata (`srgan_jax/weights/<name>.json`), which
`srgan-jax models` shows.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from srgan_jax import image_io
from srgan_jax.evaluation import protocol, texture
from srgan_jax.evaluation.validation_set import list_dataset, load_image
from srgan_jax.upscaling import registry
from srgan_jax.upscaling.inference import Upscaler

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "benchmarks"
ZOOM = 2
GAP = 4  # white pixels between panels (after the zoom)


def parse_crop(text: str) -> tuple[str, int, int]:
    """'Set14/comic.png:40,60' -> ('Set14/comic.png', 40, 60): top-left corner in HR pixels."""
    try:
        image, corner = text.rsplit(":", 1)
        y, x = (int(v) for v in corner.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--crop {text!r}: expected SET/IMAGE:Y,X") from None
    return image, y, x


def measure_set(folder: pathlib.Path, methods: dict[str, protocol.UpscaleFn], scale: int,
                keep: set[str]) -> tuple[dict[str, dict[str, float]], dict[str, dict]]:
    """Mean PSNR, SSIM, texture and grid energy per method on `folder`; the uint8 SR images of
    the image names in `keep` (with their HR) for the picture."""
    sums: dict[str, dict[str, list[float]]] = {m: {} for m in [*methods, "HR"]}
    kept: dict[str, dict] = {}
    for path in list_dataset(folder):
        image = load_image(path, folder, scale)
        outputs = {"HR": image.hr}
        hr_energy = texture.texture_energy(image.hr, image.hr, scale)
        for key, value in (("niqe", protocol.naturalness(image, image.hr)),
                           ("texture", hr_energy.high_frequency), ("grid", hr_energy.grid)):
            sums["HR"].setdefault(key, []).append(value)
        for name, upscale in methods.items():
            sr = protocol.super_resolve(image, upscale)
            score = protocol.score(image, sr, with_niqe=True)
            energy = texture.texture_energy(sr, image.hr, scale)
            for key, value in (("psnr", score.psnr), ("ssim", score.ssim), ("niqe", score.niqe),
                               ("texture", energy.high_frequency), ("grid", energy.grid)):
                sums[name].setdefault(key, []).append(value)
            outputs[name] = sr
        if image.name in keep:
            kept[image.name] = outputs
    means = {m: {k: float(np.mean(v)) for k, v in values.items()} for m, values in sums.items()}
    for m in means:
        means[m]["images"] = len(sums[m]["grid"])
    return means, kept


def rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image


def comparison_picture(rows: list[list[np.ndarray]]) -> np.ndarray:
    """Rows of equally sized uint8 panels, each zoomed `ZOOM`x, with white gaps between them."""
    zoomed = [[rgb(p).repeat(ZOOM, 0).repeat(ZOOM, 1) for p in row] for row in rows]
    h, w = zoomed[0][0].shape[:2]
    columns = len(zoomed[0])
    canvas = np.full((len(rows) * (h + GAP) - GAP, columns * (w + GAP) - GAP, 3), 255, np.uint8)
    for i, row in enumerate(zoomed):
        for j, panel in enumerate(row):
            canvas[i * (h + GAP):i * (h + GAP) + h, j * (w + GAP):j * (w + GAP) + w] = panel
    return canvas


def markdown(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = ["| dataset | method | PSNR (dB) | SSIM | NIQE | texture / HR | 4-px grid power |",
             "|---|---|---|---|---|---|---|"]
    for dataset, methods in results.items():
        for method, r in methods.items():
            quality = ("- | -" if method == "HR" else f"{r['psnr']:.2f} | {r['ssim']:.4f}")
            lines.append(f"| {dataset} ({r['images']}) | {method} | {quality} | {r['niqe']:.2f} | "
                         f"{r['texture']:.3f} | {r['grid']:.3f} |")
    return "\n".join(lines)


def update_registry(results: dict[str, dict[str, dict[str, float]]],
                    shipped: dict[str, str]) -> list[pathlib.Path]:
    """Writes each shipped model's PSNR/SSIM/NIQE per set, and bicubic's and HR's, into its
    metadata file; `shipped` maps a method label to the shipped model's name."""
    rounding = {"psnr": 2, "ssim": 4, "niqe": 2}

    def per_set(method: str, keys: tuple[str, ...]) -> dict[str, dict[str, float]]:
        return {key: {dataset: round(methods[method][key], rounding[key])
                      for dataset, methods in results.items()} for key in keys}

    written = []
    for label, name in shipped.items():
        path = registry.WEIGHTS_DIR / f"{name}.json"
        entry = json.loads(path.read_text())
        entry.update(per_set(label, ("psnr", "ssim", "niqe")))
        entry["baselines"] = {"bicubic": per_set("bicubic", ("psnr", "ssim", "niqe")),
                              "HR": per_set("HR", ("niqe",))}
        path.write_text(json.dumps(entry, indent=2) + "\n")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", default=[], metavar="LABEL=MODEL",
                   help="a model file, workdir or shipped name, with its label (repeatable)")
    p.add_argument("--data_dir", type=pathlib.Path, default=DEFAULT_DATA,
                   help="folder holding the benchmark sets")
    p.add_argument("--sets", default="Set5,Set14,BSD100")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--crop", type=parse_crop, action="append", default=[],
                   help="SET/IMAGE:Y,X, the top-left HR pixel of one picture row (repeatable)")
    p.add_argument("--crop_size", type=int, default=96, help="HR side of each panel")
    p.add_argument("--picture", type=pathlib.Path, help="where the comparison PNG goes")
    p.add_argument("--json", type=pathlib.Path, help="where the table goes as JSON")
    p.add_argument("--update_registry", action="store_true",
                   help="write the numbers into the metadata of the shipped models measured")
    args = p.parse_args(argv)

    methods: dict[str, protocol.UpscaleFn] = {"bicubic": protocol.bicubic_upscaler(args.scale)}
    for spec in args.model:
        label, _, source = spec.partition("=")
        if not source:
            p.error(f"--model {spec!r}: expected LABEL=MODEL")
        methods[label] = Upscaler.from_path(source)
    sets = args.sets.split(",")
    for image, _, _ in args.crop:
        if image.split("/", 1)[0] not in sets:
            p.error(f"--crop {image}: not an image of --sets {args.sets}")
    results: dict[str, Any] = {}
    crops: dict[str, dict] = {}
    for name in sets:
        keep = {c[0].split("/", 1)[1] for c in args.crop if c[0].split("/", 1)[0] == name}
        results[name], kept = measure_set(args.data_dir / name, methods, args.scale, keep)
        crops.update({f"{name}/{image}": outputs for image, outputs in kept.items()})
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.update_registry:
        shipped = {label: source for label, _, source in (m.partition("=") for m in args.model)
                   if source in registry.shipped_models()}
        for path in update_registry(results, shipped):
            print(f"updated {path}", file=sys.stderr)
    if args.picture and args.crop:
        rows = []
        for image, y, x in args.crop:
            if image not in crops:
                p.error(f"--crop {image}: not an image of --sets {args.sets}")
            outputs = crops[image]
            rows.append([outputs[m][y:y + args.crop_size, x:x + args.crop_size]
                         for m in [*methods, "HR"]])
            if rows[-1][0].shape[:2] != (args.crop_size, args.crop_size):
                p.error(f"--crop {image}:{y},{x} leaves the image ({outputs['HR'].shape})")
        image_io.write_image(args.picture, comparison_picture(rows))
        print(f"picture: {args.picture} (columns: {' | '.join([*methods, 'HR'])})",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
