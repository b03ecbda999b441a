"""`srgan-jax upscale`: upscale image files, folders (recursively) and globs with a trained model.

The flags follow Real-ESRGAN's `inference_realesrgan.py` where they mean the same (-i, -o, -n, -s,
-t, --tile_pad, --fp32, --ext, --suffix); `srgan-jax upscale --help` lists them with examples.
Without --model the default shipped model is used (`srgan-jax models` lists the shipped ones).

Outputs keep their names (plus the suffix) and, below a folder or glob input, their folder
structure; for a single input file, `-o` may name the output file itself. No output is ever
written over an input, outside `-o`, or where an input would read it again next time; existing
outputs, even ones another command writes while this one runs, are replaced only with
--overwrite, and files appear atomically (`output_paths.write_output`). A file that cannot be
read, upscaled or written, and a folder that cannot be read, gets an error line naming it, the
others are still processed, and the exit status is 1 with a summary at the end (130 on Ctrl-C,
with the count of images already written). Consecutive images of the same size go through
the model as one batch. Bit depth (8/16), gray, alpha and the ICC profile are kept where the output
format allows; EXIF orientation is applied; animated (multi-frame) images are refused.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import glob
import os
import pathlib
import sys
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from srgan_jax import cli, image_io
from srgan_jax.output_paths import Inputs, output_problem
from srgan_jax.progress import Progress
from srgan_jax.upscaling import registry
from srgan_jax.upscaling.inference import DTYPES, Upscaler
from srgan_jax.upscaling.pixels import ALPHA_MODES, upscale_pixels
from srgan_jax.upscaling.tiling import check_tile, window_side

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
except that the suffix is appended as given (default _x<scale>, the -s scale if given), -t 0
means automatic tiling from the memory budget (tiles are exact, not blended), and the default
precision is float32.
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


def _not_a_file(path: pathlib.Path) -> str:
    """The line for an input that exists but is not a regular file (a pipe, a device)."""
    return f"{path}: {image_io.special_file_kind(path) or 'not a regular file'}, not an image file"


def expand_inputs(
    inputs: Sequence[str],
) -> tuple[list[tuple[pathlib.Path, pathlib.Path]], list[str]]:
    """(file, path relative to its output folder) for each input file, and error lines.

    Folders contribute their image files (`image_io.scan_images`, with a line for each sub-folder
    it could not read) with their sub-folders; globs their matching files relative to the glob's
    fixed prefix; files themselves, by name only. Pipes and devices are named, never read.
    """
    found, errors = [], []
    for item in inputs:
        if _is_glob(item):
            base = _glob_base(item)
            matches = sorted(pathlib.Path(p) for p in glob.glob(item, recursive=True))
            files = [p for p in matches if p.is_file()]
            errors += [_not_a_file(p) for p in matches if p.exists() and not p.is_file()
                       and not p.is_dir()]
            if not matches:
                errors.append(f"{item}: no files match")
            found += [(p, p.relative_to(base)) for p in files]
        elif os.path.isdir(item):
            scan = image_io.scan_images(item)
            errors += scan.problems
            if not scan.files and not scan.problems:
                errors.append(f"{item}: no image files in this folder")
            found += [(p, p.relative_to(item)) for p in scan.files]
        elif os.path.isfile(item):
            found.append((pathlib.Path(item), pathlib.Path(pathlib.Path(item).name)))
        elif os.path.exists(item):
            errors.append(_not_a_file(pathlib.Path(item)))
        else:
            errors.append(f"{item}: no such file or folder")
    return found, errors


def output_extension(source: pathlib.Path, ext: str) -> str:
    """The output suffix: `ext`'s, or for 'auto' the input's if writable, else '.png'."""
    if ext != "auto":
        return EXTENSIONS[ext]
    return source.suffix if image_io.is_writable_image(source) else ".png"


def default_suffix(scale: int, outscale: float | None) -> str:
    """`_x<final scale>`: `-s`'s if given (`_x2`, `_x3.5`), else the model's."""
    return f"_x{scale if outscale is None else f'{outscale:g}'}"


def names_a_file(output: pathlib.Path) -> bool:
    """Whether `-o output` names an image file rather than a folder: it is not an existing
    folder, and its extension is one Pillow knows for images (writable or not)."""
    return not output.is_dir() and output.suffix.lower() in Image.registered_extensions()


def rereading_input(target: pathlib.Path, inputs: Sequence[str]) -> str | None:
    """The input (a folder, or a glob) that would read `target` the next time the same command
    runs: the output would then be upscaled again (`photo_x4_x4.png`). None if there is none."""
    resolved = target.resolve()
    for item in inputs:
        if _is_glob(item):
            base = _glob_base(item)
            pattern = base.resolve().joinpath(*pathlib.PurePath(item).parts[len(base.parts):])
            if "**" in item:  # any depth below the base, the last component's pattern
                if resolved.is_relative_to(base.resolve()) and fnmatch.fnmatch(
                        resolved.name, pattern.name):
                    return item
            elif resolved.match(str(pattern)):
                return item
        elif os.path.isdir(item) and resolved.is_relative_to(pathlib.Path(item).resolve()):
            return item
    return None


def plan_jobs(
    inputs: Sequence[str], output: str, *, suffix: str, ext: str, overwrite: bool
) -> tuple[list[Job], list[str]]:
    """The files to upscale and where each goes, and error lines for those that must not be.

    `output` is a folder, or, for a single input file, the output file's name (then `ext` and
    `suffix` do not apply). An output never replaces an input (even with `overwrite`), another
    output, or an existing file unless `overwrite` (`output_paths.output_problem`), and never
    lands outside `output` (through a symbolic link inside it, say). Raises `cli.UserError`
    before anything is read for an `output` that cannot work: a file name whose format cannot be
    written, an existing file where a folder is needed, or a folder some input reads (the next
    run would upscale these outputs again).
    """
    out = pathlib.Path(output)
    single_file = len(inputs) == 1 and os.path.isfile(inputs[0]) and names_a_file(out)
    if single_file and not image_io.is_writable_image(out):
        raise cli.UserError(
            f"{out}: cannot write {out.suffix} files; name the output "
            f"{' / '.join(sorted(image_io.WRITABLE_EXTENSIONS))}, or give a folder")
    if not single_file and out.exists() and not out.is_dir():
        raise cli.UserError(f"-o {out}: is a file, not a folder; name a folder for the "
                            "outputs (or, for a single input file, an image file)")
    found, errors = expand_inputs(inputs)
    if single_file:
        planned = [(found[0][0], out)]
    else:
        planned = [(source, out / relative.parent / (relative.stem + suffix
                                                     + output_extension(source, ext)))
                   for source, relative in found]
    for _, target in planned:
        reader = rereading_input(target, inputs)
        if reader is not None:
            raise cli.UserError(
                f"-o {out}: the outputs would be inputs of the next run ({target} is read by "
                f"{reader}), which would upscale them again; write them outside it")
    root = out.resolve() if not single_file else out.parent.resolve()
    protected = Inputs(frozenset(p.resolve() for p, _ in found), frozenset())
    jobs, taken = [], set()
    for source, target in planned:
        if not target.resolve().is_relative_to(root):
            errors.append(f"{source}: output {target} would be written outside {root} "
                          "(through a symbolic link?)")
        elif problem := output_problem(target, protected, taken, overwrite=overwrite):
            errors.append(f"{source}: output {problem}")
        else:
            jobs.append(Job(source, target))
    return jobs, errors


def _batches(jobs: list[Job], failed: Callable[[str], None]
             ) -> Iterator[list[tuple[Job, image_io.ImageData]]]:
    """Runs of consecutive readable images with the same shape and pixel type, of at most
    MAX_BATCH images and MAX_BATCH_PIXELS pixels (large images go one by one). Unreadable,
    animated and multi-page files are reported with `failed(line)` and left out."""
    batch: list[tuple[Job, image_io.ImageData]] = []
    for job in jobs:
        try:
            data = image_io.read_image(job.source, single_frame=True)
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
                      help="LR pixels each tile keeps, a side (each reads --tile_pad more "
                           "around it); 0: automatic, from the memory budget (default). Capped "
                           "to the budget.")
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
    model = args.model if args.model is not None else args.workdir
    upscaler = Upscaler.from_path(model, dtype=args.dtype)
    overlap = upscaler.receptive_field if args.tile_overlap is None else args.tile_overlap
    check_tile(args.tile, overlap)
    window = None if args.tile is None else window_side(args.tile, overlap)
    if window is not None and window > upscaler.max_tile():
        capped = upscaler.tile_for(args.tile, overlap, window, window)
        needed = upscaler.bytes_per_pixel * window**2 / 2**30
        print(cli.error_line("upscale", f"--tile {args.tile} (read with {overlap} pixels of "
                             f"overlap on each side) needs about {needed:.1f} GiB, more than the "
                             f"memory budget ({upscaler.memory_budget / 2**30:.1f} GiB); using "
                             f"tiles of {capped}"), file=sys.stderr)
    suffix = default_suffix(upscaler.scale, args.outscale) if args.suffix is None else args.suffix
    jobs, errors = plan_jobs(args.inputs, args.output, suffix=suffix, ext=args.ext,
                             overwrite=args.overwrite)
    written: list[Job] = []
    with Progress(len(jobs), "upscale", unit="images") as progress:
        def report(line: str) -> None:
            progress.message(cli.error_line("upscale", line))

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
    print(cli.error_line("upscale", f"{len(written)} image(s) written to {args.output} in "
                         f"{progress.elapsed:.1f} s" + (f", {failures} failed (see the lines "
                                                        "above)" if failures else "")),
          file=sys.stderr)
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
            image_io.write_image(job.target, image_io.ImageData(result, data.icc_profile),
                                 overwrite=args.overwrite)
        except (OSError, ValueError) as error:  # messages that name the output file
            failed(f"{job.source}: {cli.one_line(error)}")
            continue
        written.append(job)
        progress.advance()


def main(argv: list[str] | None = None) -> int:
    return cli.run_command("upscale", run, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
