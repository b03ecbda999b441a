"""Where a command may write, and how it writes there without losing anything.

Where: never over an input or into an input folder, never over an existing file without
`--overwrite`, never two outputs to one path. Commands check every output path with
`output_problem` before they compute anything, so that a refused output costs nothing and nothing
is half-written. Paths are compared resolved (symlinks followed), so another spelling of an input
is still that input.

How: `write_output` is the one way every command (upscale, export, evaluate, model files) writes a
file. A new file appears whole or not at all, and only if nothing of its name exists at that
moment: a file that appeared after the check (another command writing the same output) is never
replaced without `--overwrite`. Pipes, terminals and character devices (`/dev/stdout`,
`/dev/null`, a FIFO, a symbolic link to one) are written through, never replaced.
"""
from __future__ import annotations

import dataclasses
import errno
import functools
import os
import pathlib
import stat
import sys
import tempfile
from collections.abc import Iterable

TEMPORARY_PREFIX = ".srgan-jax-"  # short and fixed: a name of any legal length can be written
TEMPORARY_SUFFIX = ".tmp"
# Where hard links do not exist (FAT, exFAT, some network shares): claim the name, then rename.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


class OutputExistsError(FileExistsError):
    """An output that exists and may not be replaced; the message names it."""


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What a command reads, resolved: files no output may replace, and folders no output may go
    into (at any depth), as outputs there would change what the command reads next time."""

    files: frozenset[pathlib.Path]
    folders: frozenset[pathlib.Path]

    @classmethod
    def of(cls, paths: Iterable[str | os.PathLike]) -> Inputs:
        """The inputs named by `paths`: folders are protected as folders, anything else as files."""
        resolved = [pathlib.Path(p).resolve() for p in paths]
        return cls(frozenset(p for p in resolved if not p.is_dir()),
                   frozenset(p for p in resolved if p.is_dir()))


def target_kind(target: str | os.PathLike) -> str:
    """What `target` is, through any symbolic links: 'missing', 'file', 'folder', 'stream' (a
    pipe, a terminal or another character device, or this process's own stdout or stderr:
    written into, never replaced), 'dangling link', or 'other' (a socket, a block device)."""
    try:
        status = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        return "dangling link" if os.path.islink(target) else "missing"
    if stat.S_ISDIR(status.st_mode):
        return "folder"
    if (stat.S_ISFIFO(status.st_mode) or stat.S_ISCHR(status.st_mode)
            or _own_stream(status) is not None):
        return "stream"
    return "file" if stat.S_ISREG(status.st_mode) else "other"


def output_problem(
    target: str | os.PathLike, inputs: Inputs, taken: set[pathlib.Path], *, overwrite: bool
) -> str | None:
    """Why `target` must not be written, or None when it may (it is then added to `taken`).

    `taken` holds the resolved outputs already planned. An input is never replaced, even with
    `overwrite`; an existing file only with it; an existing folder, or anything that is neither a
    file nor a stream (see `target_kind`), never; a stream needs no `overwrite`.
    """
    resolved = pathlib.Path(target).resolve()
    if resolved in inputs.files:
        return f"{target} would overwrite an input"
    folder = next((f for f in inputs.folders if resolved.is_relative_to(f)), None)
    if folder is not None:
        return f"{target} is inside the input folder {folder}"
    if resolved in taken:
        return f"{target} is also the path of another output"
    kind = target_kind(target)
    if kind == "folder" or resolved.is_dir():
        return f"{target} is an existing folder"
    if kind == "other":
        return f"{target} is neither a file nor a stream (a socket or block device?)"
    if kind in ("file", "dangling link") and not overwrite:
        return f"{target} exists (pass --overwrite to replace it)"
    blocking = next((p for p in resolved.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        return f"{target} cannot be written: {blocking} is a file, not a folder"
    taken.add(resolved)
    return None


def write_output(target: str | os.PathLike, data: bytes, *, overwrite: bool) -> None:
    """Writes `data` to the file `target` so that nothing is lost, even when commands race.

    The bytes go to a temporary file in the target's folder, which then becomes `target` in one
    step: a hard link that fails if anything of that name exists (`OutputExistsError`), or with
    `overwrite` a rename over an existing file (through a symbolic link: over the file it points
    to, keeping the link). Streams (`target_kind`) get the bytes directly. Other failures raise
    `OSError` naming `target`, never the temporary file, which is always removed.
    """
    name = os.fspath(target)
    kind = target_kind(name)
    if kind == "stream":
        _write_through(name, data)
        return
    if kind in ("folder", "other"):
        what = "a folder" if kind == "folder" else "a socket or block device"
        raise OSError(f"{name}: cannot write: it is {what}, not a file")
    if kind != "missing" and not overwrite:
        raise _exists(name)
    final = os.path.realpath(name) if overwrite else os.path.abspath(name)
    folder = os.path.dirname(final)
    try:
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=TEMPORARY_PREFIX,
                                                 suffix=TEMPORARY_SUFFIX)
    except OSError as error:
        raise _naming(error, name) from error
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.chmod(temporary, _file_mode())
        if overwrite:
            os.replace(temporary, final)
        else:
            _create_exclusively(temporary, final, name)
    except OutputExistsError:
        raise
    except OSError as error:
        raise _naming(error, name) from error
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)


def _create_exclusively(temporary: str, final: str, name: str) -> None:
    """`temporary` becomes `final` unless something of that name exists (then it is kept)."""
    try:
        os.link(temporary, final)
    except FileExistsError:
        raise _exists(name) from None
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
        try:
            os.close(os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            raise _exists(name) from None
        os.replace(temporary, final)  # over the empty file this command just created


def _exists(name: str) -> OutputExistsError:
    return OutputExistsError(f"{name} exists; it was kept (pass --overwrite to replace it)")


def _write_through(name: str, data: bytes) -> None:
    """`data` into a pipe or device, or after what this process wrote to its own stdout/stderr
    (opening `/dev/stdout` again would truncate a file the shell redirected it to)."""
    descriptor = _own_stream(os.stat(name))
    if descriptor is None:
        with open(name, "wb") as file:
            file.write(data)
        return
    (sys.stdout if descriptor == 1 else sys.stderr).flush()
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]


def _own_stream(status: os.stat_result) -> int | None:
    """1 or 2 if `status` is the file this process's stdout or stderr writes to."""
    for descriptor in (1, 2):
        try:
            own = os.fstat(descriptor)
        except OSError:
            continue
        if (own.st_dev, own.st_ino) == (status.st_dev, status.st_ino):
            return descriptor
    return None


def _naming(error: OSError, name: str) -> OSError:
    """`error` as an OSError whose message names the output, not a temporary file."""
    if error.errno == errno.ENOENT:
        reason = f"the folder {os.path.dirname(os.path.abspath(name))} does not exist"
    else:
        reason = error.strerror or str(error)
    return type(error)(f"{name}: cannot write ({reason})")  # FileNotFoundError stays one


@functools.cache
def _file_mode() -> int:
    """Permission bits of a newly created file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
