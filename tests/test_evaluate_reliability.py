"""`srgan-jax evaluate` under bad input and faults (issue 14): each case's message and exit code.

Nothing is lost (inputs and existing files are never written over, and a refused output stops the
run before anything is computed), a bad image fails only itself, and every error is one line.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from fake_models import random_variables
from PIL import Image

from srgan_jax import cli
from srgan_jax.evaluation import evaluate, protocol
from srgan_jax.models import ModelConfig
from srgan_jax.upscaling import model_file


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """`srgan-jax evaluate ARGV...` in-process: (exit status, stdout, stderr)."""
    try:
        code = cli.main(["evaluate", *map(str, argv)])
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(folder: pathlib.Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` with its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def some(tmp_path) -> pathlib.Path:
    """`some/Set5` with two small benchmark-like images."""
    rng = np.random.default_rng(0)
    (tmp_path / "some" / "Set5").mkdir(parents=True)
    for name in ("baby.png", "bird.png"):
        pixels = rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "some" / "Set5" / name)
    return tmp_path / "some"


def assert_one_line(err: str, *parts: str) -> None:
    assert err.count("\n") == 1 and err.startswith("srgan-jax evaluate: "), err
    assert "Traceback" not in err
    for part in parts:
        assert part in err, (part, err)


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_save_dir_never_writes_over_the_benchmark_it_measures(capsys, some, overwrite):
    before = snapshot(some)
    code, out, err = run(capsys, "--bicubic", some / "Set5", "--save-dir", some, *overwrite)
    assert code == cli.EXIT_FAILED and out == ""
    assert_one_line(err, f"{some / 'Set5' / 'baby.png'} is inside the input folder "
                    f"{some / 'Set5'} (and 1 more outputs); nothing was computed")
    assert snapshot(some) == before


def test_save_dir_inside_an_input_folder_is_refused(capsys, some):
    code, _, err = run(capsys, "--bicubic", some / "Set5", "--save-dir", some / "Set5" / "sr",
                       "--overwrite")
    assert code == cli.EXIT_FAILED
    assert_one_line(err, "is inside the input folder")
    assert not (some / "Set5" / "sr").exists()


@pytest.mark.parametrize("flag", ["--json", "--markdown"])
def test_reports_never_replace_an_input_even_with_overwrite(capsys, some, tmp_path, flag):
    before = snapshot(some)
    code, _, err = run(capsys, "--bicubic", some / "Set5", flag, some / "Set5" / "baby.png",
                       "--overwrite")
    assert code == cli.EXIT_FAILED
    assert_one_line(err, f"{some / 'Set5' / 'baby.png'} is inside the input folder")
    assert snapshot(some) == before
    model = tmp_path / "model.msgpack"
    model.write_bytes(b"weights")
    code, _, err = run(capsys, "--model", model, some / "Set5", flag, model, "--overwrite")
    assert code == cli.EXIT_FAILED and model.read_bytes() == b"weights"
    assert_one_line(err, f"{model} would overwrite an input")


@pytest.mark.parametrize("flag", ["--json", "--markdown"])
def test_existing_reports_need_overwrite_and_nothing_is_computed_first(capsys, some, tmp_path,
                                                                       flag):
    report = tmp_path / "report.txt"
    report.write_text("keep me")
    code, out, err = run(capsys, "--bicubic", some / "Set5", flag, report,
                         "--save-dir", tmp_path / "sr")
    assert code == cli.EXIT_FAILED and out == ""
    assert_one_line(err, f"{report} exists (pass --overwrite to replace it); nothing was computed")
    assert report.read_text() == "keep me" and not (tmp_path / "sr").exists()
    code, _, _ = run(capsys, "--bicubic", some / "Set5", flag, report, "--overwrite")
    assert code == cli.EXIT_OK and "Set5" in report.read_text()


def test_existing_sr_images_need_overwrite(capsys, some, tmp_path):
    target = tmp_path / "sr" / "Set5" / "bird.png"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"old")
    code, _, err = run(capsys, "--bicubic", some / "Set5", "--save-dir", tmp_path / "sr")
    assert code == cli.EXIT_FAILED and target.read_bytes() == b"old"
    assert_one_line(err, f"{target} exists (pass --overwrite to replace it)")
    assert not (tmp_path / "sr" / "Set5" / "baby.png").exists()
    code, _, _ = run(capsys, "--bicubic", some / "Set5", "--save-dir", tmp_path / "sr",
                     "--overwrite")
    assert code == cli.EXIT_OK and Image.open(target).size == (40, 36)


def test_two_outputs_on_one_path_are_refused(capsys, some, tmp_path):
    code, _, err = run(capsys, "--bicubic", some / "Set5", "--json", tmp_path / "r",
                       "--markdown", tmp_path / "r")
    assert code == cli.EXIT_FAILED
    assert_one_line(err, f"{tmp_path / 'r'} is also the path of another output")
    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "Set5").mkdir()
    Image.open(some / "Set5" / "baby.png").save(tmp_path / "again" / "Set5" / "baby.png")
    code, _, err = run(capsys, "--bicubic", some / "Set5", tmp_path / "again" / "Set5",
                       "--save-dir", tmp_path / "sr")
    assert code == cli.EXIT_FAILED
    assert_one_line(err, "baby.png is also the path of another output")


@pytest.mark.parametrize(("argv", "message"), [
    (["--scale", "0"], "argument --scale: must be an integer >= 1, got '0'"),
    (["--scale", "-2"], "argument --scale: must be an integer >= 1, got '-2'"),
    (["--scale", "x4"], "argument --scale: must be an integer >= 1, got 'x4'"),
    (["--border", "-3"], "argument --border: must be an integer >= 0, got '-3'"),
])
def test_bad_scale_and_border_are_usage_errors(capsys, some, argv, message):
    code, out, err = run(capsys, "--bicubic", some / "Set5", *argv)
    assert code == cli.EXIT_USAGE and out == "" and message in err


def test_zero_border_is_allowed(capsys, some):
    code, out, _ = run(capsys, "--bicubic", some / "Set5", "--border", "0")
    assert code == cli.EXIT_OK and "border 0" in out


def test_bad_images_fail_alone_and_are_named(capsys, some, tmp_path):
    folder = some / "Set5"
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    Image.fromarray(np.zeros((3, 40, 3), np.uint8)).save(folder / "strip.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "small.png")
    code, out, err = run(capsys, "--bicubic", folder, "--json", tmp_path / "r.json")
    assert code == cli.EXIT_FAILED
    lines = [line for line in err.splitlines() if "images," not in line]  # minus progress
    assert lines[0].startswith(f"srgan-jax evaluate: {folder / 'corrupt.png'}: cannot read image")
    assert lines[1] == (f"srgan-jax evaluate: {folder / 'small.png'}: SSIM needs at least 11x11 "
                        "pixels after the border")
    assert lines[2] == (f"srgan-jax evaluate: {folder / 'strip.png'}: 40x3 pixels is too small "
                        "for scale 4")
    assert lines[3] == ("srgan-jax evaluate: 3 of 5 images failed (named above); they are left "
                        "out of the table")
    assert len(lines) == 4 and "Traceback" not in err
    assert "| Set5 | 2 |" in out  # the two good images are still measured
    report = json.loads((tmp_path / "r.json").read_text())
    assert [r["name"] for r in report["results"]["bicubic"][0]["images"]] == ["baby.png",
                                                                                "bird.png"]
    assert len(report["failed"]) == 3 and "corrupt.png" in report["failed"][0]


def test_a_folder_without_good_images_gets_an_empty_row(capsys, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"junk")
    code, out, err = run(capsys, "--bicubic", tmp_path / "bad")
    assert code == cli.EXIT_FAILED and "| bad | 0 | - | - |" in out
    assert "x.png: cannot read image" in err


@pytest.mark.parametrize(("folder", "message"), [
    ("nowhere", "nowhere: no such folder"),
    ("empty", "empty: no image files in this folder"),
])
def test_missing_or_empty_folders_are_named(capsys, tmp_path, folder, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    code, out, err = run(capsys, "--bicubic", tmp_path / folder)
    assert code == cli.EXIT_FAILED and out == ""
    assert_one_line(err, message)


def test_model_file_errors_name_the_file(capsys, some, tmp_path):
    code, _, err = run(capsys, "--model", tmp_path / "missing.msgpack", some / "Set5")
    assert code == cli.EXIT_FAILED
    assert_one_line(err, str(tmp_path / "missing.msgpack"))
    (tmp_path / "damaged.msgpack").write_bytes(b"\x00" * 64)
    code, _, err = run(capsys, "--model", tmp_path / "damaged.msgpack", some / "Set5")
    assert code == cli.EXIT_FAILED
    assert_one_line(err, str(tmp_path / "damaged.msgpack"))


def test_a_model_of_another_scale_names_the_file(capsys, some, tmp_path):
    config = ModelConfig(num_blocks=1, channels=8, scale=2)
    path = tmp_path / "x2.msgpack"
    model_file.save_model(path, random_variables(config), config)
    code, out, err = run(capsys, "--model", path, "--scale", "4", some / "Set5")
    assert code == cli.EXIT_FAILED and out == ""
    assert_one_line(err, f"{path}: the model upscales x2, not --scale 4")


class NanModel:
    """A model whose output is NaN (as after damaged weights)."""

    scale = 4

    def __call__(self, lr):
        return np.full((lr.shape[0] * 4, lr.shape[1] * 4, 3), np.nan, np.float32)


def test_nan_outputs_fail_each_image_by_name(capsys, some, monkeypatch):
    monkeypatch.setattr(evaluate, "_load_model", lambda path, dtype, scale: NanModel())
    code, out, err = run(capsys, "--model", "nan.msgpack", some / "Set5")
    assert code == cli.EXIT_FAILED and "| Set5 | 0 |" in out
    assert (f"srgan-jax evaluate: {some / 'Set5' / 'baby.png'}: the model's output has NaN or "
            "infinite values") in err


def test_ctrl_c_is_exit_130_and_writes_no_report(capsys, some, tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(protocol, "score", interrupted)
    code, out, err = run(capsys, "--bicubic", some / "Set5", "--json", tmp_path / "r.json")
    assert code == cli.EXIT_INTERRUPTED and out == ""
    assert err.splitlines()[-1] == "srgan-jax evaluate: interrupted"
    assert not (tmp_path / "r.json").exists()


def test_verbose_shows_the_traceback(capsys, tmp_path):
    code, _, err = run(capsys, "--bicubic", tmp_path / "nowhere", "--verbose")
    assert code == cli.EXIT_FAILED and "Traceback" in err


def test_a_method_is_required(capsys, some):
    code, _, err = run(capsys, some / "Set5")
    assert code == cli.EXIT_USAGE and "one of the arguments --bicubic --model --workdir" in err


# --- Issue 24: races, streams, strict JSON, nothing measured in part --------------------------

def test_a_report_another_run_writes_meanwhile_is_kept(capsys, some, tmp_path, monkeypatch):
    """Was: two `evaluate --json` on one path both wrote it, and one set of results was lost."""
    report = tmp_path / "r.json"
    real_score = protocol.score

    def other_run_finishes_first(*args):
        if not report.exists():
            report.write_text('{"the other run": 1}')
        return real_score(*args)

    monkeypatch.setattr(protocol, "score", other_run_finishes_first)
    code, out, err = run(capsys, "--bicubic", some / "Set5", "--json", report)
    assert code == cli.EXIT_FAILED and "| Set5 | 2 |" in out  # this run's table is printed
    assert err.splitlines()[-1] == (f"srgan-jax evaluate: {report} exists; it was kept (pass "
                                    "--overwrite to replace it)")
    assert json.loads(report.read_text()) == {"the other run": 1}


def test_json_to_stdout_goes_into_the_pipe(some, tmp_path):
    """Was: `--json /dev/stdout | cat` replaced the /dev/stdout link with a regular file (as
    root, the system's own). /proc/self/fd/1 is what /dev/stdout points to."""
    done = subprocess.run([sys.executable, "-m", "srgan_jax.cli", "evaluate", "--bicubic",
                           str(some / "Set5"), "--json", "/proc/self/fd/1"],
                          capture_output=True, text=True, check=True)
    table, report = done.stdout.split("\n{", 1)
    assert "| Set5 | 2 |" in table
    assert json.loads("{" + report)["results"]["bicubic"][0]["num_images"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["some"]


def test_json_is_strict_even_for_an_infinite_psnr(capsys, tmp_path):
    """Was: a bare `Infinity` (a flat image comes back exactly), which strict parsers reject."""
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(tmp_path / "flat" / "grey.png")
    code, out, _ = run(capsys, "--bicubic", tmp_path / "flat", "--json", tmp_path / "r.json")
    assert code == cli.EXIT_OK and "| flat | 1 | inf |" in out

    def no_constants(name):
        raise ValueError(f"not strict JSON: {name}")

    report = json.loads((tmp_path / "r.json").read_text(), parse_constant=no_constants)
    row = report["results"]["bicubic"][0]
    assert row["psnr"] is None and row["images"][0]["psnr"] is None and row["ssim"] == 1.0


def test_a_folder_read_in_part_is_never_a_clean_result(capsys, some, monkeypatch):
    """Was: a sub-folder that could not be read was skipped, and the PSNR of the rest printed
    with exit 0. Now nothing is measured: one line, exit 1."""
    locked = some / "Set5" / "more"
    locked.mkdir()
    Image.open(some / "Set5" / "baby.png").save(locked / "x.png")
    real_scandir = os.scandir

    def scandir(path="."):  # as root ignores folder modes, the refusal is the listing's
        if os.fspath(path) == os.fspath(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, out, err = run(capsys, "--bicubic", some / "Set5")
    assert code == cli.EXIT_FAILED and out == ""
    assert err == (f"srgan-jax evaluate: {locked}: cannot read this folder (Permission denied); "
                   "the images in it were left out\n")


def test_an_empty_model_name_is_refused(capsys, some):
    code, out, err = run(capsys, "--model", "", some / "Set5")
    assert code == cli.EXIT_FAILED and out == ""
    assert err.startswith("srgan-jax evaluate: the model name is empty; ")
