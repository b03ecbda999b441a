"""image_io: modes, 16-bit fidelity, EXIF orientation, ICC profiles, errors and atomic writes.

References are independent of the code under test: Pillow's own decoders and conversions, numpy
arithmetic, and a minimal filter-free PNG writer below.
"""
import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from srgan_jax import image_io
from srgan_jax.image_io import ImageData, ImageReadError, read_image, read_rgb, write_image

RNG = np.random.default_rng(0)
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def random_pixels(shape, dtype=np.uint8):
    return RNG.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


def smooth_rgb(height=32, width=48):
    """A smooth image, so that JPEG at quality 100 stays within a few levels."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (height + width)],
                    axis=-1).round().astype(np.uint8)


def plain_png16(path, pixels, color_type, transparent=None):
    """A 16-bit PNG with filter type 0 on every row: an encoder independent of image_io's.

    `transparent`: the 16-bit sample values (one for gray, three for RGB) of a tRNS colour key.
    """
    def chunk(kind, body):
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    height, width = pixels.shape[:2]
    rows = pixels.astype(">u2").reshape(height, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    key = b"" if transparent is None else chunk(b"tRNS", struct.pack(
        f">{len(transparent)}H", *transparent))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + key
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(13, 17), (13, 17, 2), (13, 17, 3), (13, 17, 4)])
@pytest.mark.parametrize("ext", ["png", "tif"])
def test_png_and_tiff_round_trip_exactly(tmp_path, ext, shape, dtype):
    pixels = random_pixels(shape, dtype)
    path = tmp_path / f"image.{ext}"
    write_image(path, pixels)
    data = read_image(path)
    assert data.pixels.dtype == dtype
    if ext == "tif" and dtype == np.uint16 and shape[-1] == 2:  # stored as RGBA, gray repeated
        pixels = np.dstack([pixels[..., [0, 0, 0]], pixels[..., 1]])
    np.testing.assert_array_equal(data.pixels, pixels)
    assert data.format == {"png": "PNG", "tif": "TIFF"}[ext]
    assert data.path == str(path)
    # Pillow's own decoder agrees on the high bytes, so the files are standard.
    with Image.open(path) as image:
        high = np.asarray(image.convert({4: "RGBA", 2: "LA"}.get(shape[-1], image.mode)))
    if dtype == np.uint16 and len(shape) == 3 and shape[2] != 2:  # Pillow reads 16-bit LA as 8
        np.testing.assert_array_equal(high[..., : shape[2]], pixels >> 8)


@pytest.mark.parametrize("color_type, channels", [(0, 1), (2, 3), (4, 2), (6, 4)])
def test_reads_16_bit_png_from_another_encoder(tmp_path, color_type, channels):
    pixels = random_pixels((9, 11, channels), np.uint16)
    plain_png16(tmp_path / "a.png", pixels, color_type)
    data = read_image(tmp_path / "a.png")
    if channels == 1:
        expected = pixels[..., 0]
    elif channels == 2:
        expected = pixels  # gray + alpha stays gray + alpha
    else:
        expected = pixels
    np.testing.assert_array_equal(data.pixels, expected)
    assert data.bit_depth == 16


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_colour_key_becomes_alpha(tmp_path, channels):
    pixels = random_pixels((6, 7, channels), np.uint16) % 4096  # never the key below
    pixels[2, 3] = pixels[4, 1] = 4660 if channels == 1 else [4660, 22136, 39612]
    plain_png16(tmp_path / "k.png", pixels, 0 if channels == 1 else 2,
                transparent=[int(v) for v in pixels[2, 3]])
    data = read_image(tmp_path / "k.png")
    assert data.pixels.shape == (6, 7, 4) and data.pixels.dtype == np.uint16
    np.testing.assert_array_equal(data.pixels[..., :3], np.broadcast_to(pixels, (6, 7, 3)))
    expected_alpha = np.full((6, 7), 65535)
    expected_alpha[2, 3] = expected_alpha[4, 1] = 0
    np.testing.assert_array_equal(data.pixels[..., 3], expected_alpha)


def test_read_rgb_scales_16_bit_by_257_with_rounding(tmp_path):
    pixels = np.arange(0, 65536, 7, dtype=np.uint16)[: 90 * 3].reshape(9, 10, 3)
    pixels[0, 0] = [65535, 128, 129]  # extremes and the rounding boundary of 0 / 1
    plain_png16(tmp_path / "a.png", pixels, 2)
    expected = np.round(pixels.astype(np.float64) / 257.0).astype(np.uint8)
    rgb = read_rgb(tmp_path / "a.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (9, 10, 3)
    np.testing.assert_array_equal(rgb, expected)
    np.testing.assert_array_equal(rgb[0, 0], [255, 0, 1])


def test_pillow_written_16_bit_gray_png(tmp_path):
    pixels = random_pixels((7, 5), np.uint16)
    Image.fromarray(pixels).save(tmp_path / "g.png")  # Pillow's I;16 writer
    np.testing.assert_array_equal(read_image(tmp_path / "g.png").pixels, pixels)
    np.testing.assert_array_equal(read_rgb(tmp_path / "g.png"),
                                  np.repeat(((pixels + 128.0) // 257)[..., None], 3, axis=2))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    image = Image.fromarray(random_pixels((6, 10, 3)))
    exif = image.getexif()
    exif[image_io.EXIF_ORIENTATION] = orientation
    image.save(tmp_path / "o.jpg", exif=exif, quality=100)
    with Image.open(tmp_path / "o.jpg") as stored:
        expected = np.asarray(ImageOps.exif_transpose(stored))
    np.testing.assert_array_equal(read_rgb(tmp_path / "o.jpg"), expected)
    assert expected.shape[:2] == ((10, 6) if orientation >= 5 else (6, 10))


def test_exif_orientation_applies_to_16_bit(tmp_path):
    pixels = random_pixels((4, 6, 3), np.uint16)
    image = Image.new("RGB", (6, 4))
    exif = image.getexif()
    exif[image_io.EXIF_ORIENTATION] = 6  # stored rotated 90 degrees counter-clockwise
    path = tmp_path / "r.png"
    path.write_bytes(image_io.encode_png16(pixels))
    with Image.open(path) as stored:  # re-save through Pillow would lose 16 bits: add eXIf chunk
        assert stored.size == (6, 4)
    body = exif.tobytes()
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(
        ">I", zlib.crc32(b"eXIf" + body))
    data = path.read_bytes()
    end = data.index(b"IEND") - 4
    path.write_bytes(data[:end] + chunk + data[end:])
    np.testing.assert_array_equal(read_image(path).pixels, np.rot90(pixels, -1))


def test_mode_conversions_match_pillow(tmp_path):
    rgb = smooth_rgb()
    palette = Image.fromarray(rgb).quantize(16)
    palette.save(tmp_path / "p.png")
    palette.save(tmp_path / "pt.png", transparency=3)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    Image.fromarray(rgb).convert("LA").save(tmp_path / "la.png")
    Image.fromarray(rgb).convert("1").save(tmp_path / "b.png")
    cases = {"p.png": "RGB", "pt.png": "RGBA", "c.jpg": "RGB", "la.png": "LA", "b.png": "L"}
    for name, mode in cases.items():
        with Image.open(tmp_path / name) as image:
            expected = np.asarray(image.convert(mode))
        data = read_image(tmp_path / name)
        np.testing.assert_array_equal(data.pixels, expected, err_msg=name)
        np.testing.assert_array_equal(read_rgb(tmp_path / name), image_io.to_rgb(expected))
    assert read_image(tmp_path / "pt.png").pixels[..., 3].min() == 0  # index 3 is transparent


@pytest.mark.parametrize("ext", ["jpg", "webp", "bmp"])
def test_gray_with_alpha_in_eight_bit_formats(tmp_path, ext):
    """JPEG keeps the gray plane; WebP stores gray + alpha as RGBA; BMP keeps RGB (as for RGBA)."""
    pixels = random_pixels((9, 10, 2), np.uint8)
    write_image(tmp_path / f"la.{ext}", pixels)
    back = read_image(tmp_path / f"la.{ext}").pixels
    expected = np.dstack([pixels[..., [0, 0, 0]], pixels[..., 1]])
    if ext == "jpg":
        assert back.shape == (9, 10)
    elif ext == "webp":  # lossy at the default quality
        assert back.shape == expected.shape
        assert np.abs(back.astype(int) - expected).mean() < 20
    else:
        np.testing.assert_array_equal(back, expected[..., :3])


def test_integer_and_float_modes(tmp_path):
    values = np.array([[-5, 0, 300], [65535, 70000, 1]], dtype=np.int32)
    Image.fromarray(values, mode="I").save(tmp_path / "i.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "i.tif").pixels,
                                  np.clip(values, 0, 65535).astype(np.uint16))
    floats = np.array([[0.0, 0.5, 1.0], [-0.25, 2.0, 1 / 65535]], dtype=np.float32)
    Image.fromarray(floats, mode="F").save(tmp_path / "f.tif")
    expected = np.round(np.clip(floats.astype(np.float64), 0, 1) * 65535).astype(np.uint16)
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif").pixels, expected)
    np.testing.assert_array_equal(read_rgb(tmp_path / "f.tif")[..., 0],
                                  np.round(expected / 257.0).astype(np.uint8))


def test_icc_profile_is_kept_where_it_fits(tmp_path):
    rgb16 = random_pixels((5, 6, 3), np.uint16)
    for name, pixels in [("a.png", rgb16), ("b.tif", rgb16), ("c.jpg", smooth_rgb()),
                         ("d.png", smooth_rgb()), ("e.webp", smooth_rgb())]:
        write_image(tmp_path / name, pixels, icc_profile=SRGB_ICC)
        assert read_image(tmp_path / name).icc_profile == SRGB_ICC, name
    write_image(tmp_path / "gray.png", random_pixels((5, 6)), icc_profile=SRGB_ICC)
    assert read_image(tmp_path / "gray.png").icc_profile is None  # an RGB profile on gray: dropped
    data = ImageData(rgb16, icc_profile=SRGB_ICC)
    write_image(tmp_path / "f.png", data)  # the profile travels with ImageData
    assert read_image(tmp_path / "f.png").icc_profile == SRGB_ICC


def test_eight_bit_formats(tmp_path):
    rgba16 = np.concatenate([smooth_rgb().astype(np.uint16) * 257,
                             np.full((32, 48, 1), 40000, np.uint16)], axis=2)
    write_image(tmp_path / "a.jpg", rgba16, quality=100)
    jpeg = read_image(tmp_path / "a.jpg").pixels
    assert jpeg.dtype == np.uint8 and jpeg.shape == (32, 48, 3)  # alpha dropped
    assert np.abs(jpeg.astype(int) - smooth_rgb()).mean() < 2  # lossy, chroma subsampled
    write_image(tmp_path / "a.bmp", rgba16[..., :3])
    np.testing.assert_array_equal(read_image(tmp_path / "a.bmp").pixels, smooth_rgb())
    write_image(tmp_path / "a.webp", rgba16)
    webp = read_image(tmp_path / "a.webp").pixels
    assert webp.shape == (32, 48, 4) and (webp[..., 3] == round(40000 / 257)).all()


def test_write_is_atomic_and_validates(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    write_image(path, random_pixels((4, 4, 3)))
    assert read_image(path).pixels.shape == (4, 4, 3)
    assert os.listdir(tmp_path) == ["out.png"]  # no temporary file left behind
    with pytest.raises(ValueError, match="out.gif"):
        write_image(tmp_path / "out.gif", random_pixels((4, 4, 3)))
    with pytest.raises(TypeError, match="uint8 or uint16"):
        write_image(path, np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="shaped"):
        write_image(path, np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(FileNotFoundError):
        write_image(tmp_path / "missing" / "x.png", random_pixels((4, 4)))
    assert sorted(os.listdir(tmp_path)) == ["out.png"]


def _png_bytes(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_bytes(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("name, content", [
    ("empty.jpg", b""),
    ("text.png", b"this is not an image\n"),
    ("truncated.png", _png_bytes(random_pixels((64, 64, 3)))[:600]),
    ("truncated.jpg", _jpeg_bytes(random_pixels((64, 64, 3)))[:700]),
    ("corrupt.jpg", _jpeg_bytes(random_pixels((64, 64, 3)))[:20] + bytes(range(256)) * 8),
])
def test_unreadable_files_raise_naming_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    for reader in (read_rgb, read_image):
        with pytest.raises(ImageReadError, match=name):
            reader(path)


def test_missing_file_raises_image_read_error(tmp_path):
    with pytest.raises(ImageReadError, match="nothing.png"):
        read_rgb(tmp_path / "nothing.png")


def test_list_images_by_extension_recursive_or_not(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.PNG", "a.jpg", "notes.txt", "sub/c.webp", "sub/d.tiff"):
        (tmp_path / name).write_bytes(b"")
    names = [p.relative_to(tmp_path).as_posix() for p in image_io.list_images(tmp_path)]
    assert names == ["a.jpg", "b.PNG", "sub/c.webp", "sub/d.tiff"]
    flat = image_io.list_images(tmp_path, recursive=False)
    assert [p.name for p in flat] == ["a.jpg", "b.PNG"]
    with pytest.raises(NotADirectoryError, match="nowhere"):
        image_io.list_images(tmp_path / "nowhere")


def test_folders_list_every_raster_format_and_name_what_they_leave_out(tmp_path, monkeypatch):
    """Was: a folder listed only the formats srgan-jax writes, so GIF, AVIF and HEIC files were
    passed over in silence, as were sub-folders it could not read and pipes named like images."""
    (tmp_path / "sub").mkdir()
    for name in ("a.gif", "b.avif", "c.HEIC", "d.png", "sub/e.jpg", "notes.txt", "model.h5"):
        (tmp_path / name).write_bytes(b"")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "locked").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "f.jpg").write_bytes(b"")
    (tmp_path / "sub" / "linked").symlink_to(tmp_path / "elsewhere")  # followed, listed once
    (tmp_path / "sub" / "loop").symlink_to(tmp_path)  # a cycle
    real_scandir = os.scandir

    def scandir(path="."):  # as root ignores folder modes, the refusal is the listing's
        if os.fspath(path) == os.fspath(tmp_path / "locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    scan = image_io.scan_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in scan.files] == [
        "a.gif", "b.avif", "c.HEIC", "d.png", "elsewhere/f.jpg", "sub/e.jpg"]
    assert scan.problems == [
        f"{tmp_path / 'gone.png'}: a broken symbolic link, not an image file; left out",
        f"{tmp_path / 'locked'}: cannot read this folder (Permission denied); the images in it "
        "were left out",
        f"{tmp_path / 'pipe.png'}: a named pipe, not an image file; left out",
        f"{tmp_path / 'sub' / 'linked'}: the folder {tmp_path / 'elsewhere'} again (through a "
        "symbolic link); left out",
        f"{tmp_path / 'sub' / 'loop'}: the folder {tmp_path} again (through a symbolic link); "
        "left out"]
    with pytest.raises(OSError) as error:  # what training and evaluation read: all or nothing
        image_io.list_images(tmp_path)
    assert str(error.value) == scan.problems[0] + " (and 4 more)"
    assert image_io.is_writable_image("x.PNG") and not image_io.is_writable_image("x.gif")


def test_single_frame_reads_refuse_animations_inside_the_read(tmp_path):
    frames = [Image.fromarray(random_pixels((4, 4, 3))) for _ in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert read_image(tmp_path / "anim.gif").pixels.shape == (4, 4, 3)  # the first frame
    with pytest.raises(ImageReadError) as error:
        read_image(tmp_path / "anim.gif", single_frame=True)
    assert str(error.value) == (
        f"{tmp_path / 'anim.gif'}: animated or multi-page image (3 frames); srgan-jax upscales "
        "single images: extract the frames first (e.g. ffmpeg -i in.gif frame%04d.png)")


def test_writes_keep_a_file_that_exists_unless_overwrite(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="exists; it was kept"):
        write_image(path, random_pixels((4, 4, 3)), overwrite=False)
    assert path.read_bytes() == b"old"
