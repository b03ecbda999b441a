"""Controlling a training run from outside: stop requests, the workdir lock, throughput.

* `StopRequest` turns SIGTERM (a scheduler's preemption, `kill`) and Ctrl-C into a flag that the
  loop checks after every compiled call; the loop then saves a checkpoint and returns, and the
  command exits with `cli.EXIT_TERMINATED` or `cli.EXIT_INTERRUPTED` so that a scheduler can tell
  the run did not finish. A second Ctrl-C aborts at once.
* `WorkdirLock` keeps a second run off a workdir that a run is using: two runs writing the same
  checkpoints would silently replace each other's.
* `Throughput` measures steps/s after compilation and turns it into the phase's ETA.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import threading
import time
from typing import Any

import jax
from absl import logging

from srgan_jax import workdirs
from srgan_jax.progress import format_duration

LOCK_FILE = "lock"


class StopRequest:
    """SIGTERM and Ctrl-C as a flag (`requested`, and which signal in `signal_name`).

    Single-process runs only: in a multi-host run, JAX's preemption service catches SIGTERM and
    every host learns of it at the same step through `Checkpointer.reached_preemption`.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}
        self._interruptible = False

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def __enter__(self) -> StopRequest:
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        del frame
        self.signal_name = signal.Signals(signum).name
        logging.warning(
            "%s: saving a checkpoint after this step, then stopping (Ctrl-C again aborts)",
            self.signal_name,
        )
        signal.signal(signal.SIGINT, self._previous[signal.SIGINT])
        if self._interruptible:
            self._interruptible = False
            raise _Interrupted

    def __exit__(self, *exc_info: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def interruptible(self) -> _InterruptibleWork:
        """A context for work that a stop may cut short (validation): a signal during it ends
        it at once, so that the checkpoint is not delayed by it; `requested` is set as usual."""
        return _InterruptibleWork(self)


class _Interrupted(BaseException):
    """Raised by `StopRequest`'s handler inside `interruptible()` work (a BaseException, so that
    the work's own `except Exception` clauses do not stop it)."""


class _InterruptibleWork:
    def __init__(self, stop: StopRequest):
        self.stop = stop

    def __enter__(self) -> None:
        self.stop._interruptible = not self.stop.requested

    def __exit__(self, exc_type: Any, *exc_info: Any) -> bool:
        self.stop._interruptible = False
        return exc_type is _Interrupted


class WorkdirLockedError(RuntimeError):
    """Another live process holds the workdir."""


class WorkdirLock:
    """An advisory lock on `<workdir>/lock` for the whole run, holding the owner's pid and host.

    A second run on the same workdir fails at once with a message naming the holder. A run that
    ends (finished, stopped, or failed with an error) removes the file. The lock is an `flock`,
    which the kernel releases when its process dies, so a run killed with SIGKILL leaves a file
    but no lock: the next run takes it over and says so (stale: dead pid on the same host).
    Remote workdirs (`gs://...`) cannot be flocked and are not locked.
    """

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK_FILE)
        self._file = None

    def __enter__(self) -> WorkdirLock:
        if workdirs.is_remote(self.path):
            logging.warning("%s: remote workdir, not locked against a second run", self.path)
            return self
        while self._file is None:
            file = open(self.path, "a+")  # noqa: SIM115 (held until __exit__)
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                holder = _read_holder(file)
                file.close()
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise WorkdirLockedError(
                    f"{os.path.dirname(self.path)} is in use by another training run "
                    f"({_describe(holder)}); wait for it to finish or use another --workdir"
                ) from None
            if _same_file(file, self.path):
                self._file = file
            else:  # the run that held it removed it as it ended: lock the one there now
                file.close()
        previous = _read_holder(self._file)
        if previous and previous.get("pid") != os.getpid():
            same_host = previous.get("host") == socket.gethostname()
            state = "not running" if same_host and not _alive(previous["pid"]) else "released"
            logging.warning("%s: taking over the lock of %s (%s)", self.path, _describe(previous),
                            state)
        self._file.seek(0)
        self._file.truncate()
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()},
                  self._file)
        self._file.flush()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._file is not None:
            if _same_file(self._file, self.path):
                os.unlink(self.path)  # while still locked, so that no other run holds it
            self._file.close()  # closing releases the flock
            self._file = None


def _same_file(file: Any, path: str) -> bool:
    """Whether the open `file` is still the file at `path` (not removed or replaced)."""
    try:
        here, there = os.fstat(file.fileno()), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _read_holder(file: Any) -> dict[str, Any] | None:
    file.seek(0)
    with contextlib.suppress(ValueError):
        holder = json.loads(file.read() or "null")
        return holder if isinstance(holder, dict) else None
    return None


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "an unknown process"
    return f"pid {holder.get('pid')} on {holder.get('host')}"


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


class Throughput:
    """Steps/s since the phase's first logged step, and the phase's ETA from it."""

    def __init__(self, end_step: int):
        self.end_step = end_step
        self._start: tuple[int, float] | None = None
        self._rate = float("nan")

    def scalars(self, step: int) -> dict[str, float]:
        """`{'steps_per_sec': ...}` at `step` (empty until a rate can be measured)."""
        now = time.perf_counter()
        if self._start is None:  # the first step includes compilation: time from its end
            self._start = (step, now)
        elif step > self._start[0]:
            self._rate = (step - self._start[0]) / (now - self._start[1])
        return {"steps_per_sec": self._rate} if self._rate == self._rate else {}

    def describe(self, step: int) -> str:
        """`0.58 steps/s, phase ETA 1:02:03`, or 'compiled' before a rate is known."""
        if self._rate != self._rate:
            return "compiled"
        eta = (self.end_step - step) / self._rate
        return f"{self._rate:.3g} steps/s, phase ETA {format_duration(eta)}"
