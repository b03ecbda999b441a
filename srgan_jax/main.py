"""Trains SRResNet/SRGAN: `python -m srgan_jax.main --workdir DIR [--config FILE] [--config.x=v]`.

Intentionally short, like flax's examples/imagenet: flags and logging here, the training itself in
`srgan_jax.training.trainer.train_and_evaluate` so that notebooks and tests can call it directly.
The same entry point is `srgan-jax train ...`. Running again with the same `--workdir` resumes the
run.
"""

from __future__ import annotations

import logging as pylogging
import os
import sys
from collections.abc import Sequence

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from srgan_jax.training import parallel, trainer

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "default.py")

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and samples.")
config_flags.DEFINE_config_file(
    "config",
    DEFAULT_CONFIG,
    "Training config file (srgan_jax/configs/*.py); override fields with --config.field=value.",
    lock_config=True,
)
flags.mark_flags_as_required(["workdir"])


class _OrbaxInfoFilter(pylogging.Filter):
    """Drops orbax's many INFO lines per checkpoint (warnings and errors still show)."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        return (
            record.levelno >= pylogging.WARNING or f"{os.sep}orbax{os.sep}" not in record.pathname
        )


_ORBAX_INFO_FILTER = _OrbaxInfoFilter()  # one instance: adding it again is a no-op


def _train(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.get_absl_logger().addFilter(_ORBAX_INFO_FILTER)
    parallel.maybe_initialize_distributed(FLAGS.config)  # before anything touches the devices
    logging.info("JAX process %d of %d", jax.process_index(), jax.process_count())
    logging.info("JAX local devices: %r", jax.local_devices())
    trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `_train` under absl (flags, logging) on `argv` (default sys.argv[1:]); the exit status.

    absl's `app.run` ends by raising SystemExit; it is turned into a return value here so that
    `srgan-jax train` can call this like any other sub-command.
    """
    args = sys.argv if argv is None else ["srgan-jax train", *argv]
    saved_argv, sys.argv = sys.argv, args  # config_flags finds `--config.x` overrides in sys.argv
    FLAGS.unparse_flags()  # a second call in one process must not inherit the first one's flags
    try:
        app.run(_train, argv=args)
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)
        return 1
    finally:
        sys.argv = saved_argv
    return 0


if __name__ == "__main__":
    sys.exit(main())
