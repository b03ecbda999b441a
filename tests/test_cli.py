"""The common error policy of every `srgan-jax` sub-command (`cli.run_command`)."""
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


def test_bugs_keep_their_traceback():
    with pytest.raises(KeyError):
        cli.run_command("upscale", failing(KeyError("internal")), [])


def test_status_of_the_body_is_returned():
    assert cli.run_command("x", lambda argv: 1, []) == 1
    assert cli.run_command("x", lambda argv: None, []) == 0


def test_unknown_command_is_a_usage_error(capsys):
    assert cli.main(["frobnicate"]) == cli.EXIT_USAGE
    assert "unknown command" in capsys.readouterr().err
