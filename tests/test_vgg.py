"""VGG19 features and Keras weight loading, against files written in Keras's own HDF5 layout and
an independent float64 numpy VGG."""

import hashlib
import urllib.request
from pathlib import Path

import flax.linen as nn
import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax import vgg

# VGG19 (Simonyan & Zisserman 2015, config E), as Keras names its layers.
BLOCK_WIDTHS = ([64] * 2, [128] * 2, [256] * 4, [512] * 4, [512] * 4)
CONVS = []  # (name, in, out)
KERAS_NOTOP_LAYERS = ["input_1"]  # `layer_names` of a Keras notop file, pooling layers included
for _b, _widths in enumerate(BLOCK_WIDTHS, start=1):
    for _c, _out in enumerate(_widths, start=1):
        CONVS.append((f"block{_b}_conv{_c}", CONVS[-1][2] if CONVS else 3, _out))
        KERAS_NOTOP_LAYERS.append(f"block{_b}_conv{_c}")
    KERAS_NOTOP_LAYERS.append(f"block{_b}_pool")
PHI_2_2_LAYERS = KERAS_NOTOP_LAYERS[: KERAS_NOTOP_LAYERS.index("block2_pool") + 1]

# Dataset names inside a layer's group, as each Keras generation wrote them.
WEIGHT_NAME = {
    "keras1": lambda layer, kind: f"{layer}_{'W' if kind == 'kernel' else 'b'}_1:0",
    "keras2": lambda layer, kind: f"{layer}/{kind}:0",
    "keras3": lambda layer, kind: f"{layer}/{kind}",
}
MEAN_BGR = np.array([103.939, 116.779, 123.68])


def random_weights(seed: int, num_convs: int = len(CONVS)) -> dict[str, dict[str, np.ndarray]]:
    """He-scaled random kernels (activations keep their size through 16 layers) and biases."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, cin, cout in CONVS[:num_convs]:
        kernel = rng.standard_normal((3, 3, cin, cout)) * np.sqrt(2 / (9 * cin))
        bias = rng.standard_normal(cout) * 0.1
        weights[name] = {"kernel": kernel.astype(np.float32), "bias": bias.astype(np.float32)}
    return weights


def write_keras_h5(
    path: Path,
    weights: dict[str, dict[str, np.ndarray]],
    layer_names: list[str] = KERAS_NOTOP_LAYERS,
    style: str = "keras1",
    backend: str = "tensorflow",
) -> Path:
    """Writes `weights` the way Keras's `save_weights_to_hdf5_group` does.

    Root attributes `layer_names`, `backend`, `keras_version`; one group per layer whose attribute
    `weight_names` lists its datasets (empty for input and pooling layers), kernel then bias.
    """
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode("utf8") for n in layer_names]
        f.attrs["backend"] = backend.encode("utf8")
        f.attrs["keras_version"] = b"2.2.4"
        for layer in layer_names:
            group = f.create_group(layer)
            kinds = ["kernel", "bias"] if layer in weights else []
            names = [WEIGHT_NAME[style](layer, kind) for kind in kinds]
            group.attrs["weight_names"] = [n.encode("utf8") for n in names]
            for name, kind in zip(names, kinds, strict=True):
                group.create_dataset(name, data=weights[layer][kind])
    return path


@pytest.fixture(scope="module")
def full_weights() -> dict[str, dict[str, np.ndarray]]:
    return random_weights(seed=0)


@pytest.fixture(scope="module")
def notop_file(tmp_path_factory, full_weights) -> Path:
    """All 16 convs in the layout of the real Keras notop file (`block1_conv1_W_1:0` datasets)."""
    return write_keras_h5(tmp_path_factory.mktemp("weights") / vgg.WEIGHTS_FILENAME, full_weights)


@pytest.fixture
def small_weights() -> dict[str, dict[str, np.ndarray]]:
    return random_weights(seed=1, num_convs=4)


@pytest.fixture
def small_file(tmp_path, small_weights) -> Path:
    """A file with just what phi_2_2 needs: fast to write, hash and 'download'."""
    return write_keras_h5(tmp_path / "small.h5", small_weights, PHI_2_2_LAYERS)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No weight override, downloads allowed, and the user cache under tmp_path."""
    monkeypatch.delenv(vgg.ENV_WEIGHTS, raising=False)
    monkeypatch.delenv(vgg.ENV_OFFLINE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return monkeypatch


def assert_params_equal(params, weights, names):
    assert sorted(params["params"]) == sorted(names)
    for name in names:
        for kind in ("kernel", "bias"):
            loaded = params["params"][name][kind]
            assert loaded.dtype == jnp.float32
            np.testing.assert_array_equal(np.asarray(loaded), weights[name][kind])


# ----------------------------------------------------------------------------- numpy reference


def np_conv3x3_relu(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """'SAME' 3x3 cross-correlation + bias + ReLU by explicit windows (float64)."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))  # n,h,w,c,3,3
    out = np.einsum("nhwcij,ijco->nhwo", windows, kernel.astype(np.float64), optimize=True)
    return np.maximum(out + bias, 0.0)


def np_maxpool2(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]  # Keras 'valid' pooling drops an odd last row/column
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def np_vgg19_features(images: np.ndarray, weights, last: str) -> np.ndarray:
    x = (images.astype(np.float64) + 1.0) * 127.5  # [-1, 1] -> [0, 255]
    x = x[..., [2, 1, 0]] - MEAN_BGR  # keras.applications.vgg19.preprocess_input ("caffe")
    for name, _, _ in CONVS:
        if name.endswith("_conv1") and name != "block1_conv1":
            x = np_maxpool2(x)
        x = np_conv3x3_relu(x, weights[name]["kernel"], weights[name]["bias"])
        if name == last:
            return x
    raise ValueError(last)


# ----------------------------------------------------------------------------- tests


def test_conv_layers_follow_vgg19():
    assert vgg.conv_layers("phi_5_4") == CONVS
    assert vgg.conv_layers("phi_2_2") == CONVS[:4]
    assert vgg.conv_layers("phi_3_1") == CONVS[:5]
    for bad in ("phi_6_1", "phi_2_3", "phi_0_1", "phi_1_0", "block5_conv4", "phi_5_4 "):
        with pytest.raises(ValueError, match="valid names: phi_1_1"):
            vgg.conv_layers(bad)


def test_loads_keras_notop_file(notop_file, full_weights):
    assert_params_equal(vgg.read_vgg19_h5(notop_file, "phi_5_4"), full_weights, list(full_weights))
    # Only the convs the feature map needs.
    names = [name for name, _, _ in CONVS[:4]]
    assert_params_equal(vgg.read_vgg19_h5(notop_file, "phi_2_2"), full_weights, names)


@pytest.mark.parametrize("style", ["keras2", "keras3"])
def test_loads_newer_keras_weight_names(tmp_path, small_weights, style):
    path = write_keras_h5(tmp_path / "w.h5", small_weights, PHI_2_2_LAYERS, style=style)
    assert_params_equal(vgg.read_vgg19_h5(path, "phi_2_2"), small_weights, list(small_weights))


def test_weights_found_by_stored_names_not_position(small_file, small_weights):
    with h5py.File(small_file, "r+") as f:
        group = f["block1_conv2"]
        names = list(group.attrs["weight_names"])
        group.attrs["weight_names"] = names[::-1]  # bias listed first
        # A dataset the attributes do not list must be ignored, even if it sorts first.
        group.create_dataset("block1_conv2_A_1:0", data=np.zeros((3, 3, 64, 64), np.float32))
    params = vgg.read_vgg19_h5(small_file, "phi_2_2")
    assert_params_equal(params, small_weights, list(small_weights))


@pytest.mark.parametrize("layer", ["phi_2_2", "phi_5_4"])
def test_features_match_float64_numpy(notop_file, full_weights, layer):
    # Odd sizes on the way down (36x44 -> 18x22 -> 9x11 -> 4x5 -> 2x2) check 'valid' pooling.
    images = np.random.default_rng(2).uniform(-1, 1, (2, 36, 44, 3)).astype(np.float32)
    params = vgg.read_vgg19_h5(notop_file, layer)
    ours = jax.jit(vgg.VGG19Features(layer).apply)(params, images)
    last = {"phi_2_2": "block2_conv2", "phi_5_4": "block5_conv4"}[layer]
    ref = np_vgg19_features(images, full_weights, last)
    assert ours.dtype == jnp.float32
    assert ours.shape == ref.shape
    assert ref.max() > 1.0 and (ref == 0).mean() < 0.9  # the check below is not vacuous
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (1, 9, 7, 2)])
def test_max_pool_2x2_equals_flax_max_pool_with_its_gradient(shape):
    x = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)  # no ties
    weights = jnp.asarray(np.random.default_rng(1).random((shape[1] // 2, shape[2] // 2, 1)))

    def flax_pool(x):
        return nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")

    for pool in (vgg.max_pool_2x2, flax_pool):
        assert pool(x).shape == flax_pool(x).shape
    np.testing.assert_array_equal(vgg.max_pool_2x2(x), flax_pool(x))
    grads = [jax.grad(lambda x, p=pool: jnp.sum(p(x) * weights))(x)
             for pool in (vgg.max_pool_2x2, flax_pool)]
    np.testing.assert_array_equal(*grads)


def test_feature_shapes_for_srgan_crops():
    params = jax.eval_shape(vgg.random_vgg19_params, jax.random.key(0))
    hr = jax.ShapeDtypeStruct((4, 96, 96, 3), jnp.float32)
    assert jax.eval_shape(vgg.VGG19Features().apply, params, hr).shape == (4, 6, 6, 512)
    params22 = jax.eval_shape(
        lambda rng: vgg.random_vgg19_params(rng, "phi_2_2"), jax.random.key(0)
    )
    out = jax.eval_shape(vgg.VGG19Features("phi_2_2").apply, params22, hr)
    assert out.shape == (4, 48, 48, 128)


def test_random_params_have_keras_names_and_shapes():
    params = vgg.random_vgg19_params(jax.random.key(0), "phi_2_2")["params"]
    assert {name: (p["kernel"].shape, p["bias"].shape) for name, p in params.items()} == {
        name: ((3, 3, cin, cout), (cout,)) for name, cin, cout in CONVS[:4]
    }


def test_bf16_compute_keeps_f32_params(small_file):
    model = vgg.VGG19Features("phi_2_2", dtype=jnp.bfloat16)
    init_params = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    assert {p.dtype for p in jax.tree.leaves(init_params)} == {jnp.dtype(jnp.float32)}

    params = vgg.read_vgg19_h5(small_file, "phi_2_2")
    images = jnp.asarray(np.random.default_rng(3).uniform(-1, 1, (1, 16, 16, 3)), jnp.float32)
    convs = [
        eqn
        for eqn in jax.make_jaxpr(model.apply)(params, images).eqns
        if eqn.primitive.name == "conv_general_dilated"
    ]
    assert len(convs) == 4
    assert all(v.aval.dtype == jnp.bfloat16 for eqn in convs for v in eqn.invars)

    out = model.apply(params, images)
    ref = vgg.VGG19Features("phi_2_2").apply(params, images)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, ref, atol=0.05 * float(jnp.abs(ref).max()))


def test_wrong_shape_names_layer_and_shapes(tmp_path, small_weights):
    small_weights["block2_conv1"]["kernel"] = np.zeros((3, 3, 64, 64), np.float32)
    path = write_keras_h5(tmp_path / "w.h5", small_weights, PHI_2_2_LAYERS)
    with pytest.raises(
        vgg.VGGWeightsError,
        match=r"block2_conv1 kernel .*\(3, 3, 64, 64\).*"
        r"\(3, 3, 64, 128\)",
    ):
        vgg.read_vgg19_h5(path, "phi_2_2")


def test_missing_layer_is_named(small_file):
    with pytest.raises(vgg.VGGWeightsError, match="block3_conv1"):
        vgg.read_vgg19_h5(small_file, "phi_3_1")


def test_missing_bias_is_named(tmp_path, small_weights):
    path = write_keras_h5(tmp_path / "w.h5", small_weights, PHI_2_2_LAYERS)
    with h5py.File(path, "r+") as f:
        f["block1_conv2"].attrs["weight_names"] = [b"block1_conv2_W_1:0"]
    with pytest.raises(vgg.VGGWeightsError, match="block1_conv2 has no bias"):
        vgg.read_vgg19_h5(path, "phi_2_2")


def test_not_hdf5_names_file(tmp_path):
    path = tmp_path / "broken.h5"
    path.write_bytes(b"<html>404</html>")
    with pytest.raises(vgg.VGGWeightsError, match="broken.h5"):
        vgg.read_vgg19_h5(path, "phi_2_2")


def test_theano_kernels_rejected(tmp_path, small_weights):
    path = write_keras_h5(tmp_path / "w.h5", small_weights, PHI_2_2_LAYERS, backend="theano")
    with pytest.raises(vgg.VGGWeightsError, match="Theano"):
        vgg.read_vgg19_h5(path, "phi_2_2")


# ----------------------------------------------------------------------------- finding the file


def serve(monkeypatch, path: Path, md5: str | None = None) -> None:
    """Points the download at `path` (a file:// URL) with `md5` (default: the file's own)."""
    monkeypatch.setattr(vgg, "WEIGHTS_URL", path.as_uri())
    monkeypatch.setattr(vgg, "WEIGHTS_MD5", md5 or hashlib.md5(path.read_bytes()).hexdigest())


def test_download_checks_hash_then_caches(clean_env, tmp_path, small_file, small_weights, capsys):
    serve(clean_env, small_file)
    params = vgg.load_vgg19_params(layer="phi_2_2")
    cached = tmp_path / "xdg" / "srgan_jax" / vgg.WEIGHTS_FILENAME
    assert cached.read_bytes() == small_file.read_bytes()
    assert list(cached.parent.iterdir()) == [cached]  # no temporary file left behind
    assert "Downloading" in capsys.readouterr().err
    assert_params_equal(params, small_weights, list(small_weights))

    def no_network(*args, **kwargs):
        raise AssertionError("the cached file should have been used")

    clean_env.setattr(urllib.request, "urlopen", no_network)
    assert_params_equal(vgg.load_vgg19_params(layer="phi_2_2"), small_weights, list(small_weights))


def test_download_with_wrong_hash_keeps_nothing(clean_env, tmp_path, small_file):
    serve(clean_env, small_file, md5="0" * 32)
    cache = tmp_path / "cache"
    with pytest.raises(vgg.VGGWeightsError, match="md5"):
        vgg.load_vgg19_params(layer="phi_2_2", cache_dir=cache)
    assert not any(cache.iterdir())


def test_failed_download_says_where_to_put_the_file(clean_env, tmp_path):
    serve(clean_env, tmp_path / "gone.h5", md5="0" * 32)
    cache = tmp_path / "cache"
    with pytest.raises(vgg.VGGWeightsNotFoundError, match="could not download") as err:
        vgg.load_vgg19_params(cache_dir=cache)
    assert str(cache / vgg.WEIGHTS_FILENAME) in str(err.value)
    assert not any(cache.iterdir())


def test_cached_file_with_wrong_hash_is_an_error(clean_env, tmp_path, small_file):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / vgg.WEIGHTS_FILENAME).write_bytes(small_file.read_bytes())
    with pytest.raises(vgg.VGGWeightsError, match="md5 .* does not match"):
        vgg.load_vgg19_params(layer="phi_2_2", cache_dir=cache)


@pytest.mark.parametrize("switch", ["argument", "env"])
def test_offline_without_file_says_where_to_put_it(clean_env, tmp_path, switch):
    kwargs = {"download": False} if switch == "argument" else {}
    if switch == "env":
        clean_env.setenv(vgg.ENV_OFFLINE, "1")
    with pytest.raises(vgg.VGGWeightsNotFoundError) as err:
        vgg.load_vgg19_params(**kwargs)
    message = str(err.value)
    assert str(tmp_path / "xdg" / "srgan_jax" / vgg.WEIGHTS_FILENAME) in message
    assert vgg.WEIGHTS_URL in message and vgg.ENV_WEIGHTS in message
    assert isinstance(err.value, FileNotFoundError)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert vgg.default_cache_dir() == tmp_path / "srgan_jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert vgg.default_cache_dir() == tmp_path / "home" / ".cache" / "srgan_jax"


def test_env_override_and_explicit_path_win(clean_env, tmp_path, small_file, small_weights):
    clean_env.setenv(vgg.ENV_OFFLINE, "1")
    clean_env.setenv(vgg.ENV_WEIGHTS, str(small_file))
    assert_params_equal(vgg.load_vgg19_params(layer="phi_2_2"), small_weights, list(small_weights))

    clean_env.setenv(vgg.ENV_WEIGHTS, str(tmp_path / "nowhere.h5"))
    with pytest.raises(vgg.VGGWeightsNotFoundError, match=f"nowhere.h5 .*{vgg.ENV_WEIGHTS}"):
        vgg.load_vgg19_params(layer="phi_2_2")
    params = vgg.load_vgg19_params(small_file, layer="phi_2_2")
    assert_params_equal(params, small_weights, list(small_weights))


def test_bad_layer_rejected_before_download(clean_env):
    clean_env.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(ValueError, match="phi_9_9"):
        vgg.load_vgg19_params(layer="phi_9_9")
