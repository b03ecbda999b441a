"""Run control: the workdir lock that keeps two trainings apart, and the stop request."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from srgan_jax.training import run_control


def test_second_run_on_a_workdir_fails_naming_the_holder(tmp_path):
    with run_control.WorkdirLock(str(tmp_path)):
        holder = json.loads((tmp_path / "lock").read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(run_control.WorkdirLockedError) as caught:
            run_control.WorkdirLock(str(tmp_path)).__enter__()
        assert f"pid {os.getpid()} on {socket.gethostname()}" in str(caught.value)
        assert str(tmp_path) in str(caught.value)
    with run_control.WorkdirLock(str(tmp_path)):  # released on exit: the next run may start
        pass


def test_lock_of_a_killed_run_is_taken_over_with_a_warning(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    holder = {"pid": int(dead.stdout), "host": socket.gethostname()}
    (tmp_path / "lock").write_text(json.dumps(holder))
    with caplog.at_level("WARNING"), run_control.WorkdirLock(str(tmp_path)):
        assert json.loads((tmp_path / "lock").read_text())["pid"] == os.getpid()
    assert "not running" in caplog.text and f"pid {int(dead.stdout)}" in caplog.text


def test_lock_held_by_another_process(tmp_path):
    """flock is per process: a child holding the lock makes this process's attempt fail."""
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from srgan_jax.training import run_control\n"
         f"with run_control.WorkdirLock({str(tmp_path)!r}):\n"
         "    print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(run_control.WorkdirLockedError, match=f"pid {child.pid}"):
            run_control.WorkdirLock(str(tmp_path)).__enter__()
    finally:
        child.kill()
        child.wait()
    with run_control.WorkdirLock(str(tmp_path)):  # the kernel released the dead child's lock
        pass


def test_a_run_that_ends_removes_its_lock(tmp_path, caplog):
    """Was: the file stayed, and every later run warned 'taking over the lock of pid N (not
    running)'. Only a killed run leaves it (test above)."""
    with caplog.at_level("WARNING"):
        with run_control.WorkdirLock(str(tmp_path)):
            assert (tmp_path / "lock").is_file()
        assert not (tmp_path / "lock").exists()
        with pytest.raises(RuntimeError), run_control.WorkdirLock(str(tmp_path)):
            raise RuntimeError("a run that fails ends too")
        assert not (tmp_path / "lock").exists()
        with run_control.WorkdirLock(str(tmp_path)):
            pass
    assert caplog.text == ""


def test_a_stop_during_interruptible_work_ends_it_at_once():
    """Validation is such work: a SIGTERM during it must not wait for its end to save."""
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with run_control.StopRequest() as stop:
            done = []
            with stop.interruptible():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("the rest of the work")
            assert stop.signal_name == "SIGTERM" and done == []
            with stop.interruptible():  # once stopping, nothing is cut short (the save)
                done.append("ran")
            assert done == ["ran"]
    finally:
        signal.signal(signal.SIGINT, outer)
