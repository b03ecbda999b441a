"""The `srgan-jax` command: one sub-command per task, each living in its own module.

Sub-commands are dispatched lazily so that `srgan-jax upscale` never imports the training stack
(or TensorFlow), and each module owns its own argument parser through `main(argv) -> int`.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": ("srgan_jax.main", "train a model (same as python -m srgan_jax.main)"),
    "evaluate": (
        "srgan_jax.evaluation.evaluate", "Y-channel PSNR/SSIM of bicubic or a model on folders"
    ),
    "upscale": ("srgan_jax.upscaling.upscale_cli", "upscale image files and folders of any size"),
    "export": ("srgan_jax.upscaling.model_file", "write a trained generator to one model file"),
}


def usage() -> str:
    lines = ["usage: srgan-jax COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`srgan-jax COMMAND --help` describes each command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"srgan-jax: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
