"""Upscale and export under bad input and faults (issue 14): each case with its message and exit
status. Nothing garbled with exit 0, nothing written where it must not be, no traceback."""
import pathlib
import warnings

import jax
import ml_collections
import numpy as np
import pytest
from fake_models import TINY, random_variables
from flax import serialization
from PIL import Image

import srgan_jax
from srgan_jax import cli
from srgan_jax.training import checkpoints
from srgan_jax.upscaling import inference, model_file, upscale_cli
from srgan_jax.upscaling.inference import NonFiniteOutputError, Upscaler

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def run(capsys, *argv) -> tuple[int, str]:
    """Exit status and stderr of `srgan-jax ARGV`, checked to be free of tracebacks."""
    status = cli.main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return status, err


def rgb(h, w, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("model") / "tiny.msgpack"
    model_file.save_model(path, random_variables(TINY), TINY)
    return path


@pytest.fixture
def photo(tmp_path) -> pathlib.Path:
    path = tmp_path / "photo.png"
    Image.fromarray(rgb(6, 7)).save(path)
    return path


# --- Damaged model files ----------------------------------------------------------------------

def test_flipped_bytes_in_the_weights_are_caught_by_the_checksum(model, tmp_path, photo, capsys):
    data = bytearray(model.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 200):  # 200 bytes inside the tensors
        data[i] ^= 0x5A
    damaged = tmp_path / "damaged.msgpack"
    damaged.write_bytes(bytes(data))
    status, err = run(capsys, "upscale", str(photo), "-o", str(tmp_path / "out"),
                      "--model", str(damaged))
    assert status == 1 and not (tmp_path / "out").exists()
    assert err.strip() == (f"srgan-jax upscale: {damaged}: the model file is damaged (its "
                           "weights do not match their checksum)")


def test_an_old_file_without_checksum_loads_with_a_warning():
    """Written by the previous srgan-jax (format version 1, no checksum): still loads."""
    path = FIXTURES / "model_v1_no_checksum.msgpack"
    with pytest.warns(model_file.ModelFileWarning, match=f"{path}: this model file has no check"):
        config, _ = model_file.load_model(path)
    assert (config.num_blocks, config.channels, config.scale) == (1, 8, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", model_file.ModelFileWarning)
        assert srgan_jax.upscale(str(path), rgb(3, 4)).shape == (6, 8, 3)


def test_a_nan_weight_is_refused_on_load(model, tmp_path):
    document = serialization.msgpack_restore(model.read_bytes())
    kernel = np.array(document["variables"]["params"]["Conv_0"]["kernel"])
    kernel[0, 0, 0, 0] = np.nan
    document["variables"]["params"]["Conv_0"]["kernel"] = kernel
    document["checksum"] = model_file.checksum(document["config"], document["variables"])
    path = tmp_path / "nan.msgpack"
    path.write_bytes(serialization.msgpack_serialize(document))
    with pytest.raises(model_file.ModelFileError, match="Conv_0/kernel holds NaN or infinite"):
        model_file.load_model(path)


@pytest.fixture
def overflowing(tmp_path) -> pathlib.Path:
    """Finite weights whose output overflows to infinity (a valid, signed file): every conv
    outside the residual blocks multiplies its input by about 1e20."""
    variables = random_variables(TINY)
    for name, layer in variables["params"].items():
        if name.startswith("Conv_"):
            layer["kernel"] = layer["kernel"] * np.float32(1e20)
    path = tmp_path / "overflow.msgpack"
    model_file.save_model(path, variables, TINY)
    return path


def test_nan_or_inf_output_fails_the_library_call(overflowing):
    with pytest.raises(NonFiniteOutputError, match="NaN or infinite"):
        srgan_jax.upscale(str(overflowing), rgb(5, 5))


def test_nan_or_inf_output_fails_that_file_in_the_cli(overflowing, photo, tmp_path, capsys):
    status, err = run(capsys, "upscale", str(photo), "-o", str(tmp_path / "out"),
                      "--model", str(overflowing))
    assert status == 1 and not list((tmp_path / "out").glob("*.png"))
    assert f"srgan-jax upscale: {photo}: the model's output has NaN or infinite values" in err


def test_a_model_file_whose_config_does_not_fit_its_tensors_is_named(model, tmp_path, photo,
                                                                      capsys):
    """A model whose recorded scale is wrong names the file and the tensor."""
    document = serialization.msgpack_restore(model.read_bytes())
    document["config"]["scale"] = 2
    document["checksum"] = model_file.checksum(document["config"], document["variables"])
    path = tmp_path / "wrong_scale.msgpack"
    path.write_bytes(serialization.msgpack_serialize(document))
    status, err = run(capsys, "upscale", str(photo), "--model", str(path))
    assert status == 1
    assert err.startswith(f"srgan-jax upscale: {path}: ") and "scale=2" in err


# --- Small images and borders -------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped() -> Upscaler:
    return srgan_jax.load_generator()


def test_a_1x1_image_keeps_its_colour(shipped):
    """Was (130, 242, 36) -> about (100, 100, 98). Mirrored to the receptive field, the pixel is a
    flat image to the model; measured now: (133, 245, 37)."""
    colour = np.array([[[130, 242, 36]]], np.uint8)
    out = srgan_jax.upscale(shipped, colour)
    assert out.shape == (4, 4, 3)
    assert np.abs(out.astype(float) - colour).mean(axis=(0, 1)).max() <= 4


def test_a_1x32_strip_keeps_its_brightness(shipped):
    """Was: more than half of the brightness lost. Measured now: within 3 levels per channel."""
    strip = np.zeros((1, 32, 3), np.uint8)
    strip[..., 0], strip[..., 1], strip[..., 2] = 180, 90, 180
    out = srgan_jax.upscale(shipped, strip).astype(float)
    assert out.shape == (4, 128, 3)
    assert np.abs(out.mean(axis=(0, 1)) - strip[0, 0]).max() <= 4


@pytest.mark.parametrize("name", ["lenna", "monarch"])
@pytest.mark.parametrize("size", [4, 16, 48])
def test_borders_match_the_same_image_cut_from_a_larger_one(shipped, shared_data, name, size):
    """A crop's upscaled border against the same pixels of the upscaled larger image.

    They cannot be equal: the crop lacks its real neighbours. Measured on Set14 (crops at
    (60, 60) of the top-left 160x160), the mean border difference is 1.5 to 2.5 levels with
    mirrored borders (zero padding, as before: 3.5 to 9.3), so 3 levels mean, and less than
    two thirds of the zero-padding difference, is the bound. The textured 'baboon' differs by
    about 10 levels either way: its border texture is not predictable from inside the crop.
    """
    image = np.asarray(Image.open(shared_data / "benchmarks" / "Set14" / f"{name}.png")
                       .convert("RGB"))[:160, :160]
    y = x = 60
    crop = image[y : y + size, x : x + size]
    whole = srgan_jax.upscale(shipped, image)[4 * y : 4 * (y + size), 4 * x : 4 * (x + size)]
    border = np.ones((4 * size, 4 * size), bool)
    border[4:-4, 4:-4] = False  # the outermost LR pixel's output

    def border_error(sr: np.ndarray) -> float:
        return float(np.abs(sr.astype(float) - whole)[border].mean())

    zero_padded = shipped.model.apply(shipped.variables, crop[None] / np.float32(255),
                                      train=False)[0]
    zero_padded = np.rint(np.clip((np.asarray(zero_padded) + 1) / 2, 0, 1) * 255)
    mirrored = border_error(srgan_jax.upscale(shipped, crop))
    assert mirrored <= 3.0
    assert mirrored < 2 / 3 * border_error(zero_padded)


# --- Pixel layouts and animations ---------------------------------------------------------------

def test_gray_with_alpha_stays_gray_with_alpha_in_the_library(model):
    image = Image.fromarray(np.dstack([rgb(5, 6)[..., 0], rgb(5, 6, 1)[..., 0]]), "LA")
    out = srgan_jax.upscale(str(model), image)
    assert out.mode == "LA" and out.size == (24, 20)
    pixels = np.asarray(image)
    np.testing.assert_array_equal(np.asarray(out)[..., 0],
                                  srgan_jax.upscale(str(model), pixels[..., 0]))


def test_gray_with_alpha_stays_gray_with_alpha(model, tmp_path, capsys):
    path = tmp_path / "la.png"
    Image.fromarray(np.dstack([rgb(5, 6)[..., 0], rgb(5, 6, 1)[..., 0]]), "LA").save(path)
    status, _ = run(capsys, "upscale", str(path), "-o", str(tmp_path / "out"),
                    "--model", str(model))
    assert status == 0
    with Image.open(tmp_path / "out" / "la_x4.png") as out:
        assert out.mode == "LA" and out.size == (24, 20)


def test_animated_images_are_refused(model, tmp_path, capsys):
    frames = [Image.fromarray(rgb(8, 8, seed)) for seed in range(3)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    status, err = run(capsys, "upscale", str(path), "-o", str(tmp_path / "out"),
                      "--model", str(model))
    assert status == 1 and not list(tmp_path.glob("out/*.gif"))
    assert f"srgan-jax upscale: {path}: animated or multi-page image (3 frames)" in err
    with Image.open(path) as image, pytest.raises(ValueError, match="animated image"):
        srgan_jax.upscale(str(model), image)


# --- Output paths -------------------------------------------------------------------------------

def test_a_single_input_may_name_its_output_file(model, photo, tmp_path, capsys):
    """Was: `-o result.gif` made a folder named result.gif. Now a file name is a file; a format
    srgan-jax cannot write (GIF: 256 colours) is refused up front, with the ones it can."""
    target = tmp_path / "result.webp"
    status, _ = run(capsys, "upscale", str(photo), "-o", str(target), "--model", str(model))
    assert status == 0 and target.is_file()
    with Image.open(target) as image:
        assert image.format == "WEBP" and image.size == (28, 24)
    gif = tmp_path / "result.gif"
    status, err = run(capsys, "upscale", str(photo), "-o", str(gif), "--model", str(model))
    assert status == 1 and not gif.exists()
    assert err.startswith(f"srgan-jax upscale: {gif}: cannot write .gif files; name the output")


def test_a_suffix_can_never_leave_the_output_folder(model, photo, tmp_path, capsys):
    out = tmp_path / "deep" / "out"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["upscale", str(photo), "-o", str(out), "--suffix", "/../../x",
                  "--model", str(model)])
    assert exit_.value.code == 2 and "must not contain a path separator" in capsys.readouterr().err
    assert not any(p.is_file() for p in tmp_path.rglob("*x*.png"))


def test_an_existing_output_is_kept(model, photo, tmp_path, capsys):
    target = tmp_path / "big.png"
    target.write_bytes(b"the user's file")
    status, err = run(capsys, "upscale", str(photo), "-o", str(target), "--model", str(model))
    assert status == 1 and "exists (pass --overwrite" in err
    assert target.read_bytes() == b"the user's file"


# --- Memory, interrupts ------------------------------------------------------------------------

def test_an_explicit_tile_too_large_for_the_budget_is_capped(model, tmp_path, monkeypatch,
                                                              capsys):
    """Was: std::bad_alloc (exit 134) for the whole batch. Now capped like automatic tiling,
    with a note of the size it would need, and the same result."""
    monkeypatch.setattr(inference, "default_memory_budget", lambda device=None: 2 << 20)
    path = tmp_path / "big.png"
    Image.fromarray(rgb(80, 90)).save(path)
    status, err = run(capsys, "upscale", str(path), "-o", str(tmp_path / "out"),
                      "--model", str(model), "--tile", "4000")
    assert status == 0
    assert "--tile 4000 needs about" in err and "using tiles of" in err
    expected = srgan_jax.upscale(Upscaler.from_path(model, memory_budget=1 << 40), rgb(80, 90))
    out = np.asarray(Image.open(tmp_path / "out" / "big_x4.png"))
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_ctrl_c_is_exit_130_without_a_traceback(model, photo, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(upscale_cli, "upscale_pixels", interrupted)
    status, err = run(capsys, "upscale", str(photo), "-o", str(tmp_path / "out"),
                      "--model", str(model))
    assert status == 130
    assert "interrupted: 0 image(s) written" in err


# --- Export of damaged checkpoints -------------------------------------------------------------

@pytest.fixture
def workdir(tmp_path) -> pathlib.Path:
    config = ml_collections.ConfigDict(
        {"model": {"num_blocks": 2, "channels": 16, "scale": 4}, "crop_size": 32}
    )
    with checkpoints.Checkpointer(str(tmp_path / "work"), config) as ckpt:
        state = {**random_variables(TINY), "step": np.int32(1)}
        ckpt.save(checkpoints.TrainingCheckpoint(1, "pretrain", state, None, jax.random.key(0),
                                                 {}))
    return tmp_path / "work"


def test_export_of_a_checkpoint_with_empty_metadata_is_one_line(workdir, tmp_path, capsys):
    for metadata in (workdir / "checkpoints" / "1").rglob("_METADATA"):
        metadata.write_text("")
    status, err = run(capsys, "export", "--workdir", str(workdir), "-o", str(tmp_path / "m"))
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("srgan-jax export: ") and "checkpoint" in err
    assert not (tmp_path / "m").exists()


def test_export_of_a_checkpoint_without_its_generator_is_one_line(workdir, tmp_path, capsys):
    import shutil

    shutil.rmtree(workdir / "checkpoints" / "1" / "generator")
    status, err = run(capsys, "export", "--workdir", str(workdir), "-o", str(tmp_path / "m"))
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("srgan-jax export: ") and "generator" in err
