"""`srgan-jax upscale`: upscale image files, folders (recursively) and globs with a trained model.

The flags follow Real-ESRGAN's `inference_realesrgan.py` where they mean the same (-i, -o, -n, -s,
-t, --tile_pad, --fp32, --ext, --suffix); `srgan-jax upscale --help` lists them with examples.
Without --model the default shipped model is used (`srgan-jax models` lists the shipped ones).

Outputs keep their names (plus the suffix) and, below a folder or glob input, their folder
structure; for a single input file, `-o` may name the output file itself. No output is ever
written over an input or outside `-o`; existing outputs are replaced only with --overwrite, and
files appear atomically. A file that cannot be read, upscaled or written gets an error line naming
it, the others are still processed, and the exit status is 1 with a summary at the end (130 on
Ctrl-C, with the count of images already written). Consecutive images of the same size go through
the model as one batch. Bit depth (8/16), gray, alpha and the ICC profile are kept where the output
format allows; EXIF orientation is applied; animated (multi-frame) images are refused.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import os
import pathlib
import sys
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from srgan_jax import cli, image_io
from srgan_jax.progress import Progress
from srgan_jax.upscaling import registry
from srgan_jax.upscaling.inference import DTYPES, Upscaler
from srgan_jax.upscaling.pixels import ALPHA_MODES, upscale_pixels
from srgan_jax.upscaling.tiling import check_tile

EXTENSIONS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tiff"}
# Same-size images per model call (the Upscaler splits further by its device memory budget);
# the pixel cap bounds the host memory of a batch (float32 SR images are 48 bytes per LR pixel).
MAX_BATCH = 8
MAX_BATCH_PIXELS = 1 << 22
DEFAULT_OUTPUT = "results"  # Real-ESRGAN's default output folder

EXAMPLES = """\
examples:
  srgan-jax upscale photo.jpg                        # -> results/photo_x4.jpg, shipped model
  srgan-jax upscale -i photo.jpg -o big.png          # a single input may name its output file
  srgan-jax upscale -i holiday/ -i 'scans/*.tif' -o upscaled/ --suffix _sr
  srgan-jax upscale photo.jpg -s 2                   # x2 output: x4 model, then MATLAB bicubic
  srgan-jax upscale photo.jpg --model mine.msgpack   # or a training workdir, or a shipped name
  srgan-jax upscale huge.png -t 256 --half           # 256-pixel tiles, bfloat16 compute

Real-ESRGAN users: -i, -o, -n, -s, -t, --tile_pad, --fp32, --ext and --suffix work as there,
except that the suffix is appended as given (default _x<scale>), -t 0 means automatic tiling
from the memory budget (tiles are exact, not blended), and the default precision is float32.
"""


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

    Folders contribute their image files (`image_io.list_images`) with their sub-folders; globs
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
            files = image_io.list_images(item)
            if not files:
                errors.append(f"{item}: no image files in this folder")
            found += [(p, p.relative_to(item)) for p in files]
        elif os.path.isfile(item):
            found.append((pathlib.Path(item), pathlib.Path(pathlib.Path(item).name)))
        else:
            errors.append(f"{item}: no such file or folder")
    return found, errors


def output_extension(source: pathlib.Path, ext: str) -> str:
    """The output suffix: `ext`'s, or for 'auto' the input's if writable, else '.png'."""
    if ext != "auto":
        return EXTENSIONS[ext]
    return source.suffix if image_io.is_image_file(source) else ".png"


def names_a_file(output: pathlib.Path) -> bool:
    """Whether `-o output` names an image file rather than a folder: it is not an existing
    folder, and its extension is one Pillow knows for images (writable or not)."""
    return not output.is_dir() and output.suffix.lower() in Image.registered_extensions()


def plan_jobs(
    inputs: Sequence[str], output: str, *, suffix: str, ext: str, overwrite: bool
) -> tuple[list[Job], list[str]]:
    """The files to upscale and where each goes, and error lines for those that must not be.

    `output` is a folder, or, for a single input file, the output file's name (then `ext` and
    `suffix` do not apply). An output never replaces an input (even with `overwrite`), another
    output, or an existing file unless `overwrite`, and never lands outside `output` (through a
    symbolic link inside it, say). Raises `cli.UserError` for an output file name whose format
    cannot be written.
    """
    found, errors = expand_inputs(inputs)
    out = pathlib.Path(output)
    single_file = len(inputs) == 1 and len(found) == 1 and os.path.isfile(inputs[0])
    if single_file and names_a_file(out):
        if not image_io.is_image_file(out):
            raise cli.UserError(
                f"{out}: cannot write {out.suffix} files; name the output "
                f"{' / '.join(sorted(image_io.IMAGE_EXTENSIONS))}, or give a folder"
            )
        planned = [(found[0][0], out)]
    else:
        single_file = False
        planned = [(source, out / relative.parent / (relative.stem + suffix
                                                     + output_extension(source, ext)))
                   for source, relative in found]
    root = out.resolve() if not single_file else out.parent.resolve()
    sources = {p.resolve() for p, _ in found}
    jobs, targets = [], set()
    for source, target in planned:
        resolved = target.resolve()
        if not resolved.is_relative_to(root):
            errors.append(f"{source}: output {target} would be written outside {root} "
                          "(through a symbolic link?)")
        elif resolved in sources:
            errors.append(f"{source}: output {target} would overwrite an input; "
                          "choose another -o or --suffix")
        elif resolved in targets:
            errors.append(f"{source}: output {target} is also the output of another input")
        elif resolved.is_dir():
            errors.append(f"{source}: output {target} is an existing folder")
        elif target.exists() and not overwrite:
            errors.append(f"{source}: output {target} exists (pass --overwrite to replace it)")
        else:
            targets.add(resolved)
            jobs.append(Job(source, target))
    return jobs, errors


def frame_count(path: pathlib.Path) -> int:
    """Frames (or pages) in an image file: more than one for animations and multi-page TIFFs."""
    try:
        with Image.open(path) as image:
            return int(getattr(image, "n_frames", 1))
    except (OSError, ValueError, SyntaxError, EOFError):
        return 1  # `image_io.read_image` reports what is wrong with it


def read_input(path: pathlib.Path) -> image_io.ImageData:
    """The image at `path` (`image_io.read_image`), refusing animated and multi-page files."""
    frames = frame_count(path)
    if frames > 1:
        raise image_io.ImageReadError(
            f"{path}: animated or multi-page image ({frames} frames); srgan-jax upscales single "
            "images: extract the frames first (e.g. ffmpeg -i in.gif frame%04d.png)"
        )
    return image_io.read_image(path)


def _batches(jobs: list[Job], failed: Callable[[str], None]
             ) -> Iterator[list[tuple[Job, image_io.ImageData]]]:
    """Runs of consecutive readable images with the same shape and pixel type, of at most
    MAX_BATCH images and MAX_BATCH_PIXELS pixels (large images go one by one). Unreadable files
    are reported with `failed(line)` and left out."""
    batch: list[tuple[Job, image_io.ImageData]] = []
    for job in jobs:
        try:
            data = read_input(job.source)
        except image_io.ImageReadError as error:
            failed(str(error))
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
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    files = parser.add_argument_group("input and output")
    files.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders, globs")
    files.add_argument("-i", "--input", action="append", default=[], metavar="INPUT",
                       dest="more_inputs", help="an input, as the positional ones (repeatable)")
    files.add_argument("-o", "--output", default=DEFAULT_OUTPUT,
                       help="output folder, or file name for a single input file "
                            f"(default: {DEFAULT_OUTPUT})")
    files.add_argument("--suffix",
                       help="appended to output names, as given (default: _x<scale>; '' for none)")
    files.add_argument("--ext", choices=("auto", *EXTENSIONS), default="auto",
                       help="output format (auto: the input's, PNG for other formats)")
    files.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    model = parser.add_argument_group("model")
    source = model.add_mutually_exclusive_group()
    source.add_argument("-n", "--model", "--model_name", dest="model", metavar="MODEL",
                        help="a shipped model's name (`srgan-jax models`), a model file written "
                             f"by `srgan-jax export`, or a workdir (default: "
                             f"{registry.DEFAULT_MODEL})")
    source.add_argument("--workdir", help="training workdir (its latest checkpoint)")

    size = parser.add_argument_group("size and tiling")
    size.add_argument("-s", "--outscale", type=float, metavar="SCALE",
                      help="final scale, any number > 0: the model's x4, then MATLAB bicubic to "
                           "this size (default: the model's scale)")
    size.add_argument("-t", "--tile", type=int, default=0,
                      help="LR tile side in pixels; 0: automatic, from the memory budget "
                           "(default). Capped to the budget.")
    size.add_argument("--tile_pad", "--tile-overlap", dest="tile_overlap", type=int,
                      metavar="PIXELS", help="LR context pixels around each tile (default: the "
                      "receptive field, which makes tiling exact)")
    size.add_argument("--alpha", choices=ALPHA_MODES, default="bicubic",
                      help="how an alpha channel is upscaled (default: bicubic)")

    precision = parser.add_argument_group("precision").add_mutually_exclusive_group()
    precision.add_argument("--dtype", choices=tuple(DTYPES), default="float32",
                           help="compute dtype (default: float32)")
    precision.add_argument("--fp32", action="store_const", const="float32", dest="dtype",
                           help="float32 compute (the default here)")
    precision.add_argument("--half", "--bf16", action="store_const", const="bfloat16",
                           dest="dtype", help="half precision: bfloat16 compute (faster on "
                                              "accelerators, about 1 level of 255 off)")
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parsed arguments, with usage errors (exit 2) for values no run could use."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.inputs = [*args.inputs, *args.more_inputs]
    if not args.inputs:
        parser.error("give at least one INPUT (positional or -i)")
    if args.suffix is not None and (
            any(sep and sep in args.suffix for sep in ("/", os.sep, os.altsep))
            or args.suffix in (".", "..")):
        parser.error(f"--suffix {args.suffix!r} must not contain a path separator")
    if args.tile < 0:
        parser.error(f"--tile must be >= 0 (0: automatic), got {args.tile}")
    args.tile = args.tile or None
    if args.outscale is not None and not args.outscale > 0:
        parser.error(f"--outscale must be a positive number, got {args.outscale}")
    if args.tile_overlap is not None:
        try:
            check_tile(args.tile, args.tile_overlap)
        except ValueError as error:
            parser.error(str(error))
    return args


def run(argv: list[str]) -> int:
    args = parse_args(argv)
    upscaler = Upscaler.from_path(args.model or args.workdir, dtype=args.dtype)
    overlap = upscaler.receptive_field if args.tile_overlap is None else args.tile_overlap
    check_tile(args.tile, overlap)
    if args.tile is not None and args.tile > upscaler.max_tile():
        print(f"srgan-jax upscale: --tile {args.tile} needs about "
              f"{upscaler.bytes_per_pixel * args.tile**2 / 2**30:.1f} GiB, more than the memory "
              f"budget ({upscaler.memory_budget / 2**30:.1f} GiB); using tiles of "
              f"{upscaler.max_tile()}", file=sys.stderr)
    suffix = f"_x{upscaler.scale}" if args.suffix is None else args.suffix
    jobs, errors = plan_jobs(args.inputs, args.output, suffix=suffix, ext=args.ext,
                             overwrite=args.overwrite)
    written: list[Job] = []
    with Progress(len(jobs), "upscale", unit="images") as progress:
        def report(line: str) -> None:
            progress.message(f"srgan-jax upscale: {line}")

        def failed(line: str) -> None:
            report(line)
            progress.advance()

        for line in errors:
            report(line)
        try:
            for batch in _batches(jobs, failed):
                _upscale_batch(upscaler, batch, args, progress, failed, written)
        except KeyboardInterrupt:
            report(f"interrupted: {len(written)} image(s) written to {args.output}, "
                   f"{len(jobs) - len(written)} not done (each written file is complete)")
            raise
    failures = len(jobs) + len(errors) - len(written)
    print(f"srgan-jax upscale: {len(written)} image(s) written to {args.output} in "
          f"{progress.elapsed:.1f} s" + (f", {failures} failed (see the lines above)"
                                         if failures else ""), file=sys.stderr)
    return cli.EXIT_FAILED if failures else cli.EXIT_OK


def _upscale_batch(
    upscaler: Upscaler, batch: list[tuple[Job, image_io.ImageData]], args: argparse.Namespace,
    progress: Progress, failed: Callable[[str], None], written: list[Job],
) -> None:
    """Upscales and writes one batch of same-size images, appending each written one to
    `written`; a bar over the model calls (tiles) shows while an image takes more than one."""
    pixels = np.stack([data.pixels for _, data in batch])
    label = batch[0][0].source.name + (f" (+{len(batch) - 1})" if len(batch) > 1 else "")
    with contextlib.ExitStack() as stack:
        advance: Callable[[], None] | None = None

        def on_part(done: int, total: int) -> None:
            nonlocal advance
            if advance is None:
                advance = stack.enter_context(progress.task(total, f"{label}: tiles"))
            advance()

        try:
            results = upscale_pixels(upscaler, pixels, alpha=args.alpha, outscale=args.outscale,
                                     tile=args.tile, tile_overlap=args.tile_overlap,
                                     progress=on_part)
        except ValueError as error:  # NaN/Inf output, or pixels the model cannot take
            for job, _ in batch:
                failed(f"{job.source}: {cli.one_line(error)}")
            return
    for (job, data), result in zip(batch, results, strict=True):
        try:
            job.target.parent.mkdir(parents=True, exist_ok=True)
            image_io.write_image(job.target, image_io.ImageData(result, data.icc_profile))
        except (OSError, ValueError) as error:
            failed(f"{job.source}: cannot write {job.target}: {cli.one_line(error)}")
            continue
        written.append(job)
        progress.advance()


def main(argv: list[str] | None = None) -> int:
    return cli.run_command("upscale", run, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
