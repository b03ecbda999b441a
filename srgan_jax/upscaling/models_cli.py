"""`srgan-jax models`: the models shipped with the package, as `--model NAME` accepts them.

    srgan-jax models            # a table: name, kind, scale, training data, benchmark PSNR
    srgan-jax models --json     # the same as JSON, for scripts
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from srgan_jax import cli
from srgan_jax.upscaling import registry


def table(models: dict[str, registry.ShippedModel]) -> str:
    """The models as a Markdown table, the default marked; PSNR in dB on the Y channel."""
    header = ["name", "kind", "scale", "training data",
              *(f"{b} PSNR" for b in registry.BENCHMARKS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, m in models.items():
        label = f"{name} (default)" if name == registry.DEFAULT_MODEL else name
        psnr = [f"{m.psnr[b]:.2f}" if b in m.psnr else "-" for b in registry.BENCHMARKS]
        lines.append("| " + " | ".join([label, m.kind, f"x{m.scale}", m.training_data, *psnr])
                     + " |")
    return "\n".join(lines)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="srgan-jax models",
        description="List the models shipped with srgan-jax (use their names with --model, or "
                    "srgan_jax.load_generator(NAME)). PSNR: dB on the Y channel, x4, from each "
                    "model's card.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    models = registry.shipped_models()
    if args.json:
        entries = [{**dataclasses.asdict(m), "path": str(m.path),
                    "default": name == registry.DEFAULT_MODEL} for name, m in models.items()]
        print(json.dumps(entries, indent=2))
    else:
        print(table(models))
        print(f"\nmodel cards: {registry.WEIGHTS_DIR}/")
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return cli.run_command("models", run, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
