"""Output paths: never an input, never into an input folder, existing files only on request."""
import os

import pytest

from srgan_jax.output_paths import Inputs, output_problem


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "Set5" / "sub").mkdir(parents=True)
    (tmp_path / "Set5" / "baby.png").write_bytes(b"x")
    (tmp_path / "model.msgpack").write_bytes(b"m")
    (tmp_path / "old.json").write_text("{}")
    (tmp_path / "afile").write_text("")
    os.symlink(tmp_path / "Set5", tmp_path / "link")
    return tmp_path


def test_outputs_never_replace_or_enter_inputs(tree):
    inputs = Inputs.of([tree / "Set5", tree / "model.msgpack"])
    assert inputs.folders == {tree / "Set5"} and inputs.files == {tree / "model.msgpack"}
    for overwrite in (False, True):
        def problem(target, overwrite=overwrite):
            return output_problem(target, inputs, set(), overwrite=overwrite)

        assert problem(tree / "model.msgpack") == (
            f"{tree / 'model.msgpack'} would overwrite an input")
        assert problem(tree / "Set5" / "baby.png") == (
            f"{tree / 'Set5' / 'baby.png'} is inside the input folder {tree / 'Set5'}")
        assert "inside the input folder" in problem(tree / "Set5" / "sub" / "new" / "x.png")
        assert "inside the input folder" in problem(tree / "link" / "baby.png")  # symlink to Set5
        assert "is an existing folder" in problem(tree / "sub_is_free" / ".." / "Set5" / "..")
        assert problem(tree / "afile" / "x.json") == (
            f"{tree / 'afile' / 'x.json'} cannot be written: {tree / 'afile'} is a file, "
            "not a folder")


def test_existing_files_only_with_overwrite_and_each_path_once(tree):
    inputs = Inputs.of([tree / "Set5"])
    taken = set()
    assert output_problem(tree / "old.json", inputs, taken, overwrite=False) == (
        f"{tree / 'old.json'} exists (pass --overwrite to replace it)")
    assert taken == set()
    assert output_problem(tree / "old.json", inputs, taken, overwrite=True) is None
    assert output_problem(tree / "new" / "a.md", inputs, taken, overwrite=False) is None
    assert taken == {tree / "old.json", tree / "new" / "a.md"}
    assert output_problem(tree / "new" / ".." / "old.json", inputs, taken, overwrite=True) == (
        f"{tree / 'new' / '..' / 'old.json'} is also the path of another output")
