"""input_pipeline and demo_data: sources, bad input, aligned crops, determinism, resume, sharding.

Crops are checked against images whose pixels encode their own coordinates, so where a crop came
from (and which flip/rotation it got) is read off its values; LR is recomputed with `degrade`.
"""
import os
import warnings
from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image, ImageOps

from srgan_jax import image_io
from srgan_jax.data import demo_data
from srgan_jax.data import input_pipeline as ip
from srgan_jax.data.image_source import ImageSource
from srgan_jax.imresize import degrade

CROP, SCALE = 48, 4
RNG = np.random.default_rng(0)


def textured(height, width, seed=0):
    """A smooth RGB image with some detail, so JPEG stays close to it."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    image = [np.sin(x / rng.uniform(3, 9) + y / rng.uniform(3, 9) + c) for c in range(3)]
    return np.round((np.stack(image, axis=-1) + 1) * 127.5).astype(np.uint8)


def coordinate_source(sizes):
    """Images whose pixel (y, x) of image k is (y, x, k): a crop's values say where it came from."""
    images = []
    for k, (height, width) in enumerate(sizes):
        y, x = np.mgrid[0:height, 0:width]
        images.append(np.stack([y, x, np.full_like(y, k)], axis=-1).astype(np.uint8))
    return ImageSource("coordinates", images, tuple(f"coord{k}" for k in range(len(sizes))),
                       tuple(sizes))


def to_uint8_hr(hr):
    return np.round((hr.astype(np.float64) + 1.0) * 127.5).astype(np.uint8)


def iterator(source, **overrides):
    options = dict(global_batch_size=8, crop_size=CROP, scale=SCALE, seed=0, layout="global",
                   prefetch=0)
    options.update(overrides)
    return ip.create_train_iterator(source, **options)


def recorded_warnings(function, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    skipped = [w for w in caught if issubclass(w.category, ip.SkippedImageWarning)]
    return result, [str(w.message) for w in skipped]


@pytest.fixture
def messy_folder(tmp_path):
    """Good, convertible and broken image files, with what each good one must decode to."""
    folder = tmp_path / "messy"
    (folder / "nested" / "deeper").mkdir(parents=True)
    expected = {}

    def save(name, array, **kwargs):
        Image.fromarray(array).save(folder / name, **kwargs)

    rgb = textured(64, 80)
    save("good.png", rgb)
    expected["good.png"] = rgb
    save("nested/deeper/UPPER.PNG", rgb[::-1])
    expected["nested/deeper/UPPER.PNG"] = rgb[::-1]
    save("gray.png", rgb[..., 0])
    expected["gray.png"] = np.repeat(rgb[..., :1], 3, axis=2)
    rgba = np.concatenate([rgb, RNG.integers(0, 256, (64, 80, 1), dtype=np.uint8)], axis=2)
    save("rgba.png", rgba)
    expected["rgba.png"] = rgb
    sixteen = RNG.integers(0, 65536, (60, 70, 3), dtype=np.uint16)
    (folder / "sixteen.png").write_bytes(image_io.encode_png16(sixteen))
    expected["sixteen.png"] = np.round(sixteen / 257.0).astype(np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    with Image.open(folder / "cmyk.jpg") as image:
        assert image.mode == "CMYK"
        expected["cmyk.jpg"] = np.asarray(image.convert("RGB"))
    palette = Image.fromarray(rgb).quantize(32)
    palette.save(folder / "palette.png")
    expected["palette.png"] = np.asarray(palette.convert("RGB"))
    rotated = Image.fromarray(textured(56, 96, seed=1))
    exif = rotated.getexif()
    exif[image_io.EXIF_ORIENTATION] = 6  # display = stored turned 90 degrees clockwise
    rotated.save(folder / "rotated.jpg", exif=exif, quality=100, subsampling=0)
    with Image.open(folder / "rotated.jpg") as image:
        expected["rotated.jpg"] = np.asarray(ImageOps.exif_transpose(image))
    save("small.png", rgb[:40, :40])
    expected["small.png"] = rgb[:40, :40]

    png = (folder / "good.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    jpeg = (folder / "rotated.jpg").read_bytes()
    (folder / "corrupt.jpg").write_bytes(jpeg[:20] + bytes(range(256)) * 4)
    (folder / "text.png").write_text("not an image")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    return folder, expected


def test_messy_folder_converts_or_skips_each_file_once(messy_folder):
    folder, expected = messy_folder
    source, messages = recorded_warnings(ip.folder_source, [folder])
    bad = ["truncated.png", "corrupt.jpg", "text.png", "empty.jpg"]
    assert len(messages) == len(bad)
    for name in bad:
        assert sum(str(folder / name) in m for m in messages) == 1, (name, messages)

    loaded = {os.path.relpath(n, folder): image for n, image in zip(
        source.names, source.hr, strict=True)}
    assert sorted(loaded) == sorted(expected)
    for name, image in loaded.items():
        assert image.dtype == np.uint8 and image.shape == expected[name].shape, name
        np.testing.assert_array_equal(image, expected[name], err_msg=name)
    assert loaded["rotated.jpg"].shape == (96, 56, 3)  # stored 56x96, shown upright
    upright = np.rot90(textured(56, 96, seed=1), -1).astype(int)
    assert np.abs(loaded["rotated.jpg"] - upright).mean() < 1  # the same pixels, through JPEG
    assert np.abs(loaded["rotated.jpg"] - upright[::-1, ::-1]).mean() > 20  # not the wrong way
    assert source.sizes == tuple(image.shape[:2] for image in source.hr)

    it, messages = recorded_warnings(iterator, source)
    assert len(messages) == 1 and "small.png" in messages[0] and "crop_size=48" in messages[0]
    batch = next(it)
    assert batch["hr"].shape == (8, CROP, CROP, 3)


def test_lazy_folder_matches_cached(messy_folder):
    folder, _ = messy_folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ip.SkippedImageWarning)
        cached = ip.folder_source([folder])
        lazy = ip.folder_source([folder], cache_bytes=0)
        assert isinstance(lazy.hr, Sequence) and not isinstance(lazy.hr, list)
        assert lazy.names == cached.names and lazy.sizes == cached.sizes
        a, b = iterator(cached), iterator(lazy)
    for _ in range(2):
        x, y = next(a), next(b)
        np.testing.assert_array_equal(x["hr"], y["hr"])
        np.testing.assert_array_equal(x["lr"], y["lr"])


def test_folder_without_usable_images_is_an_error_naming_it(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_text("no")
    with pytest.warns(ip.SkippedImageWarning), pytest.raises(ValueError, match="bad"):
        ip.folder_source([tmp_path / "bad"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        ip.folder_source([tmp_path / "empty"])
    with pytest.raises(OSError, match="missing"):
        ip.folder_source([tmp_path / "missing"])
    (tmp_path / "tiny").mkdir()
    Image.fromarray(textured(20, 20)).save(tmp_path / "tiny" / "t.png")
    source = ip.folder_source([tmp_path / "tiny"])
    with pytest.warns(ip.SkippedImageWarning, match="t.png"), \
            pytest.raises(ValueError, match="tiny"):
        iterator(source)


def test_crops_are_aligned_augmented_and_in_range():
    source = coordinate_source([(120, 100), (80, 150), (48, 48)])
    it = iterator(source, global_batch_size=16)
    transforms_seen, images_seen = set(), set()
    for _ in range(8):
        batch = next(it)
        assert batch["lr"].dtype == np.uint8 and batch["hr"].dtype == np.uint8
        assert batch["lr"].shape == (16, CROP // SCALE, CROP // SCALE, 3)
        for lr, crop in zip(batch["lr"], batch["hr"], strict=True):
            np.testing.assert_array_equal(lr, degrade(crop, SCALE))
            transforms_seen.add(match_crop(source, crop))
            images_seen.add(int(crop[0, 0, 2]))
    assert len(transforms_seen) == 8 and images_seen == {0, 1, 2}


def test_device_degradation_leaves_lr_and_augmentation_to_the_step():
    """Without host degradation the batch is the uint8 HR crops as cut, and their transforms."""
    source = coordinate_source([(120, 100), (80, 150)])
    on_host = iterator(source, global_batch_size=8).batch(3)
    hr_only = iterator(source, global_batch_size=8, degrade_on_host=False).batch(3)
    assert set(hr_only) == {"hr", "transform"}
    for crop, code, augmented in zip(hr_only["hr"], hr_only["transform"], on_host["hr"],
                                     strict=True):
        assert match_crop(source, crop) == (0, 0)  # a window of its image, not flipped
        flip, rotations = divmod(int(code), 4)
        np.testing.assert_array_equal(np.rot90(crop[:, ::-1] if flip else crop, rotations),
                                      augmented)


def match_crop(source, crop):
    """The (flip, rotations) under which `crop` is an exact window of its source image."""
    for flip in (0, 1):
        for rotations in range(4):
            window = np.rot90(crop, -rotations)
            window = window[:, ::-1] if flip else window
            top, left, k = (int(v) for v in window[0, 0])
            image = source.hr[k]
            if np.array_equal(window, image[top:top + CROP, left:left + CROP]):
                return flip, rotations
    raise AssertionError("crop is not a flipped/rotated window of any source image")


def test_same_seed_same_stream_different_seed_different():
    source = ip.demo_source()
    a, b = iterator(source, seed=3), iterator(source, seed=3, prefetch=3, num_workers=2)
    c = iterator(source, seed=4)
    with b:
        for _ in range(3):
            x, y, z = next(a), next(b), next(c)
            np.testing.assert_array_equal(x["hr"], y["hr"])
            np.testing.assert_array_equal(x["lr"], y["lr"])
            assert not np.array_equal(x["hr"], z["hr"])
    assert not np.array_equal(next(a)["hr"], x["hr"])  # steps differ too


def test_state_restores_the_stream_exactly():
    source = ip.demo_source()
    with iterator(source, prefetch=2) as it:
        for _ in range(4):
            next(it)
        state = it.get_state()
        assert state == {"step": 4}
        expected = [next(it) for _ in range(3)]
        it.set_state(state)  # rewinding discards prefetched batches
        again = [next(it) for _ in range(3)]
    with iterator(source, prefetch=0) as resumed:
        resumed.set_state(state)
        fresh = [next(resumed) for _ in range(3)]
    for x, y, z in zip(expected, again, fresh, strict=True):
        for key in ("lr", "hr"):
            np.testing.assert_array_equal(x[key], y[key])
            np.testing.assert_array_equal(x[key], z[key])
    assert resumed.get_state() == {"step": 7}
    with pytest.raises(ValueError, match="step"):
        resumed.set_state({"step": -1})


def test_layouts_and_hosts_partition_the_global_batch():
    source = ip.demo_source()
    full = iterator(source, global_batch_size=16).batch(5)
    pmap = iterator(source, global_batch_size=16, layout="pmap", local_device_count=8).batch(5)
    assert pmap["hr"].shape == (8, 2, CROP, CROP, 3) and pmap["lr"].shape == (8, 2, 12, 12, 3)
    np.testing.assert_array_equal(pmap["hr"].reshape(full["hr"].shape), full["hr"])
    hosts = [iterator(source, global_batch_size=16, layout="pmap", local_device_count=4,
                      process_index=i, process_count=2).batch(5) for i in range(2)]
    assert hosts[0]["hr"].shape == (4, 2, CROP, CROP, 3)
    for key in ("lr", "hr"):
        joined = np.concatenate([h[key].reshape(8, *h[key].shape[2:]) for h in hosts])
        np.testing.assert_array_equal(joined, full[key])
    assert not np.array_equal(hosts[0]["hr"], hosts[1]["hr"])


def test_pmap_layout_defaults_to_local_devices():
    it = iterator(ip.demo_source(), global_batch_size=16, layout="pmap")
    assert next(it)["hr"].shape == (8, 2, CROP, CROP, 3)  # conftest: 8 fake CPU devices


@pytest.mark.parametrize("overrides, field", [
    (dict(crop_size=50), "crop_size=50"),
    (dict(global_batch_size=6, layout="pmap", local_device_count=4), "local_device_count=4"),
    (dict(global_batch_size=5, process_count=2, process_index=0), "process_count=2"),
    (dict(process_index=2, process_count=2), "process_index=2"),
    (dict(layout="sharded"), "layout"),
    (dict(seed=-1), "seed"),
    (dict(scale=2), "scale=2"),
])
def test_bad_configuration_names_the_field(overrides, field):
    source = ip.demo_source()
    if "scale" in overrides:  # a dataset whose LR images are x4
        source = ImageSource("x4 pairs", source.hr, source.names, source.sizes,
                             [degrade(h, 4) for h in source.hr], 4)
    with pytest.raises(ValueError, match=field):
        iterator(source, **overrides)


def test_make_source_errors_name_the_config_field():
    config = ip.default_config()
    config.source = "folder"
    with pytest.raises(ValueError, match="config.data.train_dirs"):
        ip.make_source(config)
    with pytest.raises(ValueError, match="config.data.eval_dirs"):
        ip.make_source(config, split="validation")
    config.source = "imagenet"
    with pytest.raises(ValueError, match="config.data.source"):
        ip.make_source(config)
    config.source = "demo"
    assert len(ip.make_source(config, split="validation")) == 4


def test_demo_set_is_deterministic_and_detailed():
    train = demo_data.demo_images("train")
    assert len(train) == 12 and all(i.shape == (192, 192, 3) and i.dtype == np.uint8 for i in train)
    np.testing.assert_array_equal(demo_data.demo_image(5, 192), train[5])
    assert all(not i.flags.writeable for i in train)
    for image in train:  # every texture has structure at the finest scale
        detail = np.abs(np.diff(image.astype(float), axis=1)).mean()
        assert detail > 2.0
    validation = demo_data.demo_images("validation")
    assert len(validation) == 4 and not any(np.array_equal(validation[0], t) for t in train)
    with pytest.raises(ValueError, match="split"):
        demo_data.demo_images("test")


@pytest.mark.parametrize("images,batch", [(20, 16), (5, 16)])
def test_batches_draw_distinct_images_while_there_are_enough(images, batch):
    source = coordinate_source([(CROP + k, CROP + 3) for k in range(images)])
    it = iterator(source, global_batch_size=batch)
    for step in range(5):
        chosen = [int(hr[0, 0, 2]) for hr in it.batch(step)["hr"]]
        counts = np.bincount(chosen, minlength=images)
        # Each image once per round of `images` examples: at most ceil(batch / images) times.
        assert counts.max() <= -(-batch // images) and counts.min() >= batch // images
    assert not np.array_equal(it.image_indices(0), it.image_indices(1))
