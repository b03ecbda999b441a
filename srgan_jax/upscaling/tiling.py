"""Seamless tiled inference for fully convolutional upscalers: crop-and-stitch, streamed from host.

A tile's border pixels see zero padding where the full image would have real neighbours, and that
difference spreads inwards by the network's receptive-field radius. Pixels further than that radius
from every tile edge that is not an image edge are therefore *exactly* what the untiled network
computes (eval-mode BN makes the net translation-equivariant), so tiles overlap by a margin of at
least the radius on each side and only their centres are kept. No feathered blending is needed,
and the tiled result equals the untiled one up to float rounding.

Tiles never extend past the image: the last tile of a row or column is shifted back to end at the
image edge, so every tile of an image has the same shape (one compilation) and no tile contains
padding that the untiled network would not see. Edge tiles are therefore never padded (padding
would change what the network sees at the image border and break the equality).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np


def receptive_field_radius(num_blocks: int, scale: int) -> int:
    """LR pixels on each side that one SRResNet output pixel depends on (rounded up).

    Counted in HR pixels: at LR resolution the k9 head (4), two k3 convs per residual block, the
    k3 conv after the blocks (1); then one k3 conv per x2 upsampling stage at its own resolution
    (1 pixel there is scale / 2**i HR pixels); then the k9 tail at HR resolution (4).
    """
    stages = int(math.log2(scale))
    hr_radius = (4 + 2 * num_blocks + 1) * scale + sum(scale >> i for i in range(stages)) + 4
    return math.ceil(hr_radius / scale)


class Span(NamedTuple):
    """One tile along one axis: read [start, stop) of the input, keep [keep_start, keep_stop)."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int


def split_axis(length: int, tile: int, overlap: int) -> list[Span]:
    """Covers [0, length) with equal windows of at most `tile` pixels whose kept parts partition it.

    Uses the fewest windows possible, each shrunk to the size that just covers the axis (a 3000
    pixel axis in tiles of at most 715 with overlap 40 takes 5 windows of 664, not 5 of 715).
    Neighbouring windows overlap by at least 2 * `overlap`, and every kept pixel is at least
    `overlap` pixels away from any window edge that is not an image edge.
    """
    if length < 1:
        raise ValueError(f"cannot tile an axis of length {length}")
    if length <= tile:
        return [Span(0, length, 0, length)]
    if tile <= 2 * overlap:
        raise ValueError(
            f"tile size {tile} must be larger than twice the tile overlap ({overlap}) "
            "so that each tile keeps some pixels"
        )
    count = math.ceil((length - 2 * overlap) / (tile - 2 * overlap))
    stride = math.ceil((length - 2 * overlap) / count)
    tile = stride + 2 * overlap
    starts = [min(i * stride, length - tile) for i in range(count)]
    # Cut between neighbours in the middle of their shared valid region, which is never empty:
    # start[i+1] + overlap <= start[i] + tile - overlap because start[i+1] - start[i] <= stride.
    cuts = [0]
    cuts += [(starts[i + 1] + starts[i] + tile) // 2 for i in range(count - 1)]
    cuts += [length]
    return [Span(s, s + tile, cuts[i], cuts[i + 1]) for i, s in enumerate(starts)]


class Tile(NamedTuple):
    """A 2-D tile: input window rows/cols and the window-relative slice of its output to keep."""

    rows: Span
    cols: Span


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Row-major tiles of a `height` x `width` image, all of one shape of at most tile x tile."""
    return [
        Tile(rows, cols)
        for rows in split_axis(height, tile, overlap)
        for cols in split_axis(width, tile, overlap)
    ]


def upscale_tiled(
    run: Callable[[np.ndarray], object],
    image: np.ndarray,
    scale: int,
    tile: int,
    overlap: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Upscales a host (H, W, C) image tile by tile into a host (sH, sW, C') array.

    `run` maps a [1, h, w, C] host tile to a [1, sh, sw, C'] array (typically a device array
    still being computed: the next tile is dispatched before the previous result is copied back,
    so transfers and compute overlap). Only one or two tiles live on the device at a time.
    `out`, if given, receives the result; otherwise it is allocated.
    """
    height, width = image.shape[:2]
    pending: list[tuple[Tile, object]] = []
    for t in plan_tiles(height, width, tile, overlap):
        window = image[np.newaxis, t.rows.start : t.rows.stop, t.cols.start : t.cols.stop]
        pending.append((t, run(window)))
        if len(pending) > 1:
            out = _store(*pending.pop(0), scale, (height, width), out)
    for t, result in pending:
        out = _store(t, result, scale, (height, width), out)
    return out


def _store(
    t: Tile, result: object, scale: int, lr_shape: tuple[int, int], out: np.ndarray | None
) -> np.ndarray:
    """Copies the kept part of one tile's output into `out` (allocated on first use)."""
    result = np.asarray(result)[0]
    if out is None:
        out = np.empty((lr_shape[0] * scale, lr_shape[1] * scale, result.shape[-1]), result.dtype)
    r, c = t.rows, t.cols
    out[r.keep_start * scale : r.keep_stop * scale, c.keep_start * scale : c.keep_stop * scale] = (
        result[
            (r.keep_start - r.start) * scale : (r.keep_stop - r.start) * scale,
            (c.keep_start - c.start) * scale : (c.keep_stop - c.start) * scale,
        ]
    )
    return out
