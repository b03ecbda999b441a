"""`srgan-jax evaluate`: Y-channel PSNR/SSIM of bicubic, or of a model next to it, on HR folders.

    srgan-jax evaluate --bicubic benchmarks/Set5 benchmarks/Set14
    srgan-jax evaluate --model model.msgpack benchmarks/Set5 --json results.json
    srgan-jax evaluate --bicubic --niqe benchmarks/Set14   # NIQE of the output and of HR too

The numbers are those of the published protocol (`srgan_jax.evaluation.protocol`), measured as the
trainer's validation measures them (`ValidationSet`): for the same model and images, the same
values. The table goes to stdout; progress and errors go to stderr. An image that cannot be read
or evaluated is named and left out, the others are still measured, and the exit status is then 1.
Outputs (`--save-dir`, `--json`, `--markdown`) are checked before anything is computed: they never
replace an input or go into an input folder, and replace existing files (even ones another
command writes meanwhile: two runs racing for one `--json`) only with `--overwrite`; a pipe or
terminal (`--json /dev/stdout`) is written into. A folder that cannot be read in full stops the
run before anything is computed. `--json` is strict JSON: a value that is not finite (the PSNR of
an exact copy) is null.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from srgan_jax import cli, image_io
from srgan_jax.evaluation import protocol
from srgan_jax.evaluation.protocol import (  # gray_via_rgb: kept importable from here
    ImageError,
    ImageScore,
    Scores,
    UpscaleFn,
    bicubic_upscaler,
    gray_via_rgb,  # noqa: F401
)
from srgan_jax.evaluation.validation_set import list_dataset, load_image
from srgan_jax.output_paths import Inputs, output_problem, write_output
from srgan_jax.progress import Progress

COMMAND = "evaluate"


@dataclasses.dataclass
class DatasetResult:
    """One folder's scores per method ('bicubic', 'model'), its images that failed, and the NIQE
    of its HR images (when measured: the value a perfect upscaler would reach)."""

    dataset: str
    scores: dict[str, list[ImageScore]]
    failed: list[str]
    hr_niqe: list[float] | None = None

    def row(self, method: str, scale: int, border: int) -> dict[str, Any]:
        """The JSON row of one method (means are None when no image could be measured); with
        NIQE, `niqe` is the method's and `hr_niqe` the HR images' mean."""
        images = self.scores[method]
        mean = Scores.mean_of(images) if images else None
        row = {
            "dataset": self.dataset, "scale": scale, "border": border,
            "num_images": len(images),
            "psnr": mean.psnr if mean else None, "ssim": mean.ssim if mean else None,
        }
        if self.hr_niqe is not None:
            row["niqe"] = mean.niqe if mean else None
            row["hr_niqe"] = float(np.mean(self.hr_niqe)) if self.hr_niqe else None
        images_json = [dataclasses.asdict(s) for s in images]
        if self.hr_niqe is None:
            for image in images_json:
                del image["niqe"]
        return {**row, "images": images_json}


def evaluate_dataset(
    folder: str | pathlib.Path,
    paths: Sequence[pathlib.Path],
    methods: dict[str, UpscaleFn],
    scale: int,
    border: int,
    *,
    save: dict[pathlib.Path, pathlib.Path] | None = None,
    progress: Progress | None = None,
    with_niqe: bool = False,
    overwrite: bool = False,
) -> DatasetResult:
    """Scores every method (an upscaler, see `protocol.UpscaleFn`) on the image files `paths` of
    `folder`, one image at a time; writes `save[path]` as it goes. `with_niqe` adds the NIQE of
    every SR image and of each HR image.

    `save` maps an image file to the file its SR image (the last method's) is written to, over an
    existing file only with `overwrite`. An image that fails (unreadable, too small, a model error,
    its SR image not written) is reported and left out of every method.
    """
    result = DatasetResult(pathlib.Path(folder).resolve().name, {m: [] for m in methods}, [],
                           [] if with_niqe else None)
    saved_method = next(reversed(methods))
    for path in paths:
        try:
            image = load_image(path, pathlib.Path(folder), scale)
            hr_niqe = protocol.naturalness(image, image.hr, border) if with_niqe else None
            sr_images = {name: protocol.super_resolve(image, upscale)
                         for name, upscale in methods.items()}
            scores = {name: protocol.score(image, sr, border, with_niqe)
                      for name, sr in sr_images.items()}
            if save:
                _write_sr(save[path], sr_images[saved_method], overwrite)
        except ImageError as error:
            result.failed.append(str(error))
            if progress is not None:
                progress.message(cli.error_line(COMMAND, str(error)))
        else:
            for name, score in scores.items():
                result.scores[name].append(score)
            if with_niqe:
                result.hr_niqe.append(hr_niqe)
        if progress is not None:
            progress.advance()
    return result


def evaluate_folder(
    folder: str | pathlib.Path, upscale: UpscaleFn, scale: int = 4, border: int | None = None,
    with_niqe: bool = False,
) -> dict[str, Any]:
    """Mean and per-image PSNR/SSIM (and NIQE, with HR's, if `with_niqe`) of `upscale` (e.g.
    `bicubic_upscaler(4)`, or a model) on the image files of `folder`, as `srgan-jax evaluate`
    prints them; raises on the first image that fails. Returns {'dataset', 'scale', 'border',
    'num_images', 'psnr', 'ssim', ['niqe', 'hr_niqe',] 'images'}.
    """
    border = scale if border is None else border
    result = evaluate_dataset(folder, list_dataset(folder), {"sr": upscale}, scale, border,
                              with_niqe=with_niqe)
    if result.failed:
        raise ImageError(result.failed[0])
    return result.row("sr", scale, border)


def _write_sr(target: pathlib.Path, sr: np.ndarray, overwrite: bool) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        image_io.write_image(target, sr, overwrite=overwrite)
    except OSError as error:  # its message names the file
        raise ImageError(f"cannot write the SR image: {error}") from error


def markdown_table(results: dict[str, list[dict[str, Any]]]) -> str:
    """One row per dataset, a PSNR and an SSIM column per method ('bicubic', 'model', ...), and
    with NIQE a NIQE column per method and one for the HR images."""
    methods = list(results)
    with_niqe = "hr_niqe" in next(iter(results.values()))[0]
    metrics = ("PSNR", "SSIM", "NIQE") if with_niqe else ("PSNR", "SSIM")
    header = ["dataset", "images"] + [f"{m} {k}" for m in methods for k in metrics]
    header += ["HR NIQE"] if with_niqe else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rows in zip(*results.values(), strict=True):
        cells = [rows[0]["dataset"], str(rows[0]["num_images"])]
        for r in rows:
            measured = r["num_images"] > 0
            cells += [f"{r['psnr']:.2f}", f"{r['ssim']:.4f}"] if measured else ["-", "-"]
            cells += ([f"{r['niqe']:.3f}" if measured else "-"] if with_niqe else [])
        if with_niqe:
            cells.append(f"{rows[0]['hr_niqe']:.3f}" if rows[0]["num_images"] else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _count(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"srgan-jax {COMMAND}",
        description="Y-channel PSNR/SSIM (border = scale) on folders of HR images, with MATLAB "
        "bicubic degradation; a model is shown next to the bicubic baseline.",
    )
    parser.add_argument("datasets", nargs="+", metavar="DATASET_DIR",
                        help="folders of HR images (searched recursively)")
    method = parser.add_mutually_exclusive_group(required=True)
    method.add_argument("--bicubic", action="store_true", help="evaluate the bicubic baseline")
    method.add_argument("--model", metavar="FILE", help="exported model file")
    method.add_argument("--workdir", metavar="DIR", help="training workdir (latest checkpoint)")
    parser.add_argument("--scale", type=lambda t: _count(t, 1),
                        help="upscaling factor (default: the model's, or 4 for bicubic)")
    parser.add_argument("--border", type=lambda t: _count(t, 0),
                        help="pixels cropped at each side (default: scale)")
    parser.add_argument("--niqe", action="store_true",
                        help="also NIQE (no-reference naturalness, lower is better) of the SR "
                        "images and of the HR images; images need 96x96 pixels after the border")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    parser.add_argument("--save-dir", metavar="DIR",
                        help="write SR images (the model's if any) to DIR/<dataset>/ as PNG")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing output files (never inputs)")
    return parser


def _load_model(path: str, dtype: str, scale: int | None) -> Any:
    """The model at `path` (an `Upscaler`), checked against `--scale`."""
    from srgan_jax.upscaling.inference import load_generator  # bicubic needs no model stack

    model = load_generator(path, dtype=dtype)
    if scale is not None and scale != model.scale:
        raise cli.UserError(f"{path}: the model upscales x{model.scale}, not --scale {scale}")
    return model


def plan_outputs(
    args: argparse.Namespace, datasets: dict[str, list[pathlib.Path]], model_path: str | None
) -> dict[str, dict[pathlib.Path, pathlib.Path]]:
    """Where each dataset's SR images go (`--save-dir`), after checking every output path.

    Raises `UserError` before anything is computed if an output would replace an input, go into
    an input folder, or replace an existing file without `--overwrite`.
    """
    inputs = Inputs.of([*datasets, *([model_path] if model_path is not None else [])])
    taken: set[pathlib.Path] = set()
    problems = [output_problem(path, inputs, taken, overwrite=args.overwrite)
                for path in (args.json, args.markdown) if path]
    save: dict[str, dict[pathlib.Path, pathlib.Path]] = {folder: {} for folder in datasets}
    if args.save_dir:
        for folder, paths in datasets.items():
            out = pathlib.Path(args.save_dir) / pathlib.Path(folder).resolve().name
            for path in paths:
                target = out / path.relative_to(folder).with_suffix(".png")
                problems.append(output_problem(target, inputs, taken, overwrite=args.overwrite))
                save[folder][path] = target
    problems = [p for p in problems if p]
    if problems:
        more = f" (and {len(problems) - 1} more outputs)" if len(problems) > 1 else ""
        raise cli.UserError(f"{problems[0]}{more}; nothing was computed")
    return save


def run(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    model_path = None if args.bicubic else next(
        path for path in (args.model, args.workdir) if path is not None)
    datasets = {folder: list_dataset(folder) for folder in args.datasets}
    save = plan_outputs(args, datasets, model_path)
    model = None if model_path is None else _load_model(model_path, args.dtype, args.scale)
    scale = model.scale if model is not None else args.scale or 4
    border = scale if args.border is None else args.border

    methods: dict[str, UpscaleFn] = {"bicubic": bicubic_upscaler(scale)}
    if model is not None:
        methods["model"] = model
    total = sum(len(paths) for paths in datasets.values())
    with Progress(total, f"srgan-jax {COMMAND}", unit="images",
                  log_every=max(1, total // 20)) as progress:
        outcomes = [evaluate_dataset(folder, paths, methods, scale, border,
                                     save=save[folder], progress=progress,
                                     with_niqe=args.niqe, overwrite=args.overwrite)
                    for folder, paths in datasets.items()]

    results = {m: [o.row(m, scale, border) for o in outcomes] for m in methods}
    table = markdown_table(results)
    niqe_note = ", NIQE (lower is more natural)" if args.niqe else ""
    print(f"x{scale}, Y-channel PSNR (dB) / SSIM{niqe_note}, border {border}\n{table}")
    failed = [error for o in outcomes for error in o.failed]
    report = {"scale": scale, "border": border, "model": model_path, "results": results,
              "failed": failed}
    problems = []
    for path, text in ((args.markdown, table + "\n"),
                       (args.json, json.dumps(finite_or_none(report), indent=2,
                                              allow_nan=False) + "\n")):
        try:
            if path:
                write_output(path, text.encode(), overwrite=args.overwrite)
        except OSError as error:  # it appeared meanwhile, or the disk is full: its message says
            problems.append(cli.one_line(error))
    if failed:
        problems.append(f"{len(failed)} of {total} images failed (named above); they are left "
                        "out of the table")
    for problem in problems:
        print(cli.error_line(COMMAND, problem), file=sys.stderr)
    return cli.EXIT_FAILED if problems else cli.EXIT_OK


def finite_or_none(value: Any) -> Any:
    """`value` (JSON-like) with every float that is not finite as None: strict JSON has no
    Infinity or NaN, and the PSNR of an exact copy is infinite."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_command(COMMAND, run, sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
