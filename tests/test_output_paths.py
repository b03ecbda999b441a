"""Output paths: never an input, never into an input folder, existing files only on request;
writes that are exclusive, atomic, and go into streams rather than replace them."""
import errno
import os
import socket
import stat
import subprocess
import sys
import threading

import pytest

from srgan_jax import output_paths
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


# --- write_output: exclusive, atomic, streams written through (issue 24) ----------------------

def test_a_file_that_appears_after_the_check_is_kept(tmp_path, monkeypatch):
    """Was: existence checked while planning, then os.replace clobbered a file another command
    wrote meanwhile. The race, made deterministic: the check sees nothing, then the file is
    there when the output is linked into place."""
    target = tmp_path / "photo_x4.png"
    real_kind = output_paths.target_kind

    def checked_before_the_other_command_wrote(path):
        target.write_bytes(b"the other run's output")
        return real_kind(path) and "missing"

    monkeypatch.setattr(output_paths, "target_kind", checked_before_the_other_command_wrote)
    with pytest.raises(output_paths.OutputExistsError) as error:
        output_paths.write_output(target, b"this run's output", overwrite=False)
    assert str(error.value) == (f"{target} exists; it was kept (pass --overwrite to replace it)")
    assert target.read_bytes() == b"the other run's output"
    assert os.listdir(tmp_path) == ["photo_x4.png"]  # no temporary file left behind


def test_without_hard_links_the_name_is_still_claimed_exclusively(tmp_path, monkeypatch):
    """FAT/exFAT and some shares have no hard links: the name is created exclusively first."""
    def no_links(source, target):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    output_paths.write_output(tmp_path / "new.json", b"{}", overwrite=False)
    assert (tmp_path / "new.json").read_bytes() == b"{}"
    with pytest.raises(output_paths.OutputExistsError):
        output_paths.write_output(tmp_path / "new.json", b"[]", overwrite=False)
    assert (tmp_path / "new.json").read_bytes() == b"{}"
    assert os.listdir(tmp_path) == ["new.json"]


def test_overwrite_through_a_symbolic_link_keeps_the_link(tmp_path):
    (tmp_path / "real.json").write_text("old")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    output_paths.write_output(tmp_path / "link.json", b"new", overwrite=True)
    assert (tmp_path / "link.json").is_symlink() and (tmp_path / "real.json").read_text() == "new"


def test_a_name_of_the_longest_legal_length_can_be_written(tmp_path):
    """Was: the temporary name added 14 characters to the target's, past NAME_MAX (255)."""
    target = tmp_path / ("x" * 249 + ".json")
    output_paths.write_output(target, b"{}", overwrite=False)
    assert target.read_bytes() == b"{}" and os.listdir(tmp_path) == [target.name]


def test_a_missing_folder_is_named_not_the_temporary_file(tmp_path):
    target = tmp_path / "missing" / "model.msgpack"
    with pytest.raises(FileNotFoundError) as error:
        output_paths.write_output(target, b"m", overwrite=False)
    assert str(error.value) == (f"{target}: cannot write (the folder {tmp_path / 'missing'} "
                                "does not exist)")


def test_a_fifo_and_a_link_to_it_are_written_into_never_replaced(tmp_path):
    fifo, link = tmp_path / "fifo", tmp_path / "report.json"
    os.mkfifo(fifo)
    link.symlink_to(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert output_paths.output_problem(link, Inputs.of([]), set(), overwrite=False) is None
    output_paths.write_output(link, b"results", overwrite=False)
    reader.join(timeout=10)
    assert received == [b"results"]
    assert link.is_symlink() and stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(os.listdir(tmp_path)) == ["fifo", "report.json"]


def test_sockets_are_never_written(tmp_path):
    path = tmp_path / "s.json"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        assert output_paths.output_problem(path, Inputs.of([]), set(), overwrite=True) == (
            f"{path} is neither a file nor a stream (a socket or block device?)")
        with pytest.raises(OSError) as error:
            output_paths.write_output(path, b"x", overwrite=True)
        assert str(error.value) == (f"{path}: cannot write: it is a socket or block device, "
                                    "not a file")
        assert stat.S_ISSOCK(path.stat().st_mode)


_WRITE_TO_OWN_STDOUT = (
    "import sys; from srgan_jax.output_paths import write_output\n"
    "print('table', flush=True)\n"
    "write_output(sys.argv[1], b'{\"json\": 1}\\n', overwrite=False)\n"
)


def test_own_stdout_is_written_into_after_what_was_printed(tmp_path):
    """`--json /dev/stdout | cat` replaced the /dev/stdout link itself (as root, the system's);
    `> file` must not be truncated either. /proc/self/fd/1 is the same stream as /dev/stdout."""
    piped = subprocess.run([sys.executable, "-c", _WRITE_TO_OWN_STDOUT, "/proc/self/fd/1"],
                           capture_output=True, check=True)
    assert piped.stdout == b'table\n{"json": 1}\n'
    redirected = tmp_path / "out.txt"
    with open(redirected, "wb") as stdout:
        subprocess.run([sys.executable, "-c", _WRITE_TO_OWN_STDOUT, "/proc/self/fd/1"],
                       stdout=stdout, check=True)
    assert redirected.read_bytes() == b'table\n{"json": 1}\n'
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]
