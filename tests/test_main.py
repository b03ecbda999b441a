"""`python -m srgan_jax.main` / `srgan-jax train`: flags, config overrides, exit statuses."""

import importlib
import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from srgan_jax import cli, main, vgg
from srgan_jax.configs import test as test_config
from srgan_jax.data import tfds_data
from srgan_jax.training import checkpoints, phases


def test_srgan_jax_train_runs_the_config_with_overrides(tmp_path):
    workdir = tmp_path / "workdir"
    argv = [
        "train",
        f"--workdir={workdir}",
        f"--config={test_config.__file__}",
        "--config.pretrain.steps=2",
        "--config.gan.steps=0",
        "--config.seed=3",
    ]
    assert cli.main(argv) == 0
    step_dir = workdir / "checkpoints" / "2"
    saved = json.loads((step_dir / "config" / "metadata").read_text())
    assert saved["pretrain"]["steps"] == 2 and saved["gan"]["steps"] == 0 and saved["seed"] == 3
    assert saved["model"]["num_blocks"] == test_config.get_config().model.num_blocks


def test_default_config_is_the_papers_srgan_vgg54_run():
    from srgan_jax.configs import default
    from srgan_jax.training import train_state

    config = default.get_config()
    assert default.__file__ == main.DEFAULT_CONFIG
    assert (config.pretrain.steps, config.gan.steps) == (1_000_000, 200_000)
    assert (config.pretrain.content_loss, config.gan.content_loss) == ("mse", "vgg54")
    assert train_state.learning_rate_points(config, "gan") == ([100_000], [1e-4, 1e-5])
    assert train_state.learning_rate_points(config, "pretrain") == ([], [1e-4])
    assert (config.batch_size, config.crop_size, config.model.scale) == (16, 96, 4)


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "flags or config file: flag --workdir=None: Flag --workdir must have a value other "
             "than None."),
        (["--workdir=WORKDIR", "stray-argument"], "unexpected arguments: stray-argument"),
        (["--workdir=WORKDIR", "--no_such_flag"],
         "flags or config file: Unknown command line flag 'no_such_flag'"),
        (["--workdir=WORKDIR", "--config.seed=1", f"--config={test_config.__file__}"],
         "flags or config file: Found --config.seed=1 in argv before a value for --config was "
         "specified"),
    ],
    ids=["no workdir", "stray argument", "unknown flag", "override before --config"],
)
def test_a_bad_command_line_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    """README: exit 2 for a bad command line, one line; was exit 1 like a bad config field."""
    workdir = tmp_path / "run"
    argv = [arg.replace("WORKDIR", str(workdir)) for arg in argv]
    assert main.main(argv) == cli.EXIT_USAGE
    assert capsys.readouterr().err == f"srgan-jax train: {message}\n"
    assert not workdir.exists()


def _absl_info(line: str) -> bool:
    return re.match(r"I\d{4} \d\d:\d\d:\d\d", line) is not None


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--config.no_such_field=1"],
         "a --config.* override names an unknown field 'no_such_field'"),
        (["--config=CONFIG", "--config.no_such_field=1"],
         "a --config.* override names an unknown field 'no_such_field'"),
        (["--config=missing.py"], "--config: [Errno 2] No such file or directory: 'missing.py'"),
        (["--config=CONFIG", "--config.batch_size=abc"],
         "flags or config file: flag --config.batch_size=abc: invalid literal for int() with "
         "base 10: 'abc'"),
        (["--config=CONFIG", "--config.data.source=nonsense"],
         "config.data.source must be one of ('folder', 'demo', 'tfds'), got 'nonsense'"),
        (["--config.seed=-1"],  # the default config, overridden without --config
         "config.seed must be an integer >= 0, got -1"),
    ],
    ids=["unknown field", "unknown field of a file", "missing file", "unparsable value",
         "bad value", "bad value of the default config"],
)
def test_a_bad_config_is_one_line_and_exit_1_before_compiling(overrides, message, tmp_path):
    """`python -m srgan_jax.main` as a user runs it, compilations logged (JAX_LOG_COMPILES): the
    error line is all it writes besides absl's INFO lines, and no workdir is made. Was, without
    --config: a traceback for an unknown field, and 'unknown flag' for a known one."""
    workdir = tmp_path / "run"
    overrides = [arg.replace("CONFIG", test_config.__file__) for arg in overrides]
    done = subprocess.run(
        [sys.executable, "-m", "srgan_jax.main", f"--workdir={workdir}", *overrides],
        cwd=tmp_path, capture_output=True, text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu", JAX_LOG_COMPILES="1"))
    assert done.returncode == cli.EXIT_FAILED and done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if not _absl_info(line)]
    assert lines == [f"srgan-jax train: {message}"], done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_every_config_file_loads_with_the_shared_fields():
    configs = pathlib.Path(main.DEFAULT_CONFIG).parent
    names = sorted(p.stem for p in configs.glob("*.py") if p.stem != "__init__")
    assert names == [
        "default",
        "demo",
        "srgan_mse",
        "srgan_mse_gridfree",
        "srgan_vgg22",
        "srgan_vgg54",
        "srresnet_mse",
        "srresnet_vgg22",
        "test",
    ]
    losses = {}
    for name in names:
        config = importlib.import_module(f"srgan_jax.configs.{name}").get_config()
        assert config.crop_size % 16 == 0 and config.crop_size % config.model.scale == 0, name
        assert config.batch_size % 8 == 0, name  # runs on 8-device hosts
        losses[name] = (config.pretrain.content_loss, config.gan.steps and config.gan.content_loss)
    assert losses["srresnet_mse"] == ("mse", 0)
    assert losses["srresnet_vgg22"] == ("vgg22", 0)
    assert losses["srgan_mse"] == losses["srgan_mse_gridfree"] == ("mse", "mse")
    assert losses["srgan_vgg22"] == ("mse", "vgg22")
    assert losses["srgan_vgg54"] == losses["default"] == ("mse", "vgg54")


# --- Reliability of `srgan-jax train` (issue 24): one line each, nothing lost -----------------

PHOTOS = pathlib.Path(main.__file__).parent / "data" / "photos"


def saved_run(workdir: pathlib.Path, step: int, phase: str, **overrides) -> None:
    """A workdir whose only checkpoint is of `step` in `phase`, as the test config (with
    `overrides`) writes it: fresh states, the data position of that step."""
    config = test_config.get_config()
    config.update_from_flattened_dict(overrides)
    generator, discriminator = phases.create_states(config, phase, jax.random.key(0), None)
    with checkpoints.Checkpointer(str(workdir), config) as ckpt:
        ckpt.save(checkpoints.TrainingCheckpoint(step, phase, generator, discriminator,
                                                 jax.random.key(config.seed), {"step": step}))


def train(*overrides: str, workdir: pathlib.Path) -> int:
    return cli.main(["train", f"--workdir={workdir}", f"--config={test_config.__file__}",
                     *overrides])


def test_a_resume_names_every_changed_training_field_in_one_warning(tmp_path, caplog, capsys):
    """Was: a changed batch_size, data source or seed continued with only 'resumed at step N'.
    Fields that only change logging or checkpointing (log_every here) are not named."""
    saved_run(tmp_path / "run", 2, "pretrain")
    with caplog.at_level("WARNING"):
        assert train("--config.pretrain.steps=2", "--config.gan.steps=0", "--config.seed=3",
                     "--config.batch_size=16", "--config.data.source=folder",
                     f"--config.data.train_dirs={PHOTOS / 'train'}",
                     f"--config.data.eval_dirs={PHOTOS / 'validation'}",
                     "--config.log_every=1", workdir=tmp_path / "run") == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"
                and "resuming" in r.getMessage()]
    assert warnings == [
        "resuming step 2 with a config that differs from its checkpoint's: seed 0 -> 3, "
        "batch_size 8 -> 16, pretrain.steps 60 -> 2, gan.steps 4 -> 0, data.source 'demo' -> "
        f"'folder', data.train_dirs [] -> ['{PHOTOS / 'train'}'], data.eval_dirs [] -> "
        f"['{PHOTOS / 'validation'}']"]
    assert "Traceback" not in capsys.readouterr().err


def test_a_resume_that_would_reenter_pretraining_is_refused(tmp_path, capsys):
    """Was: raising pretrain.steps on a finished run pre-trained the GAN-trained generator with
    the MSE loss again, then started a second GAN phase."""
    saved_run(tmp_path / "run", 64, "gan")
    before = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert train("--config.pretrain.steps=100", workdir=tmp_path / "run") == cli.EXIT_FAILED
    assert capsys.readouterr().err == (
        f"srgan-jax train: the checkpoint of step 64 is in the gan phase, but "
        "config.pretrain.steps=100 puts step 64 back in the pretrain phase; to continue this run "
        "keep --config.pretrain.steps=60; to train its generator in the pretrain phase again, "
        f"start a new --workdir with --config.pretrain.init_from={tmp_path / 'run'}\n")
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == before


def test_a_checkpoint_of_another_model_is_one_line_and_exit_1(tmp_path, capsys):
    """README: another model's checkpoint in the workdir is one line naming the field, exit 1,
    and the checkpoint is left as it was."""
    saved_run(tmp_path / "run", 2, "pretrain")
    step = tmp_path / "run" / "checkpoints" / "2"
    before = sorted((p.relative_to(step), p.stat().st_mtime_ns) for p in step.rglob("*"))
    assert train("--config.model.num_blocks=2", workdir=tmp_path / "run") == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert err == (f"srgan-jax train: checkpoint {step} was written with model.num_blocks=1 but "
                   "the config has model.num_blocks=2; use a new --workdir, or set "
                   "--config.model.num_blocks=1\n")
    assert sorted((p.relative_to(step), p.stat().st_mtime_ns) for p in step.rglob("*")) == before
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["2"]


def test_a_clean_finish_releases_the_workdir_lock(tmp_path, caplog):
    """Was: every resume after a finished run warned 'taking over the lock of pid N (not
    running)'. A killed run's lock is still taken over with that warning (test_run_control)."""
    saved_run(tmp_path / "run", 2, "pretrain")
    for _ in range(2):
        with caplog.at_level("WARNING"):
            assert train("--config.pretrain.steps=2", "--config.gan.steps=0",
                         workdir=tmp_path / "run") == 0
        assert not (tmp_path / "run" / "lock").exists()
    assert "taking over the lock" not in caplog.text


@pytest.mark.parametrize("content", [bytes(4096), b"not a weights file"])
def test_damaged_vgg_weights_fail_before_the_workdir_is_made(tmp_path, monkeypatch, capsys,
                                                            content):
    """Was: a damaged $SRGAN_JAX_VGG19_WEIGHTS was found only after pre-training ended."""
    weights = tmp_path / "vgg19.h5"
    weights.write_bytes(content)
    monkeypatch.setenv(vgg.ENV_WEIGHTS, str(weights))
    assert train("--config.gan.content_loss=vgg22", workdir=tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"srgan-jax train: {weights}: not a readable HDF5 weights file (")
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_a_broken_tfds_install_fails_before_the_workdir_is_made(tmp_path, monkeypatch, capsys):
    """Was: installed but broken (here: TFDS cannot import what it needs) gave a traceback after
    the workdir was created."""
    for module in ("tensorflow", "tensorflow_datasets"):
        (tmp_path / "site" / module).mkdir(parents=True)
    (tmp_path / "site" / "tensorflow" / "__init__.py").write_text("")
    (tmp_path / "site" / "tensorflow_datasets" / "__init__.py").write_text(
        "raise ImportError(\"cannot import name 'builder' from 'google.protobuf'\")\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert train("--config.data.source=tfds", workdir=tmp_path / "run") == 1
    assert capsys.readouterr().err == (
        "srgan-jax train: config.data.source='tfds' (div2k/bicubic_x4): tensorflow_datasets is "
        "installed but fails to import (ImportError: cannot import name 'builder' from "
        f"'google.protobuf'); reinstall it with: {tfds_data.install_command()}\n")
    assert not (tmp_path / "run").exists()


def test_validation_images_too_small_for_the_border_fail_at_start(tmp_path, capsys):
    """Validation images that cannot be measured fail at start-up, before any compilation."""
    (tmp_path / "val").mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "val" / "tiny.png")
    assert train("--config.data.source=folder", f"--config.data.train_dirs={PHOTOS / 'train'}",
                 f"--config.data.eval_dirs={tmp_path / 'val'}",
                 "--config.evals.psnr_ssim.border=15", workdir=tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert err.startswith("srgan-jax train: config.evals.psnr_ssim: ") and "tiny.png" in err
    assert err.count("\n") == 1 and not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("command", [["upscale", "photo.png"], ["train", "--workdir=run"]])
def test_a_backend_that_cannot_start_is_one_line(tmp_path, command):
    """Was: JAX_PLATFORMS=gpu on a machine without a GPU printed 80 lines of JAX traceback."""
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "photo.png")
    done = subprocess.run([sys.executable, "-m", "srgan_jax.cli", *command], cwd=tmp_path,
                          capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="gpu"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"srgan-jax {command[0]}: JAX_PLATFORMS=gpu: Unable to "
                                  "initialize backend '"), done.stderr
    assert done.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


# The child cannot write files larger than 2 MiB (EFBIG), as on a full disk.
_WITH_FULL_DISK = (
    "import resource, signal, sys\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))\n"
    "from srgan_jax import cli\n"
    "sys.exit(cli.main(sys.argv[1:]))\n"
)


def train_process(workdir: pathlib.Path, *overrides: str, full_disk: bool = False
                  ) -> subprocess.CompletedProcess:
    """`srgan-jax train` on the test config in a child process, checkpointing every step."""
    start = ["-c", _WITH_FULL_DISK] if full_disk else ["-m", "srgan_jax.cli"]
    command = [sys.executable, *start, "train", f"--workdir={workdir}",
               f"--config={test_config.__file__}", "--config.checkpoint_every=1",
               "--config.eval_every=100", "--config.sample_every=100", *overrides]
    return subprocess.run(command, capture_output=True, text=True,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))


def warnings_and_errors(stderr: str) -> list[str]:
    """stderr without absl's INFO lines."""
    return [line for line in stderr.splitlines() if not line.startswith("I")]


@pytest.mark.slow
def test_a_failed_checkpoint_write_is_one_line_and_loses_nothing(tmp_path):
    """Was: dozens of orbax/asyncio tracebacks ('Event loop is closed') around the message. The
    GAN phase's first checkpoint (its discriminator is larger than the limit) cannot be written;
    the steps before it are intact."""
    done = train_process(tmp_path / "run", "--config.pretrain.steps=2", "--config.gan.steps=2",
                         full_disk=True)
    assert done.returncode == 1, done.stderr[-3000:]
    assert warnings_and_errors(done.stderr) == [
        f"srgan-jax train: cannot write the checkpoint of step 3 to {tmp_path / 'run'}/checkpoints "
        "(File too large); the checkpoint of step 2 is intact: fix that, then run the same "
        "command to resume from it"]
    config = test_config.get_config()
    with checkpoints.Checkpointer(str(tmp_path / "run"), config) as ckpt:
        assert ckpt.all_steps() == [1, 2] and ckpt.read_meta(2)["step"] == 2


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_falls_back_without_library_tracebacks(tmp_path):
    """Was: the right warning among orbax's tracebacks."""
    assert train_process(tmp_path / "run", "--config.pretrain.steps=2",
                         "--config.gan.steps=0").returncode == 0
    step = tmp_path / "run" / "checkpoints" / "2"
    data = max((p for p in (step / "generator").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    done = train_process(tmp_path / "run", "--config.pretrain.steps=2", "--config.gan.steps=0")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = warnings_and_errors(done.stderr)
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "resumed at step 1 (phase pretrain)" in done.stderr  # not from scratch
    assert re.fullmatch(r"W.* checkpoints.py:\d+\] checkpoint of step 2 is unreadable \(.*\); "
                        rf"moved it to {tmp_path / 'run'}/damaged_checkpoints/2-\d+-\d+ and "
                        "trying the step before", lines[0]), lines[0]
    assert [p.name[:2] for p in (tmp_path / "run" / "damaged_checkpoints").iterdir()] == ["2-"]
