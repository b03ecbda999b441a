"""`srgan-jax export`: a trained generator as one model file, or as a portable StableHLO artifact.

    srgan-jax export --workdir DIR [--step N | --best] -o model.msgpack
    srgan-jax export --model old.msgpack -o new.msgpack         # re-export (adds a checksum)
    srgan-jax export --format stablehlo [--model NAME|FILE | --workdir DIR] -o model_stablehlo/

The msgpack model file (`model_file`) needs this package to run; the StableHLO folder
(`stablehlo`) runs in any JAX program with `jax.export.deserialize(...).call(lr)`. Without
--model or --workdir the default shipped model is exported. Every output is checked before the
model is loaded; existing outputs, even ones another command writes meanwhile, are replaced only
with --overwrite, and the files appear atomically (`output_paths.write_output`).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

from srgan_jax import cli
from srgan_jax.output_paths import Inputs, output_problem, target_kind
from srgan_jax.upscaling import model_file, registry, stablehlo
from srgan_jax.upscaling.inference import check_model_name
from srgan_jax.upscaling.tiling import receptive_field_radius

FORMATS = ("msgpack", "stablehlo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srgan-jax export",
        description="Write a trained generator to one model file (msgpack, for srgan-jax), or to "
                    "a StableHLO folder that any JAX program can run without srgan-jax.",
        epilog="examples:\n"
               "  srgan-jax export --workdir workdir/demo -o demo.msgpack --best\n"
               "  srgan-jax export --format stablehlo -o srresnet_x4/       # the shipped model\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--workdir", help="training workdir with checkpoints/")
    source.add_argument("--model", help="shipped model name or model file (default: "
                        f"{registry.DEFAULT_MODEL})")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, help="checkpoint step of --workdir (default: latest)")
    which.add_argument("--best", action="store_true",
                       help="the --workdir checkpoint with the best validation PSNR")
    parser.add_argument("--format", choices=FORMATS, default="msgpack",
                        help="msgpack: one model file (default); stablehlo: a folder with a "
                             "jax.export artifact and its metadata.json")
    parser.add_argument("-o", "--output", required=True,
                        help="model file to write (msgpack), or folder (stablehlo)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser


def check_outputs(
    output: pathlib.Path, fmt: str, source: str, overwrite: bool
) -> list[pathlib.Path]:
    """The files the export writes, after checking them all (`output_paths.output_problem`):
    raises `cli.UserError` if one would replace the model being exported (a model file, or a
    shipped model's), an existing file without --overwrite, or anything that is not a file."""
    if fmt == "msgpack":
        if output.is_dir():
            raise cli.UserError(f"{output}: is a folder; name the model file to write")
        files = [output]
    else:
        if output.exists() and not output.is_dir():
            raise cli.UserError(f"{output}: exists and is not a folder")
        files = [output / name for name in (stablehlo.ARTIFACT, stablehlo.METADATA)]
    shipped = registry.shipped_models().get(source)
    model = source if os.path.isfile(source) else shipped.path if shipped else None
    inputs = Inputs.of([model] if model is not None else [])
    taken: set[pathlib.Path] = set()
    for path in files:
        problem = output_problem(path, inputs, taken, overwrite=overwrite)
        if problem:
            raise cli.UserError(problem)
    return files


def run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.step is not None or args.best) and not args.workdir:
        parser.error("--step and --best choose a checkpoint of --workdir")
    output = pathlib.Path(args.output)
    source = next((s for s in (args.workdir, args.model) if s is not None),
                  registry.DEFAULT_MODEL)
    check_model_name(source)
    files = check_outputs(output, args.format, source, args.overwrite)
    weights = registry.load_weights(source, step=args.step, best=args.best)
    config = weights.config
    files[0].parent.mkdir(parents=True, exist_ok=True)
    if args.format == "msgpack":
        model_file.save_model(output, weights.variables, config, overwrite=args.overwrite)
    else:
        shipped = registry.shipped_models().get(str(source))
        stablehlo.export_stablehlo(
            weights, output, source=str(source),
            recipe=shipped.recipe if shipped is not None and not os.path.exists(source) else None,
            receptive_field=receptive_field_radius(config.num_blocks, config.scale),
            overwrite=args.overwrite,
        )
    sizes = [os.path.getsize(f) for f in files if target_kind(f) == "file"]
    streamed = target_kind(files[0]) == "stream"  # the model went to stdout, say: keep it clean
    print(f"wrote {output} ({args.format}"
          + (f", {sizes[0] / 2**20:.1f} MiB" if sizes else "")
          + f"): num_blocks={config.num_blocks}, channels={config.channels}, "
          f"scale={config.scale}", file=sys.stderr if streamed else sys.stdout)
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return cli.run_command("export", run, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
