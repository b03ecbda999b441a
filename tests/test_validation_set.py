"""ValidationSet: built once from files or arrays, an oracle scores perfectly, bicubic is cached."""
import pathlib

import numpy as np
import pytest
from PIL import Image

from srgan_jax import image_io
from srgan_jax.evaluation import protocol
from srgan_jax.evaluation.validation_set import ValidationSet, read_hr
from srgan_jax.imresize import degrade, im2uint8, imresize, modcrop
from srgan_jax.metrics import psnr, ssim


def write_images(folder: pathlib.Path) -> dict[str, np.ndarray]:
    """A colour, a grayscale and an RGBA HR image with sizes that are not multiples of 4, one in a
    sub-folder, and a file that is not an image."""
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:30, 0:37]
    smooth = 0.5 + 0.4 * np.sin(xx / 5.0)[..., None] * np.cos(yy / 7.0)[..., None]
    images = {
        "colour.png": im2uint8(smooth * rng.uniform(0.6, 1.0, (1, 1, 3))),
        "gray.png": im2uint8(0.5 + 0.3 * np.cos(xx[:27] / 3.0 + yy[:27] / 4.0)),
        "sub/alpha.png": rng.integers(0, 256, (26, 29, 4), dtype=np.uint8),
    }
    for name, pixels in images.items():
        Image.fromarray(pixels).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return images


def test_read_hr_keeps_gray_and_drops_alpha(tmp_path, monkeypatch):
    images = write_images(tmp_path)
    assert read_hr(tmp_path / "gray.png").shape == (27, 37)
    np.testing.assert_array_equal(read_hr(tmp_path / "sub/alpha.png"),
                                  images["sub/alpha.png"][..., :3])
    Image.fromarray(images["gray.png"].astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    np.testing.assert_array_equal(read_hr(tmp_path / "gray16.png"), images["gray.png"])
    # Gray + alpha, should the reader give it as (H, W, 2), is measured as gray.
    gray_alpha = np.stack([images["gray.png"], images["gray.png"] // 2], axis=-1)
    monkeypatch.setattr(image_io, "read_image", lambda path: image_io.ImageData(gray_alpha))
    np.testing.assert_array_equal(read_hr("la.png"), images["gray.png"])


def test_an_oracle_scores_perfectly_on_aligned_lr(tmp_path):
    images = write_images(tmp_path / "toy")
    validation = ValidationSet.from_folders([tmp_path / "toy"], scale=4)
    assert [i.name for i in validation.images] == ["colour.png", "gray.png", "sub/alpha.png"]
    assert validation.skipped == () and validation.scale == 4 and len(validation) == 3
    by_lr = {}
    for pixels in images.values():
        hr = modcrop(pixels if pixels.ndim == 2 else pixels[..., :3], 4)
        lr = degrade(hr, 4)
        # The model sees the 8-bit MATLAB degradation of the cropped HR image (gray as RGB).
        by_lr[(lr if lr.ndim == 3 else np.repeat(lr[..., None], 3, axis=-1)).tobytes()] = hr

    def oracle(lr):
        hr = by_lr[np.round(lr * 255).astype(np.uint8).tobytes()]
        return (hr if hr.ndim == 3 else np.repeat(hr[..., None], 3, axis=-1)) / 255.0

    sr_images = validation.super_resolve(oracle)
    for image, sr in zip(validation.images, sr_images, strict=True):
        np.testing.assert_array_equal(sr, image.hr)
    scores = validation.score(sr_images)
    assert scores.psnr == float("inf") and scores.ssim == pytest.approx(1.0)


def test_scores_are_the_protocols_per_image_means(tmp_path):
    write_images(tmp_path / "toy")
    validation = ValidationSet.from_folders([tmp_path / "toy"], scale=2)
    sr_images = validation.bicubic
    scores = validation.score(sr_images, border=3)
    for image, sr, entry in zip(validation.images, sr_images, scores.images, strict=True):
        assert entry.name == image.name
        assert entry.psnr == psnr(sr / 255.0, image.hr / 255.0, border=3)
        assert entry.ssim == pytest.approx(ssim(sr / 255.0, image.hr / 255.0, border=3), abs=1e-12)
        np.testing.assert_array_equal(sr, imresize(image.lr, scale=2))
    assert scores.psnr == np.mean([e.psnr for e in scores.images])
    with pytest.raises(ValueError, match="2 SR images for 3 images"):
        validation.score(sr_images[:2])


def test_bicubic_baseline_is_computed_once(tmp_path, monkeypatch):
    write_images(tmp_path / "toy")
    validation = ValidationSet.from_folders([tmp_path / "toy"], scale=4)
    calls = []
    real = protocol.super_resolve
    monkeypatch.setattr(protocol, "super_resolve", lambda *a: calls.append(a) or real(*a))
    first = validation.bicubic_scores()
    assert validation.bicubic_scores() is first and validation.bicubic is validation.bicubic
    assert validation.bicubic_scores(border=0) is not first
    assert len(calls) == 3  # one upscaling per image, for both borders


def test_unreadable_and_too_small_files_are_skipped_by_name(tmp_path):
    write_images(tmp_path / "toy")
    (tmp_path / "toy" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Image.fromarray(np.zeros((3, 9, 3), np.uint8)).save(tmp_path / "toy" / "tiny.png")
    validation = ValidationSet.from_folders([tmp_path / "toy"], scale=4)
    assert [i.name for i in validation.images] == ["colour.png", "gray.png", "sub/alpha.png"]
    messages = [str(e) for e in validation.skipped]
    assert messages[0].startswith(f"{tmp_path / 'toy' / 'broken.png'}: cannot read image")
    assert messages[1] == f"{tmp_path / 'toy' / 'tiny.png'}: 9x3 pixels is too small for scale 4"


def test_several_folders_and_max_images(tmp_path):
    write_images(tmp_path / "a")
    write_images(tmp_path / "b")
    validation = ValidationSet.from_folders([tmp_path / "a", tmp_path / "b"], 4, max_images=4)
    assert [i.origin for i in validation.images] == [
        str(tmp_path / p) for p in ("a/colour.png", "a/gray.png", "a/sub/alpha.png", "b/colour.png")
    ]
    assert validation.name == f"{tmp_path / 'a'}, {tmp_path / 'b'}"


def test_folder_errors_are_named(tmp_path):
    with pytest.raises(NotADirectoryError, match="nowhere: no such folder"):
        ValidationSet.from_folders([tmp_path / "nowhere"], 4)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError) as empty:
        ValidationSet.from_folders([tmp_path / "empty"], 4)
    assert str(empty.value) == (f"{tmp_path / 'empty'}: no image files in this folder (.png, "
                                ".jpg, .webp, .tif, .bmp or any other format Pillow reads)")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"bad: no usable validation image; .*x\.png: cannot read"):
        ValidationSet.from_folders([tmp_path / "bad"], 4)


def test_from_arrays_uses_the_datasets_lr_images_when_given():
    rng = np.random.default_rng(3)
    hr = [rng.integers(0, 256, (16, 20, 3), dtype=np.uint8) for _ in range(2)]
    lr = [rng.integers(0, 256, (8, 10, 3), dtype=np.uint8) for _ in range(2)]
    given = ValidationSet.from_arrays(["a", "b"], hr, 2, lr=lr, name="div2k")
    np.testing.assert_array_equal(given.images[1].lr, lr[1])
    made = ValidationSet.from_arrays(["a", "b"], hr, 2)
    np.testing.assert_array_equal(made.images[1].lr, degrade(hr[1], 2))
    tiny = np.zeros((1, 5, 3), np.uint8)
    skipping = ValidationSet.from_arrays(["a", "tiny", "b"], [hr[0], tiny, hr[1]], 2)
    assert [image.name for image in skipping.images] == ["a", "b"]
    assert [str(error) for error in skipping.skipped] == [
        "tiny: 5x1 pixels is too small for scale 2"]
    with pytest.raises(ValueError, match="2 names, 2 HR and 1 LR images"):
        ValidationSet.from_arrays(["a", "b"], hr, 2, lr=lr[:1])
    with pytest.raises(ValueError, match="not prepared for scale 4"):
        ValidationSet(made.images, 4)
