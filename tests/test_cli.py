"""The common error policy of every `srgan-jax` sub-command (`cli.run_command`)."""
import logging
import sys

import pytest

from srgan_jax import cli


def failing(error):
    def body(argv):
        raise error

    return body


@pytest.mark.parametrize("error", [
    cli.UserError("photo.png: cannot read image"),
    ValueError("config.batch_size must be positive\n(got -1)"),
    FileNotFoundError("model.msgpack: no such file"),
])
def test_expected_errors_are_one_line_and_exit_1(capsys, error):
    assert cli.run_command("upscale", failing(error), ["x"]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("srgan-jax upscale: ")
    assert "Traceback" not in err and str(error).splitlines()[0] in err


def test_verbose_adds_the_traceback_and_is_not_passed_on(capsys):
    seen = []

    def body(argv):
        seen.append(argv)
        raise ValueError("bad")

    assert cli.run_command("evaluate", body, ["a", "--verbose", "b"]) == cli.EXIT_FAILED
    assert seen == [["a", "b"]]
    assert "Traceback" in capsys.readouterr().err


def test_ctrl_c_is_exit_130(capsys):
    assert cli.run_command("upscale", failing(KeyboardInterrupt()), []) == 130
    assert capsys.readouterr().err == "srgan-jax upscale: interrupted\n"
    left = KeyboardInterrupt("the checkpoint of step 2 was being written")  # what was left undone
    assert cli.run_command("train", failing(left), []) == 130
    assert capsys.readouterr().err == (
        "srgan-jax train: interrupted: the checkpoint of step 2 was being written\n")


def test_bugs_keep_their_traceback():
    with pytest.raises(KeyError):
        cli.run_command("upscale", failing(KeyError("internal")), [])


def test_status_of_the_body_is_returned():
    assert cli.run_command("x", lambda argv: 1, []) == 1
    assert cli.run_command("x", lambda argv: None, []) == 0


def test_unknown_command_is_a_usage_error(capsys):
    assert cli.main(["frobnicate"]) == cli.EXIT_USAGE
    assert "unknown command" in capsys.readouterr().err


def test_control_characters_in_a_message_stay_on_one_line(capsys):
    """A newline (or a terminal escape) in a file's name must not split or garble the line."""
    error = FileNotFoundError("photo\nx\x1b[2J.png: no such file")
    assert cli.run_command("upscale", failing(error), []) == cli.EXIT_FAILED
    assert capsys.readouterr().err == "srgan-jax upscale: photo; x\\x1b[2J.png: no such file\n"
    assert cli.error_line("upscale", "a\nb.png: cannot read") == (
        "srgan-jax upscale: a\\nb.png: cannot read")


def test_a_backend_that_cannot_start_is_one_line_naming_jax_platforms(capsys, monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "gpu")
    error = RuntimeError("Unable to initialize backend 'cuda': no GPU (set JAX_PLATFORMS='' to "
                         "automatically choose an available backend)")
    assert cli.run_command("train", failing(error), []) == cli.EXIT_FAILED
    assert capsys.readouterr().err == (
        "srgan-jax train: JAX_PLATFORMS=gpu: Unable to initialize backend 'cuda': no GPU (set "
        "JAX_PLATFORMS='' to automatically choose an available backend)\n")
    with pytest.raises(RuntimeError, match="something else"):  # other RuntimeErrors are bugs
        cli.run_command("train", failing(RuntimeError("something else")), [])


class Unraisable:
    def __init__(self, value):
        self.exc_type, self.exc_value, self.exc_traceback = type(value), value, None
        self.err_msg, self.object = None, None


def test_library_noise_is_kept_off_stderr_unless_verbose(monkeypatch):
    """orbax's log records, and the 'Event loop is closed' errors its asyncio threads leave when a
    save fails or is interrupted (dozens of tracebacks around the one line that matters)."""
    passed_on = []
    monkeypatch.setattr(sys, "unraisablehook", passed_on.append)
    record = logging.LogRecord("absl", logging.ERROR, "/site-packages/orbax/checkpoint/x.py", 1,
                               "save failed", None, None)
    own = logging.LogRecord("absl", logging.WARNING, "/srgan_jax/training/checkpoints.py", 1,
                            "checkpoint of step 2 is unreadable", None, None)
    cli.run_command("train", lambda argv: None, [])
    sys.unraisablehook(Unraisable(RuntimeError("Event loop is closed")))
    sys.unraisablehook(Unraisable(ValueError("another")))
    assert [u.exc_value.args for u in passed_on] == [("another",)]
    assert not cli.LIBRARY_NOISE.filter(record) and cli.LIBRARY_NOISE.filter(own)
    assert not logging.getLogger("asyncio").isEnabledFor(logging.ERROR)  # never-retrieved tasks
    cli.run_command("train", lambda argv: None, ["--verbose"])
    assert logging.getLogger("asyncio").isEnabledFor(logging.ERROR)
    assert cli.LIBRARY_NOISE.filter(record) and cli.LIBRARY_NOISE.filter(own)
    sys.unraisablehook(Unraisable(RuntimeError("Event loop is closed")))
    assert len(passed_on) == 2
    cli.run_command("train", lambda argv: None, [])  # quiet again for the tests after this one
