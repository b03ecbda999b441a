"""Seamless tiled inference for fully convolutional upscalers: crop-and-stitch, streamed from host.

A tile's border pixels see padding where the full image would have real neighbours, and that
difference spreads inwards by the network's receptive-field radius. Pixels further than that radius
from every tile edge that is not an image edge are therefore *exactly* what the untiled network
computes (eval-mode BN makes the net translation-equivariant), so tiles overlap by a margin of at
least the radius on each side and only their centres are kept. No feathered blending is needed,
and the tiled result equals the untiled one up to float rounding.

Tiles never extend past the image: the last tile of a row or column is shifted back to end at the
image edge, so every tile of an image has the same shape (one compilation). The image itself may
carry a `margin` of padding on each side (`srgan_jax.upscaling.inference` adds the receptive field
of mirrored pixels, so that the image's own border sees image-like context): its output is not
kept, and tiles that would keep only margin are never run.
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


def check_tile(tile: int | None, overlap: int) -> None:
    """Raises `ValueError` unless `tile` (None: automatic) and `overlap` can tile an image."""
    if overlap < 0:
        raise ValueError(f"the tile overlap must be >= 0, got {overlap}")
    if tile is not None and tile <= 2 * overlap:
        raise ValueError(
            f"the tile size {tile} must be larger than twice the tile overlap ({overlap}) "
            "so that each tile keeps some pixels"
        )


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
    check_tile(tile, overlap)
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


def plan_tiles(height: int, width: int, tile: int, overlap: int, margin: int = 0) -> list[Tile]:
    """Row-major tiles of a `height` x `width` image, all of one shape of at most tile x tile.

    Tiles that would keep only pixels of the `margin` around the image are left out, and kept
    parts are clipped to the image within the margin.
    """
    def inside(length: int) -> list[Span]:
        spans = []
        for span in split_axis(length, tile, overlap):
            start, stop = max(span.keep_start, margin), min(span.keep_stop, length - margin)
            if start < stop:
                spans.append(span._replace(keep_start=start, keep_stop=stop))
        return spans

    return [Tile(rows, cols) for rows in inside(height) for cols in inside(width)]


def upscale_tiled(
    run: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    scale: int,
    tile: int,
    overlap: int,
    out: np.ndarray,
    *,
    margin: int = 0,
    on_tile: Callable[[], None] | None = None,
) -> np.ndarray:
    """Upscales a host (H, W, C) image tile by tile into `out`, its (s(H - 2m), s(W - 2m), C')
    output without the `margin` m.

    `run` maps a [1, h, w, C] host tile to a [1, sh, sw, C'] array; it may return before the result
    is computed (a device array), so the next tile is dispatched before the previous result is
    copied back and transfers and compute overlap. Only one or two tiles live on the device at a
    time. `on_tile()` is called after each tile is stored.
    """
    height, width = image.shape[:2]
    pending: list[tuple[Tile, np.ndarray]] = []
    for t in plan_tiles(height, width, tile, overlap, margin):
        window = image[np.newaxis, t.rows.start : t.rows.stop, t.cols.start : t.cols.stop]
        pending.append((t, run(window)))
        if len(pending) > 1:
            _store(*pending.pop(0), scale, margin, out, on_tile)
    for t, result in pending:
        _store(t, result, scale, margin, out, on_tile)
    return out


def _store(
    t: Tile, result: np.ndarray, scale: int, margin: int, out: np.ndarray,
    on_tile: Callable[[], None] | None,
) -> None:
    """Copies the kept part of one tile's output into `out`."""
    result = np.asarray(result)[0]
    r, c = t.rows, t.cols
    out[(r.keep_start - margin) * scale : (r.keep_stop - margin) * scale,
        (c.keep_start - margin) * scale : (c.keep_stop - margin) * scale] = result[
        (r.keep_start - r.start) * scale : (r.keep_stop - r.start) * scale,
        (c.keep_start - c.start) * scale : (c.keep_stop - c.start) * scale,
    ]
    if on_tile is not None:
        on_tile()
