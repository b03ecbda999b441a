"""Seamless tiled inference for fully convolutional upscalers: crop-and-stitch, streamed from host.

A tile's border pixels see padding where the full image would have real neighbours, and that
difference spreads inwards by the network's receptive-field radius. Pixels further than that radius
from every tile edge that is not an image edge are therefore *exactly* what the untiled network
computes (eval-mode BN makes the net translation-equivariant), so each tile keeps only its centre,
`tile` pixels a side (Real-ESRGAN's `--tile`), and is read with an `overlap` (`--tile_pad`) of at
least the radius on each side. No feathered blending is needed, and the tiled result equals the
untiled one up to float rounding. Tiling costs only the overlap: a tile computes
(tile + 2 * overlap)^2 pixels to keep tile^2, or fewer.

An axis is cut into the fewest kept parts of at most `tile` pixels, all of one size (a 640-pixel
axis in tiles of at most 512 keeps 320 + 320, not 512 + 128), so every window of an image has
the same shape, one compilation serves all its tiles, and no window computes more than its own
overlap: the last one is shifted back to end at the image edge rather than cut short. The image
itself may carry a `margin` of padding on each side (`srgan_jax.upscaling.inference` adds the
receptive field of mirrored pixels, so that the image's own border sees image-like context): it
is read as context, and its output is never kept.
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
    if tile is not None and tile < 1:
        raise ValueError(f"the tile size must be at least 1 pixel, got {tile}")


def window_side(tile: int, overlap: int) -> int:
    """The pixels a tile reads along each axis: what it keeps and its overlap on both sides."""
    return tile + 2 * overlap


def split_axis(length: int, tile: int, overlap: int, margin: int = 0) -> list[Span]:
    """Covers [margin, length - margin) with the fewest kept parts of at most `tile` pixels, of
    equal size (the last may be a pixel or so shorter), each inside a window of
    `window_side(part, overlap)` pixels (the whole axis when it is not longer), so that every kept
    pixel has `overlap` pixels of context on both sides, or the axis' end. All windows have one
    size: the last is shifted back to end at the axis' end.
    """
    check_tile(tile, overlap)
    inner = length - 2 * margin
    if inner < 1:
        raise ValueError(f"cannot tile an axis of length {length} with a margin of {margin}")
    part = math.ceil(inner / math.ceil(inner / tile))
    window = window_side(part, overlap)
    if length <= window:
        return [Span(0, length, margin, length - margin)]
    spans = []
    for keep_start in range(margin, length - margin, part):
        start = min(max(keep_start - overlap, 0), length - window)
        spans.append(Span(start, start + window, keep_start, min(keep_start + part,
                                                                  length - margin)))
    return spans


class Tile(NamedTuple):
    """A 2-D tile: input window rows/cols and the window-relative slice of its output to keep."""

    rows: Span
    cols: Span


def plan_tiles(height: int, width: int, tile: int, overlap: int, margin: int = 0) -> list[Tile]:
    """Row-major tiles of a `height` x `width` image (`split_axis` on each axis), all of one
    shape, keeping every pixel inside the `margin` exactly once."""
    rows, cols = (split_axis(length, tile, overlap, margin) for length in (height, width))
    return [Tile(r, c) for r in rows for c in cols]


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
    output without the `margin` m; `tile` is the side each tile keeps (see `split_axis`).

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
