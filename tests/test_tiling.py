"""Tiling: the geometry, the receptive field it relies on, and tiled == untiled on a real model."""
import jax.numpy as jnp
import numpy as np
import pytest
from fake_models import TINY, random_variables

from srgan_jax.models import ModelConfig
from srgan_jax.upscaling.inference import Upscaler
from srgan_jax.upscaling.tiling import plan_tiles, receptive_field_radius, split_axis, upscale_tiled


@pytest.fixture(scope="module")
def upscaler() -> Upscaler:
    return Upscaler(random_variables(TINY, seed=1), TINY)


@pytest.mark.parametrize(
    "length, tile, overlap, margin",
    [(10, 16, 3, 0), (16, 10, 3, 3), (17, 10, 3, 0), (100, 30, 12, 12), (101, 25, 12, 12),
     (257, 64, 0, 0), (5, 3, 1, 0), (100, 7, 12, 12), (90, 20, 15, 5)],
)
def test_split_axis_keeps_tile_pixels_per_window_with_context(length, tile, overlap, margin):
    """`tile` is what each window keeps (Real-ESRGAN's --tile), read with `overlap` on both sides:
    the fewest windows, all of one size, each pixel inside the margin kept once, with `overlap`
    pixels of context on each side or the axis' end."""
    spans = split_axis(length, tile, overlap, margin)
    inner = length - 2 * margin
    count = -(-inner // tile)  # the fewest parts of at most `tile`
    window = min(-(-inner // count) + 2 * overlap, length)  # equal parts, read with overlap
    assert {span.stop - span.start for span in spans} == {window}  # one compiled shape
    assert len(spans) == (1 if length <= window else count)
    kept = np.zeros(length, int)
    for span in spans:
        assert 0 <= span.start < span.stop <= length
        assert span.start <= span.keep_start < span.keep_stop <= span.stop
        assert span.keep_stop - span.keep_start <= max(tile, inner)
        kept[span.keep_start : span.keep_stop] += 1
        assert span.keep_start - span.start >= overlap or span.start == 0
        assert span.stop - span.keep_stop >= overlap or span.stop == length
    np.testing.assert_array_equal(kept[margin : length - margin], 1)
    assert not kept[:margin].any() and not kept[length - margin :].any()


def test_tiles_cost_only_their_overlap():
    """Was: --tile 100 on the shipped model (overlap 40) kept 20 pixels a side of each 100 and
    computed 12x the untiled pixels (42 s against 4 s on a 200x150 photo). Now a tile keeps at
    most 100 and reads 40 more on each side: 2 x 2 windows of 155 x 180 for 150 x 200."""
    margin = overlap = 40
    tiles = plan_tiles(150 + 2 * margin, 200 + 2 * margin, 100, overlap, margin)
    assert {(t.rows.stop - t.rows.start, t.cols.stop - t.cols.start) for t in tiles} == {
        (75 + 80, 100 + 80)}
    untiled = (150 + 2 * margin) * (200 + 2 * margin)
    assert len(tiles) == 4 and 4 * 155 * 180 / untiled < 1.8
    assert [t.rows.keep_stop - t.rows.keep_start for t in tiles[::2]] == [75, 75]


def test_split_axis_rejects_impossible_tiles():
    with pytest.raises(ValueError, match="at least 1 pixel"):
        split_axis(100, 0, 10)
    with pytest.raises(ValueError, match="overlap must be >= 0"):
        split_axis(100, 20, -1)
    assert split_axis(20, 20, 10) == [(0, 20, 0, 20)]  # fits in one window: the whole axis


def test_plan_tiles_covers_the_image_once():
    cover = np.zeros((70, 45), int)
    for t in plan_tiles(70, 45, 32, 5):
        cover[t.rows.keep_start : t.rows.keep_stop, t.cols.keep_start : t.cols.keep_stop] += 1
    np.testing.assert_array_equal(cover, 1)


@pytest.mark.parametrize("config", [TINY, ModelConfig(num_blocks=1, channels=8, scale=2)])
def test_receptive_field_radius_is_the_measured_one(config):
    """Perturbing one LR pixel changes exactly the HR pixels within the radius (and no others)."""
    variables, model = random_variables(config, seed=2), config.generator()
    size, centre = 36, 18  # the reach (<= 12) stays inside the image
    image = np.random.default_rng(0).uniform(0.2, 0.8, (size, size, 3)).astype(np.float32)

    def forward(lr):  # the module itself: no padding, no clipping
        return np.asarray(model.apply(variables, jnp.asarray(lr[None]), train=False))[0]

    base = forward(image)
    image[centre, centre] += 0.2
    changed = (forward(image) != base).any(-1)
    rows = np.flatnonzero(changed.any(1))
    s = config.scale
    reach = max(centre * s - rows.min(), rows.max() - (centre * s + s - 1))  # in HR pixels
    radius = receptive_field_radius(config.num_blocks, config.scale)
    assert radius - 1 < reach / s <= radius


@pytest.mark.parametrize("tile", [7, 30, 41, 64])
def test_tiled_equals_untiled(upscaler, tile):
    image = np.random.default_rng(3).random((70, 93, 3), dtype=np.float32)
    untiled = upscaler(image)
    tiled = upscaler(image, tile=tile)
    assert tiled.shape == untiled.shape == (280, 372, 3)
    assert np.abs(tiled - untiled).max() < 1e-4


def test_too_small_overlap_shows_seams(upscaler):
    """The check above can fail: with less context than the receptive field, tiles differ."""
    image = np.random.default_rng(3).random((70, 93, 3), dtype=np.float32)
    tiled = upscaler(image, tile=30, tile_overlap=upscaler.receptive_field - 3)
    assert np.abs(tiled - upscaler(image)).max() > 1e-3


def test_tiled_equals_untiled_bfloat16(upscaler):
    """Against the float32 result, tiled bfloat16 is as close as untiled bfloat16 is, give or take
    one bfloat16 rounding step of the output (2^-8 of [0, 1]): a window's shape may change the
    order of its sums. A tiling error shows above that (an overlap 3 short: 1.5e-2 against
    6.5e-3 + 3.9e-3 here), where the old mean error of 2e-2 let any one seam through."""
    image = np.random.default_rng(4).random((50, 61, 3), dtype=np.float32)
    float32 = upscaler(image)
    bf16 = upscaler.with_dtype("bfloat16")
    own_error = np.abs(bf16(image) - float32).max()
    assert 0 < own_error < 2 / 255  # bfloat16 really computed, to about a level of 255
    assert np.abs(bf16(image, tile=32) - float32).max() <= own_error + 2.0**-8


@pytest.mark.parametrize("margin", [0, 6])
def test_only_tiles_reach_the_model(margin):
    """Streaming: the model sees fixed-shape windows, never the whole image; a padding `margin`
    around the image is read as context but not kept."""
    seen = []

    def run(window):
        seen.append(window.shape)
        return np.repeat(np.repeat(window, 2, axis=1), 2, axis=2)  # nearest-neighbour x2

    image = np.random.default_rng(5).random((50, 77, 3), dtype=np.float32)
    inner = image[margin : 50 - margin, margin : 77 - margin]
    out = np.full((2 * inner.shape[0], 2 * inner.shape[1], 3), np.nan, np.float32)
    upscale_tiled(run, image, scale=2, tile=20, overlap=4, out=out, margin=margin)
    assert len(set(seen)) == 1 and len(seen) == len(plan_tiles(50, 77, 20, 4, margin))
    assert max(seen[0][1:3]) <= 20 + 2 * 4  # at most `tile` kept, `overlap` read on each side
    np.testing.assert_array_equal(out, np.repeat(np.repeat(inner, 2, axis=0), 2, axis=1))


def test_tiles_of_only_margin_are_not_run():
    """With a margin, no window is spent on keeping margin pixels only."""
    full, trimmed = plan_tiles(100, 100, 20, 2), plan_tiles(100, 100, 20, 2, margin=30)
    assert len(trimmed) < len(full)
    for t in trimmed:
        assert 30 <= t.rows.keep_start < t.rows.keep_stop <= 70


def test_all_tiles_of_an_image_share_one_compilation(upscaler):
    """12 tiles, one window shape: one executable, never one per tile (edge tiles included)."""
    from srgan_jax.upscaling.inference import _forward

    image = np.random.default_rng(6).random((61, 47, 3), np.float32)
    compiled = _forward._cache_size()
    tiled = upscaler(image, tile=17)
    assert _forward._cache_size() - compiled == 1
    assert len(plan_tiles(61 + 24, 47 + 24, 17, 12, 12)) == 12
    assert np.abs(tiled - upscaler(image)).max() < 1e-4
