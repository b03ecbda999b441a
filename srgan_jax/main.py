"""Trains SRResNet/SRGAN: `python -m srgan_jax.main --workdir DIR [--config FILE] [--config.x=v]`.

Intentionally short, like flax's examples/imagenet: flags and logging here, the training itself in
`srgan_jax.training.trainer.train_and_evaluate` so that notebooks and tests can call it directly.
The same entry point is `srgan-jax train ...`. Running again with the same `--workdir` resumes the
run.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from srgan_jax import cli
from srgan_jax.training import metrics_log, parallel, run_control, trainer

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "default.py")

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and samples.")
# No default here: config_flags would load a default at import, with the `--config.x` overrides
# it finds in sys.argv then (an unknown field was a traceback, and overrides without --config were
# 'unknown flags' afterwards). `_run` passes DEFAULT_CONFIG when --config is not given.
config_flags.DEFINE_config_file(
    "config",
    None,
    "Training config file (srgan_jax/configs/*.py; default: configs/default.py, the paper's "
    "SRGAN-VGG54); override fields with --config.field=value.",
    lock_config=True,
)
_CONFIG_FLAG = re.compile(r"--?config(=|$)")  # --config=FILE or --config FILE, as config_flags
flags.mark_flags_as_required(["workdir"])


def _parse(argv: list[str]) -> list[str]:
    """absl's flag parsing and the config file's loading, with errors as one line each: a bad
    command line (an unknown flag, no --workdir) a `cli.UsageError`, a config file or field that
    cannot be read a `cli.UserError`."""
    try:
        rest = FLAGS(argv)
        FLAGS.config.get("seed")  # config_flags reports a file it failed to load on first use
    except (AttributeError, KeyError) as error:  # ml_collections: an unknown --config.field
        field = cli.one_line(error).strip("\"'")
        raise cli.UserError(f"a --config.* override names an unknown field {field!r}") from error
    except OSError as error:  # the config file: its last line says why it did not load
        raise cli.UserError(f"--config: {str(error).strip().splitlines()[-1].strip()}") from error
    except flags.Error as error:  # absl: 'flag --config.x=v: why' is a field, the rest usage
        problem = cli.UserError if str(error).startswith("flag --config") else cli.UsageError
        raise problem(f"flags or config file: {cli.one_line(error)}") from error
    except Exception as error:  # noqa: BLE001 (config files raise anything)
        raise cli.UserError(f"flags or config file: {cli.one_line(error)}") from error
    return rest


def _train(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    parallel.maybe_initialize_distributed(FLAGS.config)  # before anything touches the devices
    logging.info("JAX process %d of %d", jax.process_index(), jax.process_count())
    logging.info("JAX local devices: %r", jax.local_devices())
    try:
        with run_control.StopRequest() as stop:
            state = trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir, stop)
    except (metrics_log.NonFiniteLossError, run_control.WorkdirLockedError) as error:
        raise cli.UserError(str(error)) from error
    if not stop.requested:
        return cli.EXIT_OK
    print(
        f"srgan-jax train: stopped by {stop.signal_name} at step {state.step}; its checkpoint is "
        f"in {FLAGS.workdir}: run the same command to continue",
        file=sys.stderr,
    )
    return cli.EXIT_INTERRUPTED if stop.signal_name == "SIGINT" else cli.EXIT_TERMINATED


def main(argv: Sequence[str] | None = None) -> int:
    """Trains under absl (flags, logging) with `argv` (default sys.argv[1:]); the exit status.

    Errors follow `srgan_jax.cli.run_command`: one line and status 1 for a bad config file or
    field, workdir or input; status 2 for a bad command line (an unknown flag, no --workdir, a
    stray argument); 143 (SIGTERM) or 130 (Ctrl-C) after a stop that saved a checkpoint.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    return cli.run_command("train", _run, args)


def _run(args: list[str]) -> int:
    # config_flags finds `--config.x` overrides in sys.argv; absl's app.run ends by raising
    # SystemExit, turned here into a return value so that `srgan-jax train` can call this.
    if not any(_CONFIG_FLAG.match(arg) for arg in args):
        args = [f"--config={DEFAULT_CONFIG}", *args]
    saved_argv, sys.argv = sys.argv, ["srgan-jax train", *args]
    # A second call in one process must not inherit the first one's flags, nor find the
    # `--config.x` flags config_flags defined for the first one's overrides (defined twice).
    FLAGS.unparse_flags()
    for name in [name for name in FLAGS if name.startswith("config.")]:
        delattr(FLAGS, name)
    try:
        app.run(_train, argv=sys.argv, flags_parser=_parse)
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        raise cli.UserError(str(exit_.code)) from None
    finally:
        sys.argv = saved_argv
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
