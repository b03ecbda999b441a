"""`srgan-jax upscale`: upscale image files, folders (recursively) and globs with a trained model.

    srgan-jax upscale INPUT... -o OUT [--model FILE | --workdir DIR] [--tile N] [--tile-overlap P]
        [--dtype float32|bfloat16] [--ext auto|png|jpg|webp|tiff] [--suffix _x4]
        [--alpha bicubic|model] [--overwrite]

Without --model or --workdir the model shipped with the package is used (an SRResNet-MSE x4
generator, `srgan_jax/weights/MODEL_CARD.md`). Outputs keep their names (plus the suffix) and, below
a folder or glob input, their folder structure. Inputs are never overwritten; existing outputs only
with --overwrite. A file that cannot be read or written gets an error line naming it, the others are
still processed, and the exit status is 1 with a summary at the end. Consecutive images of the same
size go through the model as one batch. Bit depth (8/16), gray, alpha and the ICC profile are kept
where the output format allows; EXIF orientation is applied.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import pathlib
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TextIO

import numpy as np

from srgan_jax import image_io
from srgan_jax.upscaling.inference import Samples, Upscaler, shipped_model_path, upscale_float

# Extensions that folder inputs contribute and that --ext auto keeps (the writable ones).
IMAGE_SUFFIXES = frozenset(image_io.FILE_FORMATS)
EXTENSIONS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tiff"}
# Same-size images per model call (the Upscaler splits further by its device memory budget);
# the pixel cap bounds the host memory of a batch (float32 SR images are 48 bytes per LR pixel).
MAX_BATCH = 8
MAX_BATCH_PIXELS = 1 << 22


@dataclasses.dataclass(frozen=True)
class Job:
    """One input file and the output file it becomes."""

    source: pathlib.Path
    target: pathlib.Path


def _is_glob(pattern: str) -> bool:
    return glob.has_magic(pattern) and not os.path.exists(pattern)


def _glob_base(pattern: str) -> pathlib.Path:
    """The folder a glob's matches are relative to: its leading components without wildcards."""
    parts = pathlib.PurePath(pattern).parts
    fixed = parts[: next(i for i, p in enumerate(parts) if glob.has_magic(p))]
    return pathlib.Path(*fixed) if fixed else pathlib.Path(".")


def expand_inputs(
    inputs: Sequence[str],
) -> tuple[list[tuple[pathlib.Path, pathlib.Path]], list[str]]:
    """(file, path relative to its output folder) for each input file, and error lines.

    Folders contribute their image files (by extension, recursively) with their sub-folders; globs
    their matching files relative to the glob's fixed prefix; files themselves, by name only.
    """
    found, errors = [], []
    for item in inputs:
        if _is_glob(item):
            base = _glob_base(item)
            matches = sorted(pathlib.Path(p) for p in glob.glob(item, recursive=True))
            files = [p for p in matches if p.is_file()]
            if not files:
                errors.append(f"{item}: no files match")
            found += [(p, p.relative_to(base)) for p in files]
        elif os.path.isdir(item):
            root = pathlib.Path(item)
            files = sorted(p for p in root.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                errors.append(f"{item}: no image files in this folder")
            found += [(p, p.relative_to(root)) for p in files]
        elif os.path.isfile(item):
            found.append((pathlib.Path(item), pathlib.Path(pathlib.Path(item).name)))
        else:
            errors.append(f"{item}: no such file or folder")
    return found, errors


def output_extension(source: pathlib.Path, ext: str) -> str:
    """The output suffix: `ext`'s, or for 'auto' the input's if writable, else '.png'."""
    if ext != "auto":
        return EXTENSIONS[ext]
    return source.suffix if source.suffix.lower() in IMAGE_SUFFIXES else ".png"


def plan_jobs(
    inputs: Sequence[str], output: str, *, suffix: str, ext: str, overwrite: bool
) -> tuple[list[Job], list[str]]:
    """The files to upscale and where each goes, and error lines for those that must not be.

    `output` is a folder, or, for a single input file, a file name with an image extension. An
    output never replaces an input (even with `overwrite`), another output, or an existing file
    unless `overwrite`.
    """
    found, errors = expand_inputs(inputs)
    out = pathlib.Path(output)
    single_file = (len(inputs) == 1 and len(found) == 1 and os.path.isfile(inputs[0])
                   and out.suffix.lower() in IMAGE_SUFFIXES)
    sources = {p.resolve() for p, _ in found}
    jobs, targets = [], set()
    for source, relative in found:
        if single_file:
            target = out
        else:
            name = relative.stem + suffix + output_extension(source, ext)
            target = out / relative.parent / name
        resolved = target.resolve()
        if resolved in sources:
            errors.append(f"{source}: output {target} would overwrite an input; "
                          "choose another -o or --suffix")
        elif resolved in targets:
            errors.append(f"{source}: output {target} is also the output of another input")
        elif target.exists() and not overwrite:
            errors.append(f"{source}: output {target} exists (pass --overwrite to replace it)")
        else:
            targets.add(resolved)
            jobs.append(Job(source, target))
    return jobs, errors


class Progress:
    """A one-line progress bar with images/s on a terminal; silent otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30):
        stream = sys.stderr if stream is None else stream
        self.total, self.stream, self.width = total, stream, width
        self.done = 0
        self.start = time.perf_counter()
        self.live = stream.isatty()

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.live:
            filled = self.width * self.done // max(self.total, 1)
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total} images, {rate:.2f} images/s")
            self.stream.flush()

    def message(self, line: str) -> None:
        """Prints `line` on its own line, above the bar."""
        self.stream.write(("\r\x1b[K" if self.live else "") + line + "\n")
        self.advance(0)

    def close(self) -> float:
        if self.live:
            self.stream.write("\n")
        return time.perf_counter() - self.start


def _batches(jobs: list[Job], progress: Progress) -> Iterator[list[tuple[Job, image_io.ImageData]]]:
    """Runs of consecutive readable images with the same shape and sample type, of at most
    MAX_BATCH images and MAX_BATCH_PIXELS pixels (large images go one by one)."""
    batch: list[tuple[Job, image_io.ImageData]] = []
    for job in jobs:
        try:
            data = image_io.read_image(job.source)
        except image_io.ImageReadError as error:
            progress.message(f"error: {error}")
            progress.advance()
            continue
        if batch and not _fits(batch, data):
            yield batch
            batch = []
        batch.append((job, data))
    if batch:
        yield batch


def _fits(batch: list[tuple[Job, image_io.ImageData]], data: image_io.ImageData) -> bool:
    first = batch[0][1].pixels
    same_kind = (first.shape, first.dtype) == (data.pixels.shape, data.pixels.dtype)
    pixels = (len(batch) + 1) * first.shape[0] * first.shape[1]
    return same_kind and len(batch) < MAX_BATCH and pixels <= MAX_BATCH_PIXELS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srgan-jax upscale",
        description="Upscale image files, folders (recursively) and globs with a trained model.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, globs")
    parser.add_argument("-o", "--output", required=True,
                        help="output folder (or file name, for a single input file)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="model file written by `srgan-jax export` "
                        "(default: the shipped model)")
    source.add_argument("--workdir", help="training workdir (its latest checkpoint)")
    parser.add_argument("--tile", type=int, help="LR tile side (default: from the memory budget)")
    parser.add_argument("--tile-overlap", type=int,
                        help="LR context pixels around each tile (default: the receptive field "
                             "radius, which makes tiling exact)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--ext", choices=("auto", *EXTENSIONS), default="auto",
                        help="output format (auto: the input's, PNG for other formats)")
    parser.add_argument("--suffix", help="added to output names (default: _x<scale>)")
    parser.add_argument("--alpha", choices=("bicubic", "model"), default="bicubic",
                        help="how an alpha channel is upscaled")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        path = args.model or args.workdir or shipped_model_path()
        upscaler = Upscaler.from_path(path, dtype=args.dtype)
    except (OSError, ValueError) as error:
        hint = "" if args.model or args.workdir else " (--model FILE or --workdir DIR)"
        print(f"srgan-jax upscale: {error}{hint}", file=sys.stderr)
        return 1
    overlap = upscaler.receptive_field if args.tile_overlap is None else args.tile_overlap
    if overlap < 0:
        parser.error("--tile-overlap must be >= 0")
    if args.tile is not None and args.tile <= 2 * overlap:
        parser.error(f"--tile {args.tile} must be larger than twice the tile overlap ({overlap})")
    suffix = f"_x{upscaler.scale}" if args.suffix is None else args.suffix
    jobs, errors = plan_jobs(args.inputs, args.output, suffix=suffix, ext=args.ext,
                             overwrite=args.overwrite)
    progress = Progress(len(jobs))
    for line in errors:
        progress.message(f"error: {line}")
    written = 0
    for batch in _batches(jobs, progress):
        written += _upscale_batch(upscaler, batch, args, progress)
    seconds = progress.close()
    failed = len(jobs) + len(errors) - written
    print(f"srgan-jax upscale: {written} image(s) written to {args.output} in {seconds:.1f} s"
          + (f", {failed} failed (see the error lines above)" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def _upscale_batch(
    upscaler: Upscaler, batch: list[tuple[Job, image_io.ImageData]], args: argparse.Namespace,
    progress: Progress,
) -> int:
    """Upscales and writes one batch of same-size images; returns how many were written."""
    pixels = np.stack([data.pixels for _, data in batch])
    samples = Samples(pixels.dtype)
    images = samples.to_float(pixels)
    images = images if images.ndim == 4 else images[..., None]
    sr = upscale_float(upscaler, images, alpha=args.alpha, tile=args.tile,
                       tile_overlap=args.tile_overlap)
    written = 0
    for (job, data), result in zip(batch, sr, strict=True):
        out = samples.from_float(result if data.pixels.ndim == 3 else result[..., 0])
        try:
            job.target.parent.mkdir(parents=True, exist_ok=True)
            image_io.write_image(job.target, image_io.ImageData(out, data.icc_profile))
            written += 1
        except (OSError, ValueError) as error:
            progress.message(f"error: {job.source}: cannot write {job.target}: {error}")
        progress.advance()
    return written


if __name__ == "__main__":
    sys.exit(main())
