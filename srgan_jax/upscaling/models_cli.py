"""`srgan-jax models`: the models shipped with the package, as `--model NAME` accepts them.

    srgan-jax models            # a table: name, kind, scale, training data, PSNR/SSIM/NIQE
    srgan-jax models --json     # the same as JSON, for scripts
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from srgan_jax import cli
from srgan_jax.upscaling import registry


def _cell(scores: dict[str, dict[str, float]], benchmark: str) -> str:
    """'29.88 / 0.8442 / 6.12': PSNR / SSIM / NIQE of one benchmark, '-' where not measured."""
    formats = {"psnr": "{:.2f}", "ssim": "{:.4f}", "niqe": "{:.2f}"}
    return " / ".join(formats[k].format(scores[k][benchmark])
                      if benchmark in scores.get(k, {}) else "-" for k in formats)


def table(models: dict[str, registry.ShippedModel]) -> str:
    """The models as a Markdown table, the default marked, then bicubic and HR for reference:
    per benchmark PSNR (dB, Y channel) / SSIM / NIQE."""
    header = ["name", "kind", "scale", "training data", *registry.BENCHMARKS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, m in models.items():
        label = f"{name} (default)" if name == registry.DEFAULT_MODEL else name
        scores = {"psnr": m.psnr, "ssim": m.ssim, "niqe": m.niqe}
        lines.append("| " + " | ".join([label, m.kind, f"x{m.scale}", m.training_data,
                                        *(_cell(scores, b) for b in registry.BENCHMARKS)]) + " |")
    if models:
        reference = next(iter(models.values()))
        for name, kind in (("bicubic", "MATLAB bicubic, the baseline"),
                           ("HR", "the originals: NIQE a perfect upscaler reaches")):
            scores = reference.baselines.get(name, {})
            lines.append("| " + " | ".join([name, kind, f"x{reference.scale}", "-",
                                            *(_cell(scores, b) for b in registry.BENCHMARKS)])
                         + " |")
    return "\n".join(lines)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="srgan-jax models",
        description="List the models shipped with srgan-jax (use their names with --model, or "
                    "srgan_jax.load_generator(NAME)). Per benchmark: PSNR (dB, Y channel, x4) / "
                    "SSIM / NIQE (no-reference naturalness, lower is better), from each model's "
                    "card, with bicubic's and HR's.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    models = registry.shipped_models()
    if args.json:
        entries = [{**dataclasses.asdict(m), "path": str(m.path),
                    "default": name == registry.DEFAULT_MODEL} for name, m in models.items()]
        print(json.dumps(entries, indent=2))
    else:
        print("Per benchmark: PSNR (dB, Y channel) / SSIM / NIQE (lower is more natural)\n")
        print(table(models))
        print(f"\nmodel cards: {registry.WEIGHTS_DIR}/")
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return cli.run_command("models", run, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
