"""Workdir paths: local folders or remote URLs (`gs://bucket/run`), through `etils.epath`.

Everything a run writes under its workdir (checkpoints, TensorBoard events, sample strips) goes
through these `epath.Path`s, as orbax and the flax examples do, so that a Cloud Storage bucket
works like a local folder and a URL is never mistaken for a relative local path.
"""
from __future__ import annotations

import io
import os

import numpy as np
from etils import epath
from PIL import Image


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` is a URL (`gs://...`, `s3://...`) rather than a local path."""
    return "://" in os.fspath(path)


def workdir_path(workdir: str | os.PathLike) -> epath.Path:
    """`workdir` as an `epath.Path`: local paths made absolute (orbax wants that), URLs kept."""
    if is_remote(workdir):
        return epath.Path(workdir)
    return epath.Path(os.path.abspath(os.fspath(workdir)))


def write_png(path: epath.Path, image: np.ndarray) -> None:
    """A uint8 image as a PNG file at `path` (local or remote)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
