"""The `srgan-jax` command: one sub-command per task, each living in its own module.

Sub-commands are dispatched lazily so that `srgan-jax upscale` never imports the training stack
(or TensorFlow), and each module owns its own argument parser through `main(argv) -> int`.

Every sub-command reports failures the same way (`run_command`): an expected error (bad input, a
damaged file, a wrong config field) is one line `srgan-jax <cmd>: <what>: <why>` on stderr and
exit status 1; Ctrl-C is 130; a run stopped by SIGTERM after saving is 143; a bad command line is
2. A traceback is printed only for genuine bugs, or for any error with `--verbose`.
"""
from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable, Sequence

EXIT_OK = 0
EXIT_FAILED = 1  # an expected error, or some of the inputs failed
EXIT_USAGE = 2  # a bad command line (argparse's own status)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM: the run saved its state and stopped before the end (128 + 15)
VERBOSE_FLAG = "--verbose"

COMMANDS = {
    "train": ("srgan_jax.main", "train a model (same as python -m srgan_jax.main)"),
    "evaluate": (
        "srgan_jax.evaluation.evaluate", "Y-channel PSNR/SSIM of bicubic or a model on folders"
    ),
    "upscale": ("srgan_jax.upscaling.upscale_cli", "upscale image files and folders of any size"),
    "export": ("srgan_jax.upscaling.export_cli",
               "write a trained generator to a model file or a StableHLO artifact"),
    "models": ("srgan_jax.upscaling.models_cli", "list the shipped models (names for --model)"),
}


class UserError(Exception):
    """An expected failure whose message tells the user what to change (names the file or field).

    `ValueError` and `OSError` raised by the library count as expected too: the library's own
    messages name the file, tensor or config field at fault.
    """


EXPECTED_ERRORS = (UserError, ValueError, OSError)


def one_line(error: BaseException) -> str:
    """The error's message on one line (multi-line messages joined with '; ')."""
    text = str(error).strip() or type(error).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def run_command(
    command: str, body: Callable[[list[str]], int | None], argv: Sequence[str]
) -> int:
    """Runs a sub-command's `body(argv)` under the common error policy; returns the exit status.

    `--verbose` anywhere in `argv` is removed from it and turns on tracebacks for expected errors.
    """
    verbose = VERBOSE_FLAG in argv
    argv = [arg for arg in argv if arg != VERBOSE_FLAG]
    try:
        return int(body(argv) or EXIT_OK)
    except KeyboardInterrupt:
        print(f"srgan-jax {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except EXPECTED_ERRORS as error:
        if verbose:
            traceback.print_exc()
        print(f"srgan-jax {command}: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILED


def usage() -> str:
    lines = ["usage: srgan-jax COMMAND [ARGS...] [--verbose]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`srgan-jax COMMAND --help` describes each command; --verbose shows tracebacks."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return EXIT_OK
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"srgan-jax: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return EXIT_USAGE
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(rest) or EXIT_OK)


if __name__ == "__main__":
    sys.exit(main())
