"""Where a command may write: never over an input or into an input folder, never over an existing
file without `--overwrite`, never two outputs to one path.

Commands check every output path with `output_problem` before they compute anything, so that a
refused output costs nothing and nothing is half-written. Paths are compared resolved (symlinks
followed), so another spelling of an input is still that input.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Iterable


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


def output_problem(
    target: str | os.PathLike, inputs: Inputs, taken: set[pathlib.Path], *, overwrite: bool
) -> str | None:
    """Why `target` must not be written, or None when it may (it is then added to `taken`).

    `taken` holds the resolved outputs already planned. An input is never replaced, even with
    `overwrite`; an existing file only with it; an existing folder never.
    """
    resolved = pathlib.Path(target).resolve()
    if resolved in inputs.files:
        return f"{target} would overwrite an input"
    folder = next((f for f in inputs.folders if resolved.is_relative_to(f)), None)
    if folder is not None:
        return f"{target} is inside the input folder {folder}"
    if resolved in taken:
        return f"{target} is also the path of another output"
    if resolved.is_dir():
        return f"{target} is an existing folder"
    if resolved.exists() and not overwrite:
        return f"{target} exists (pass --overwrite to replace it)"
    blocking = next((p for p in resolved.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        return f"{target} cannot be written: {blocking} is a file, not a folder"
    taken.add(resolved)
    return None
