"""VGG19 feature maps for the SRGAN content loss, with the Keras ImageNet weights.

`VGG19Features(layer='phi_5_4')` runs the VGG19 convolutions up to the named feature map. In the
paper's notation phi_i_j is the output of the j-th convolution of block i, after its ReLU and
before the next max-pool: phi_5_4 feeds SRGAN's "VGG54" loss, phi_2_2 its "VGG22" loss.

The weights are Keras's `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` (the original Caffe
weights in TF kernel layout, HWIO like flax). They expect Keras's "caffe" preprocessing, which the
module applies itself: 0..255 range, RGB -> BGR, ImageNet BGR mean subtracted, no scaling.
`load_vgg19_params` finds the file (explicit path, `$SRGAN_JAX_VGG19_WEIGHTS`, the user cache, or
a download from the address Keras uses, checked against Keras's md5) and reads it by the layer and
weight names stored in the file, never by position.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import flax.linen as nn
import h5py
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any
Params = dict[str, Any]

WEIGHTS_FILENAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
# keras/src/applications/vgg19.py: WEIGHTS_PATH_NO_TOP and the `file_hash` it passes to get_file
# (32 hex digits, which get_file checks with md5).
WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + WEIGHTS_FILENAME
)
WEIGHTS_MD5 = "253f8cb515780f3b799900260a226db6"
ENV_WEIGHTS = "SRGAN_JAX_VGG19_WEIGHTS"
ENV_OFFLINE = "SRGAN_JAX_OFFLINE"

# Output channels of each conv in each of VGG19's five blocks.
VGG19_BLOCKS = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)
# keras.applications.imagenet_utils "caffe" mode: per-channel ImageNet mean, in BGR order.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

# Weight names: Keras 1 `block1_conv1_W_1:0`, Keras 2 `block1_conv1/kernel:0`, Keras 3 `.../kernel`.
_KERNEL_NAME = re.compile(r"(kernel|_W(_\d+)?)(:\d+)?$")
_BIAS_NAME = re.compile(r"(bias|_b(_\d+)?)(:\d+)?$")


class VGGWeightsError(ValueError):
    """The VGG19 weights file is unreadable, has the wrong hash, or lacks a layer or shape."""


class VGGWeightsNotFoundError(FileNotFoundError):
    """No VGG19 weights file is available and downloading is switched off."""


def conv_layers(layer: str) -> list[tuple[str, int, int]]:
    """`(keras_name, in_channels, out_channels)` of each conv up to the feature map `layer`."""
    match = re.fullmatch(r"phi_(\d+)_(\d+)", layer)
    block, conv = (int(match[1]), int(match[2])) if match else (0, 0)
    if not (1 <= block <= len(VGG19_BLOCKS) and 1 <= conv <= len(VGG19_BLOCKS[block - 1])):
        valid = ", ".join(
            f"phi_{b}_{c}"
            for b, widths in enumerate(VGG19_BLOCKS, 1)
            for c in range(1, len(widths) + 1)
        )
        raise ValueError(f"unknown VGG19 feature map {layer!r}; valid names: {valid}")
    convs, in_channels = [], 3
    for b, widths in enumerate(VGG19_BLOCKS[:block], start=1):
        for c, out_channels in enumerate(widths[: conv if b == block else None], start=1):
            convs.append((f"block{b}_conv{c}", in_channels, out_channels))
            in_channels = out_channels
    return convs


def caffe_preprocess(images: jnp.ndarray) -> jnp.ndarray:
    """RGB in [-1, 1] -> the Keras VGG input: BGR in 0..255 minus the ImageNet mean (caffe mode)."""
    x255 = (images.astype(jnp.float32) + 1.0) * 127.5
    return x255[..., ::-1] - jnp.asarray(CAFFE_MEAN_BGR, jnp.float32)


def max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
    """2x2 max pooling with stride 2 ('VALID': an odd last row or column is dropped).

    The same values as `nn.max_pool(x, (2, 2), strides=(2, 2))`, written as a reshape and a max so
    that its gradient is elementwise: XLA:CPU turns the gradient of a pooling window into a
    select-and-scatter with index arrays, which took 4 % of the SRGAN step there. The gradient
    differs only where a window holds two equal maxima (this one splits it, the window form gives
    it to one); after VGG's ReLU such ties are zeros, whose ReLU gradient is zero either way.
    """
    n, height, width, channels = x.shape
    x = x[:, : height - height % 2, : width - width % 2]
    return x.reshape(n, height // 2, 2, width // 2, 2, channels).max(axis=(2, 4))


class VGG19Features(nn.Module):
    """VGG19 convolutions (3x3 'SAME' + ReLU, 2x2 max-pool between blocks) up to `layer`.

    Takes RGB NHWC images in [-1, 1] and returns float32 features. `dtype` is the compute dtype;
    parameters stay float32. Parameter names are Keras's (`block1_conv1`, ..., `block5_conv4`),
    each with `kernel` (3, 3, in, out) and `bias`.
    """

    layer: str = "phi_5_4"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jnp.ndarray) -> jnp.ndarray:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"VGG19Features expects RGB NHWC images, got shape {images.shape}")
        x = caffe_preprocess(images)
        block = 1
        for name, _, out_channels in conv_layers(self.layer):
            if not name.startswith(f"block{block}_"):
                x = max_pool_2x2(x)
                block += 1
            conv = nn.Conv(
                out_channels,
                (3, 3),
                padding="SAME",
                dtype=self.dtype,
                param_dtype=jnp.float32,
                # He init keeps the activation scale through the ReLU stack, so that random
                # (test/benchmark) features neither vanish nor explode with depth.
                kernel_init=nn.initializers.he_normal(),
                name=name,
            )
            x = nn.relu(conv(x))
        return x.astype(jnp.float32)


def random_vgg19_params(rng: jax.Array, layer: str = "phi_5_4") -> Params:
    """Randomly initialised `{'params': ...}` for `VGG19Features(layer)`.

    For tests, benchmarks and offline demos only: these are NOT perceptual features, and a
    content loss built on them does not reproduce SRGAN.
    """
    # 16x16 is the smallest input that survives all four max-pools.
    return VGG19Features(layer).init(rng, jnp.zeros((1, 16, 16, 3), jnp.float32))


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/srgan_jax`, else `~/.cache/srgan_jax`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "srgan_jax"


def _offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes")


def resolve_vgg19_weights(
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """The weights file to use: `path`, else `$SRGAN_JAX_VGG19_WEIGHTS`, else the cached copy.

    Without a cached copy it is downloaded from Keras's address into the cache (md5 checked),
    unless `download=False` or `$SRGAN_JAX_OFFLINE=1`, which raise `VGGWeightsNotFoundError`
    saying where to put the file.
    """
    for given, source in (
        (path, "path argument"),
        (os.environ.get(ENV_WEIGHTS), f"${ENV_WEIGHTS}"),
    ):
        if given:
            if not Path(given).is_file():
                raise VGGWeightsNotFoundError(
                    f"VGG19 weights file {given} (from {source}) not found"
                )
            return Path(given)
    cached = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cached / WEIGHTS_FILENAME
    if cached.is_file():
        _check_md5(cached, "delete it to download it again")
        return cached
    if not download or _offline():
        why = "download=False" if not download else f"${ENV_OFFLINE} is set"
        raise VGGWeightsNotFoundError(
            f"VGG19 weights not found and downloads are off ({why}). {_by_hand(cached)}"
        )
    try:
        return _download(WEIGHTS_URL, cached)
    except urllib.error.URLError as e:
        raise VGGWeightsNotFoundError(
            f"could not download the VGG19 weights ({e.reason}). {_by_hand(cached)}"
        ) from e


def _by_hand(target: Path) -> str:
    return (
        f"Download {WEIGHTS_URL} (md5 {WEIGHTS_MD5}) and put it at {target}, "
        f"or point ${ENV_WEIGHTS} at a copy."
    )


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_md5(path: Path, remedy: str) -> None:
    actual = _file_md5(path)
    if actual != WEIGHTS_MD5:
        raise VGGWeightsError(
            f"{path}: md5 {actual} does not match Keras's {WEIGHTS_MD5} for {WEIGHTS_FILENAME}; "
            f"{remedy}"
        )


def _download(url: str, target: Path) -> Path:
    """Streams `url` to a temporary file beside `target`, checks its md5, then renames it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=target.name, suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0)
            for done in _copy_chunks(response, out):
                size = f"{done / 1e6:.1f}" + (f"/{total / 1e6:.1f}" if total else "")
                print(f"\rDownloading {url}: {size} MB", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        _check_md5(tmp, f"the download from {url} is corrupt or the file changed; nothing was kept")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _copy_chunks(src: Any, dst: Any, chunk_size: int = 1 << 20) -> Iterator[int]:
    """Copies file-like `src` to `dst`, yielding the bytes written so far after each chunk."""
    done = 0
    while chunk := src.read(chunk_size):
        dst.write(chunk)
        done += len(chunk)
        yield done


def _names(attrs: h5py.AttributeManager, key: str) -> list[str]:
    """A Keras name list attribute, also when Keras split a long one into `key0`, `key1`, ..."""
    if key in attrs:
        chunks = [key]
    else:
        chunks = list(
            itertools.takewhile(attrs.__contains__, (f"{key}{i}" for i in itertools.count()))
        )
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for c in chunks for n in attrs[c]]


def read_vgg19_h5(path: str | os.PathLike, layer: str = "phi_5_4") -> Params:
    """`{'params': ...}` for `VGG19Features(layer)` from a Keras VGG19 weights file at `path`."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise VGGWeightsError(f"{path}: not a readable HDF5 weights file ({e})") from e
    with f:
        backend = f.attrs.get("backend", b"tensorflow")
        if (backend.decode() if isinstance(backend, bytes) else str(backend)) == "theano":
            raise VGGWeightsError(f"{path}: has Theano (flipped) kernels; use {WEIGHTS_FILENAME}")
        stored = set(_names(f.attrs, "layer_names"))
        params = {}
        for name, in_channels, out_channels in conv_layers(layer):
            if name not in stored or name not in f:
                raise VGGWeightsError(f"{path}: layer {name} is missing from its layer_names")
            params[name] = _read_conv(f[name], path, name, in_channels, out_channels)
    return {"params": params}


def _weight_kind(weight_name: str) -> str | None:
    """'kernel' or 'bias' from a Keras weight name, in any Keras version's spelling."""
    if _KERNEL_NAME.search(weight_name):
        return "kernel"
    return "bias" if _BIAS_NAME.search(weight_name) else None


def _read_conv(
    group: h5py.Group, path: Any, name: str, in_channels: int, out_channels: int
) -> dict[str, jnp.ndarray]:
    """A conv layer's kernel and bias, picked by their stored weight names and shape-checked."""
    expected = {"kernel": (3, 3, in_channels, out_channels), "bias": (out_channels,)}
    found = {}
    for weight_name in _names(group.attrs, "weight_names"):
        kind = _weight_kind(weight_name)
        if kind is None or kind in found:
            raise VGGWeightsError(f"{path}: layer {name} has an unexpected weight {weight_name!r}")
        value = np.asarray(group[weight_name], np.float32)
        if value.shape != expected[kind]:
            raise VGGWeightsError(
                f"{path}: layer {name} {kind} has shape {value.shape}, expected {expected[kind]}"
            )
        found[kind] = jnp.asarray(value)
    if missing := expected.keys() - found.keys():
        raise VGGWeightsError(f"{path}: layer {name} has no {' or '.join(sorted(missing))} weight")
    return found


def check_vgg19_weights(path: str | os.PathLike, layers: Iterable[str]) -> str | None:
    """Reads every conv up to the deepest of the feature maps `layers` from the file at `path`,
    so that a damaged file, or one that is not VGG19's, fails with a `VGGWeightsError` naming it
    before training starts. Returns a warning naming the file if it is not Keras's file (by md5):
    other weights work, but the VGG losses are then not the paper's. None for Keras's file."""
    read_vgg19_h5(path, max(layers, key=lambda layer: len(conv_layers(layer))))
    actual = _file_md5(Path(path))
    if actual == WEIGHTS_MD5:
        return None
    return (f"{path}: md5 {actual} is not that of Keras's {WEIGHTS_FILENAME} ({WEIGHTS_MD5}); "
            "the VGG losses use these weights as they are, and are not the paper's")


def load_vgg19_params(
    path: str | os.PathLike | None = None,
    *,
    layer: str = "phi_5_4",
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> Params:
    """Pretrained `{'params': ...}` for `VGG19Features(layer)`, holding only the convs it uses.

    See `resolve_vgg19_weights` for where the file comes from.
    """
    conv_layers(layer)  # reject a bad layer name before any download
    return read_vgg19_h5(resolve_vgg19_weights(path, download=download, cache_dir=cache_dir), layer)
