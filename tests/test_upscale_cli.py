"""`srgan-jax upscale`: real files in and out, folder structure, safety, errors and batching."""
import pathlib

import numpy as np
import pytest
from fake_models import TINY, random_variables
from PIL import Image, ImageCms

from srgan_jax import image_io
from srgan_jax.upscaling import registry, upscale_cli
from srgan_jax.upscaling.inference import upscale
from srgan_jax.upscaling.model_file import save_model
from srgan_jax.upscaling.tiling import receptive_field_radius

RNG = np.random.default_rng(0)


def pixels(shape, dtype=np.uint8) -> np.ndarray:
    return RNG.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model") / "tiny.msgpack"
    save_model(path, random_variables(TINY), TINY)
    return str(path)


@pytest.fixture
def inputs(tmp_path) -> pathlib.Path:
    """A folder of every kind of input, one unreadable file and one non-image file."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(pixels((6, 5, 3))).save(root / "rgb.png", icc_profile=srgb)
    Image.fromarray(pixels((6, 5, 3))).save(root / "rgb_same_size.png")
    image_io.write_image(root / "sub" / "deep16.png", pixels((5, 7, 3), np.uint16))
    Image.fromarray(pixels((5, 6))).save(root / "sub" / "gray.png")
    Image.fromarray(pixels((4, 6, 4))).save(root / "rgba.png")
    Image.fromarray(pixels((5, 5, 3))).convert("P").save(root / "palette.png")
    rotated = Image.fromarray(pixels((4, 7, 3)))  # stored 4 high, 7 wide; upright 7 high
    exif = rotated.getexif()
    exif[image_io.EXIF_ORIENTATION] = 6
    rotated.save(root / "rotated.png", exif=exif)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (root / "notes.txt").write_text("not an image, and not an error: folders give image files")
    return root


def snapshot(root: pathlib.Path) -> dict[pathlib.Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_folder_of_every_kind(model, inputs, tmp_path, capsys):
    before = snapshot(inputs)
    out = tmp_path / "out"
    assert upscale_cli.main([str(inputs), "-o", str(out), "--model", model]) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "1 failed" in err
    assert snapshot(inputs) == before  # inputs untouched
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["palette_x4.png", "rgb_same_size_x4.png", "rgb_x4.png", "rgba_x4.png",
                       "rotated_x4.png", "sub/deep16_x4.png", "sub/gray_x4.png"]
    expect = {  # name: (shape, dtype) of the output
        "rgb_x4.png": ((24, 20, 3), np.uint8),
        "sub/deep16_x4.png": ((20, 28, 3), np.uint16),  # 16-bit stays 16-bit
        "sub/gray_x4.png": ((20, 24), np.uint8),  # gray stays gray
        "rgba_x4.png": ((16, 24, 4), np.uint8),  # alpha kept
        "palette_x4.png": ((20, 20, 3), np.uint8),  # palette converted to RGB
        "rotated_x4.png": ((28, 16, 3), np.uint8),  # EXIF orientation applied
    }
    for name, (shape, dtype) in expect.items():
        result = image_io.read_image(out / name)
        assert (result.pixels.shape, result.pixels.dtype) == (shape, dtype), name
        source = image_io.read_image(inputs / name.replace("_x4", ""))
        np.testing.assert_array_equal(result.pixels, upscale(model, source.pixels), err_msg=name)
    assert image_io.read_image(out / "rgb_x4.png").icc_profile == image_io.read_image(
        inputs / "rgb.png").icc_profile is not None


def test_existing_outputs_need_overwrite(model, inputs, tmp_path, capsys):
    source, out = inputs / "sub", tmp_path / "out"
    assert upscale_cli.main([str(source), "-o", str(out), "--model", model]) == 0
    target = out / "gray_x4.png"
    target.write_bytes(b"edited by the user")
    assert upscale_cli.main([str(source), "-o", str(out), "--model", model]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert target.read_bytes() == b"edited by the user"
    assert upscale_cli.main([str(source), "-o", str(out), "--model", model, "--overwrite"]) == 0
    assert image_io.read_image(target).pixels.shape == (20, 24)


def test_never_overwrites_inputs_even_when_asked(model, inputs, capsys):
    before = snapshot(inputs)
    rgb = inputs / "rgb.png"
    assert upscale_cli.main([str(rgb), "-o", str(rgb), "--model", model, "--overwrite"]) == 1
    assert (f"srgan-jax upscale: {rgb}: output {rgb} would overwrite an input\n"
            in capsys.readouterr().err)
    assert snapshot(inputs) == before


def test_globs_single_files_and_formats(model, inputs, tmp_path):
    out = tmp_path / "out"
    pattern = str(inputs / "**" / "g*.png")
    assert upscale_cli.main([pattern, "-o", str(out), "--model", model, "--ext", "jpg"]) == 0
    assert (out / "sub" / "gray_x4.jpg").is_file()  # structure below the glob's fixed part
    single = tmp_path / "one.webp"
    assert upscale_cli.main([str(inputs / "rgb.png"), "-o", str(single), "--model", model]) == 0
    with Image.open(single) as image:
        assert image.format == "WEBP" and image.size == (20, 24)


def test_missing_inputs_are_reported_and_the_rest_processed(model, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    missing = str(inputs / "nope.png")
    assert upscale_cli.main([missing, str(inputs / "rgb.png"), "-o", str(out), "--model",
                             model, "--suffix", "_big"]) == 1
    assert missing in capsys.readouterr().err
    assert (out / "rgb_big.png").is_file()


def test_same_size_images_are_batched(model, inputs, tmp_path, monkeypatch):
    sizes = []

    def recording(upscaler, images, **kwargs):
        sizes.append(len(images))
        return upscale_pixels(upscaler, images, **kwargs)

    upscale_pixels = upscale_cli.upscale_pixels
    monkeypatch.setattr(upscale_cli, "upscale_pixels", recording)
    files = [str(inputs / n) for n in ("rgb.png", "rgb_same_size.png", "rgba.png")]
    assert upscale_cli.main([*files, "-o", str(tmp_path / "o"), "--model", model]) == 0
    assert sizes == [2, 1]


def test_tiled_and_alpha_options(model, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    args = [str(inputs / "rgba.png"), "-o", str(out), "--model", model]
    assert upscale_cli.main([*args, "--alpha", "model", "--tile", "25", "--suffix", "_m"]) == 0
    source = image_io.read_image(inputs / "rgba.png").pixels
    np.testing.assert_array_equal(image_io.read_image(out / "rgba_m.png").pixels,
                                  upscale(model, source, alpha="model"))
    with pytest.raises(SystemExit):
        upscale_cli.main([*args, "--tile", "10", "--tile_pad", "-1"])  # known without the model
    assert "the tile overlap must be >= 0, got -1" in capsys.readouterr().err


def test_no_model_is_a_clear_error(inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path / "no_weights")
    assert upscale_cli.main([str(inputs), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "missing from this installation" in err and "model file" in err


@pytest.mark.parametrize("outscale, size", [(2, (12, 10)), (3.5, (21, 17)), (1, (6, 5))])
def test_outscale_resizes_the_models_output_with_matlab_bicubic(model, inputs, tmp_path,
                                                                outscale, size):
    """-s: the x4 model, then MATLAB's bicubic to floor(outscale * size), as Real-ESRGAN."""
    from srgan_jax.imresize import imresize

    out = tmp_path / "out.png"
    assert upscale_cli.main(["-i", str(inputs / "rgb.png"), "-o", str(out), "-s", str(outscale),
                             "--model", model]) == 0
    result = image_io.read_image(out).pixels
    assert result.shape == (*size, 3)
    x4 = upscale(model, image_io.read_image(inputs / "rgb.png").pixels) / 255.0
    expected = np.stack([imresize(x4[..., c], scale=outscale / 4, output_shape=size)
                         for c in range(3)], axis=-1)
    assert np.abs(result - np.clip(expected, 0, 1) * 255).max() <= 1


def test_real_esrgan_flags(model, inputs, tmp_path):
    """-i (repeatable, with positional inputs), -n, --fp32, --half, --ext (-t, --tile_pad below)."""
    out = tmp_path / "out"
    common = ["-o", str(out), "-n", model, "--ext", "png"]
    assert upscale_cli.main([str(inputs / "rgb.png"), "-i", str(inputs / "sub"),
                             "-i", str(inputs / "rgba.png"), *common, "--fp32"]) == 0
    assert sorted(p.name for p in out.rglob("*.png")) == [
        "deep16_x4.png", "gray_x4.png", "rgb_x4.png", "rgba_x4.png"]
    reference = image_io.read_image(out / "rgb_x4.png").pixels
    half = tmp_path / "half.png"
    assert upscale_cli.main(["-i", str(inputs / "rgb.png"), "-o", str(half), "-n", model,
                             "--half"]) == 0
    difference = np.abs(image_io.read_image(half).pixels.astype(int) - reference)
    assert difference.max() > 0 and difference.mean() < 3  # bfloat16: close, not equal


def test_tile_pad_across_tiles(model, tmp_path):
    """-t 30 on a 20x60 image: two tiles side by side, keeping LR columns [0, 30) and [30, 60)
    (all rows), each read with --tile_pad p more on every side. With p at least the receptive
    field R (the default), tiled is untiled. With a smaller p, as Real-ESRGAN's --tile_pad, a
    pixel is still exact where its R-neighbourhood lies inside the window it was kept from, that
    is at least R - p inside its tile, and only there: elsewhere (the seam between the tiles,
    the image border, which now sees p mirrored pixels instead of R) the windows' edges show."""
    photo = tmp_path / "wide.png"
    Image.fromarray(pixels((20, 60, 3))).save(photo)
    untiled = upscale(model, image_io.read_image(photo).pixels).astype(int)

    def tiled(pad: int) -> np.ndarray:
        out = tmp_path / f"pad{pad}.png"
        assert upscale_cli.main(["-i", str(photo), "-o", str(out), "-n", model, "-t", "30",
                                 "--tile_pad", str(pad)]) == 0
        return image_io.read_image(out).pixels.astype(int)

    radius, s = receptive_field_radius(TINY.num_blocks, TINY.scale), TINY.scale
    for pad in (radius, radius + 5):
        assert np.abs(tiled(pad) - untiled).max() <= 1, pad
    pad = 6
    inset = radius - pad
    difference = np.abs(tiled(pad) - untiled).max(axis=2)
    exact = np.zeros_like(difference, bool)
    for first, last in ((0, 30), (30, 60)):  # each tile's kept columns, inset by R - p
        exact[inset * s : (20 - inset) * s, (first + inset) * s : (last - inset) * s] = True
    assert difference[exact].max() <= 1
    assert difference[:, (30 - inset) * s : (30 + inset) * s].max() > 8  # the seam shows


def test_symbolic_links_out_of_the_output_folder_are_refused(model, tmp_path, capsys):
    """README: outputs always land inside -o; symbolic links out of it are refused, even with
    --overwrite: a sub-folder of -o that links elsewhere, and an output name that is a link to
    a file elsewhere. The other outputs are written; exit 1."""
    source = tmp_path / "in"
    for name in ("a.png", "sub/b.png", "c.png"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels((4, 5, 3))).save(source / name)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (elsewhere / "sub").mkdir(parents=True)
    (elsewhere / "victim.png").write_bytes(b"the user's file")
    out.mkdir()
    (out / "sub").symlink_to(elsewhere / "sub")
    (out / "c_x4.png").symlink_to(elsewhere / "victim.png")
    assert upscale_cli.main([str(source), "-o", str(out), "--model", model, "--overwrite"]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("srgan-jax upscale: ")]
    assert lines[:2] == [
        f"srgan-jax upscale: {source / 'c.png'}: output {out / 'c_x4.png'} would be written "
        f"outside {out} (through a symbolic link?)",
        f"srgan-jax upscale: {source / 'sub' / 'b.png'}: output {out / 'sub' / 'b_x4.png'} "
        f"would be written outside {out} (through a symbolic link?)"]
    assert (elsewhere / "victim.png").read_bytes() == b"the user's file"
    assert sorted(p.name for p in elsewhere.rglob("*")) == ["sub", "victim.png"]
    assert (out / "a_x4.png").is_file() and not (out / "a_x4.png").is_symlink()
