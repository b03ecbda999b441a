"""The `srgan-jax` command: one sub-command per task, each living in its own module.

Sub-commands are dispatched lazily so that `srgan-jax upscale` never imports the training stack
(or TensorFlow), and each module owns its own argument parser through `main(argv) -> int`.

Every sub-command reports failures the same way (`run_command`): an expected error (bad input, a
damaged file, a wrong config field) is one line `srgan-jax <cmd>: <what>: <why>` on stderr and
exit status 1; Ctrl-C is 130; a run stopped by SIGTERM after saving is 143; a bad command line is
2 (`UsageError`, or argparse's own exit). A traceback is printed only for genuine bugs, or for
any error with `--verbose`. JAX failing to start the backend `JAX_PLATFORMS` names counts as
expected: it is the machine, not a bug.
"""
from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

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


class UsageError(UserError):
    """A bad command line (an unknown flag, a missing or stray argument): one line and status 2,
    the status argparse gives the other commands' bad command lines."""


EXPECTED_ERRORS = (UserError, ValueError, OSError)
# How JAX words the failure to start the backend that JAX_PLATFORMS names (no GPU, no plugin).
BACKEND_FAILURE = "Unable to initialize backend"
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def one_line(error: BaseException | str) -> str:
    """The error's message on one line (multi-line messages joined with '; ')."""
    text = str(error).strip() or type(error).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def error_line(command: str, text: str) -> str:
    """`srgan-jax <command>: <text>`, with control characters in `text` (a newline in a file's
    name, say) written as escapes (`\\n`), so that one error is always one line."""
    escaped = _CONTROL_CHARACTERS.sub(lambda c: repr(c.group())[1:-1], text)
    return f"srgan-jax {command}: {escaped}"


def is_expected(error: BaseException) -> bool:
    """Whether `error` is an expected failure (`EXPECTED_ERRORS`, or JAX failing to start the
    backend `JAX_PLATFORMS` asks for) rather than a bug."""
    return isinstance(error, EXPECTED_ERRORS) or (
        isinstance(error, RuntimeError) and str(error).startswith(BACKEND_FAILURE))


def describe(error: BaseException) -> str:
    """The one-line message of an expected error; a backend failure also names JAX_PLATFORMS."""
    text = one_line(error)
    platforms = os.environ.get("JAX_PLATFORMS")
    if str(error).startswith(BACKEND_FAILURE) and platforms:
        text = f"JAX_PLATFORMS={platforms}: {text}"
    return text


class LibraryNoise(logging.Filter):
    """Keeps orbax's log records (which come through absl logging) off stderr: all of them, or
    with `verbose` only its INFO lines, of which it writes many per checkpoint. What they report
    reaches the user as this package's own lines: a failed save as the command's error line, a
    damaged checkpoint as the trainer's warning."""

    verbose = False

    def filter(self, record: logging.LogRecord) -> bool:
        from_orbax = f"{os.sep}orbax{os.sep}" in record.pathname
        return not from_orbax or (self.verbose and record.levelno >= logging.WARNING)


LIBRARY_NOISE = LibraryNoise()  # one instance: adding it again is a no-op


def quiet_libraries(verbose: bool) -> None:
    """Installs `LIBRARY_NOISE` on the loggers orbax writes to and, unless `verbose`, silences
    asyncio's logger and drops the 'Event loop is closed' errors that orbax's asyncio threads
    leave behind when a checkpoint save fails or is interrupted (Python reports them as
    unraisable, one traceback each)."""
    LIBRARY_NOISE.verbose = verbose
    logging.getLogger("absl").addFilter(LIBRARY_NOISE)
    # orbax modules that log through the standard library do it under the 'orbax' logger; the
    # 'asyncio' logger reports the tasks orbax's threads leave ('Task exception was never
    # retrieved' after a damaged checkpoint was read, with a traceback).
    for name in ("orbax", "asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.CRITICAL + 1)
    if not isinstance(sys.unraisablehook, _AsyncioShutdownFilter):
        sys.unraisablehook = _AsyncioShutdownFilter(sys.unraisablehook)


class _AsyncioShutdownFilter:
    """An unraisable-exception hook that passes everything on but asyncio's closed loops (those
    too with --verbose)."""

    def __init__(self, hook: Callable[[Any], None]):
        self.hook = hook

    def __call__(self, unraisable: Any) -> None:
        value = unraisable.exc_value
        closed_loop = isinstance(value, RuntimeError) and str(value) == "Event loop is closed"
        if LIBRARY_NOISE.verbose or not closed_loop:
            self.hook(unraisable)


def run_command(
    command: str, body: Callable[[list[str]], int | None], argv: Sequence[str]
) -> int:
    """Runs a sub-command's `body(argv)` under the common error policy; returns the exit status.

    `--verbose` anywhere in `argv` is removed from it, turns on tracebacks for expected errors and
    lets library warnings through (`quiet_libraries`).
    """
    verbose = VERBOSE_FLAG in argv
    argv = [arg for arg in argv if arg != VERBOSE_FLAG]
    quiet_libraries(verbose)
    try:
        return int(body(argv) or EXIT_OK)
    except KeyboardInterrupt as interrupt:  # its message, if any, says what was left undone
        print(error_line(command, "interrupted" + (f": {interrupt}" if str(interrupt) else "")),
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if not is_expected(error):
            raise
        if verbose:
            traceback.print_exc()
        print(error_line(command, describe(error)), file=sys.stderr)
        return EXIT_USAGE if isinstance(error, UsageError) else EXIT_FAILED


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
