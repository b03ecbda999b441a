"""Training and validation data: image sources, aligned random crops, per-device batches.

Sources (`make_source`, selected by `config.data.source`):

* ``'folder'``: image files found recursively under `config.data.train_dirs` (or `eval_dirs`),
  decoded once into host memory as uint8 when they fit in `config.data.cache_bytes`;
* ``'demo'``: the procedural textures of `srgan_jax.data.demo_data` (no download);
* ``'tfds'``: TFDS `div2k/*` (`config.data.tfds_name`), loaded into host memory by
  `srgan_jax.data.tfds_data`, the only module that imports TensorFlow.

A training example is a random `crop_size` HR crop of an image, turned by one of the eight
flips/rotations, with its LR made by `imresize.degrade` (MATLAB bicubic on the uint8 crop, the
benchmark protocol) or cut from the dataset's own LR image at the aligned place. The examples of one
batch come from distinct images while the source has enough of them, as in the paper. LR comes out
in [0, 1] and HR in [-1, 1], as float32.

Batches are a pure function of (seed, step): the batch's images are a permutation drawn from
`np.random.default_rng([seed, step])`, and example `k` of the global batch draws its crop and
transform from `np.random.default_rng([seed, step, k])`. Each host computes only its own examples,
so the hosts' shares partition the same global batch whatever the process count, and the iterator
position is just the step: `get_state()` / `set_state()` resume exactly, and prefetching (in
background threads) cannot change the stream.
"""
from __future__ import annotations

import collections
import concurrent.futures
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence

import ml_collections
import numpy as np

from srgan_jax import image_io
from srgan_jax.data import demo_data
from srgan_jax.data.image_source import ImageSource
from srgan_jax.imresize import degrade

LAYOUTS = ("pmap", "global")
DEFAULT_CACHE_BYTES = 8 * 2**30
Batch = dict[str, np.ndarray]


class SkippedImageWarning(UserWarning):
    """An image file left out of a data source (unreadable, or smaller than the crop)."""


def default_config() -> ml_collections.ConfigDict:
    """The `config.data` fields this module reads, with their defaults."""
    config = ml_collections.ConfigDict()
    config.source = "demo"  # 'folder' | 'demo' | 'tfds'
    # Tuples, not lists: only tuples can be overridden on the command line
    # (`--config.data.train_dirs=/a --config.data.train_dirs=/b` or `='("/a", "/b")'`).
    config.train_dirs = ()  # 'folder': training image folders, searched recursively
    config.eval_dirs = ()  # 'folder': validation folders (full images, e.g. Set5)
    config.tfds_name = "div2k/bicubic_x4"  # 'tfds': any div2k config
    config.tfds_data_dir = ml_collections.config_dict.placeholder(str)  # None: TFDS default
    config.use_dataset_lr = False  # 'tfds': the dataset's LR images instead of our degradation
    config.cache_bytes = DEFAULT_CACHE_BYTES  # 'folder': decode once into memory up to this size
    config.prefetch = 2  # batches prepared ahead in background threads (0: none)
    config.num_workers = 2  # threads preparing batches
    config.device_prefetch = 2  # batches placed on the devices ahead of the step (0: none)
    # Where LR crops are made (MATLAB bicubic): 'host', 'device' (in the compiled step, from the
    # uint8 HR crops), or 'auto': the device on GPU/TPU, the host on CPU-only runs.
    config.degradation = "auto"
    return config


class _LazyImages(Sequence):
    """Image files decoded with `image_io.read_rgb` on every access (too many to cache)."""

    def __init__(self, paths: Sequence[str]):
        self._paths = tuple(paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return image_io.read_rgb(self._paths[index])


def _skip(name: str, reason: str) -> None:
    warnings.warn(f"skipping {name}: {reason}", SkippedImageWarning, stacklevel=3)


def list_image_files(dirs: Iterable[str | os.PathLike]) -> list[str]:
    """Image files under `dirs` (recursive, extensions case-insensitive), sorted per folder."""
    return [str(path) for directory in dirs for path in image_io.list_images(directory)]


def _decode_all(paths: Sequence[str]) -> Iterator[np.ndarray | image_io.ImageReadError]:
    """`read_rgb` of each path in order (or its error), decoded by a few threads."""
    def read(path: str) -> np.ndarray | image_io.ImageReadError:
        try:
            return image_io.read_rgb(path)
        except image_io.ImageReadError as error:
            return error

    with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        yield from pool.map(read, paths)  # Pillow decodes without holding the GIL


def folder_source(
    dirs: Sequence[str | os.PathLike], *, cache_bytes: int = DEFAULT_CACHE_BYTES
) -> ImageSource:
    """All readable images under `dirs`; unreadable files are skipped with one warning each.

    Every file is decoded once here, so corrupt, truncated, empty and non-image files are found
    before training starts. The pixels are kept in memory while they total at most `cache_bytes`;
    beyond that the source keeps only the paths and decodes a file each time it is used.
    """
    name = ", ".join(os.fspath(d) for d in dirs)
    files = list_image_files(dirs)
    paths, sizes, cached, total_bytes = [], [], [], 0
    for path, image in zip(files, _decode_all(files), strict=True):
        if isinstance(image, image_io.ImageReadError):
            _skip(path, str(image.__cause__ or image))
            continue
        paths.append(path)
        sizes.append(image.shape[:2])
        total_bytes += image.nbytes
        if total_bytes <= cache_bytes:
            cached.append(image)
    if not paths:
        raise ValueError(f"no usable image in folder {name}")
    images = cached if total_bytes <= cache_bytes else _LazyImages(paths)
    return ImageSource(name, images, tuple(paths), tuple(sizes))


def demo_source(split: str = "train") -> ImageSource:
    """The built-in procedural textures (`srgan_jax.data.demo_data`)."""
    images = demo_data.demo_images(split)
    names = tuple(f"demo/{split}/{i}" for i in range(len(images)))
    return ImageSource(f"demo ({split})", images, names, tuple(i.shape[:2] for i in images))


def make_source(data_config: ml_collections.ConfigDict, *, split: str = "train") -> ImageSource:
    """The source that `data_config` (see `default_config`) names, for 'train' or 'validation'."""
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
    kind = data_config.source
    if kind == "folder":
        field = "train_dirs" if split == "train" else "eval_dirs"
        dirs = list(data_config[field])
        if not dirs:
            raise ValueError(f"config.data.{field} is empty; it must list image folders for "
                             "config.data.source='folder'")
        return folder_source(dirs, cache_bytes=data_config.cache_bytes)
    if kind == "demo":
        return demo_source(split)
    if kind == "tfds":
        from srgan_jax.data import tfds_data  # imports TensorFlow, and only here

        return tfds_data.tfds_source(data_config.tfds_name, split=split,
                                     data_dir=data_config.tfds_data_dir,
                                     use_dataset_lr=data_config.use_dataset_lr)
    raise ValueError(f"config.data.source must be 'folder', 'demo' or 'tfds', got {kind!r}")


def _augment(image: np.ndarray, flip: int, rotations: int) -> np.ndarray:
    """One of the eight flips/rotations of an (H, W, C) image (`batches.augment` on the device)."""
    return np.rot90(image[:, ::-1] if flip else image, rotations)


class TrainIterator:
    """Infinite iterator of uint8 training batches {'hr': HR crops, 'lr': their LR images}.

    'lr' is there when the source has LR images or `degrade_on_host`. Otherwise the compiled step
    makes it from 'hr' on the device (`srgan_jax.training.batches`), and flips and rotates the
    crops there too: the batch holds the crops as cut, and 'transform' (int32, flip * 4 +
    rotations per crop), because a rotated uint8 RGB crop costs the host 40x a plain copy.
    Create it with `create_train_iterator`. Shapes: [local_devices, per_device, H, W, 3] for the
    'pmap' layout, [local_batch, H, W, 3] for 'global'. `batch(step)` is the pure function behind
    `next()`; `get_state()` / `set_state()` save and restore the position. Call `close()` (or use
    it as a context manager) to stop the prefetch threads.
    """

    def __init__(self, source: ImageSource, usable: np.ndarray, *, global_batch_size: int,
                 crop_size: int, scale: int, seed: int, layout: str, local_device_count: int,
                 process_index: int, process_count: int, prefetch: int, num_workers: int,
                 degrade_on_host: bool):
        self.source = source
        self.degrade_on_host = degrade_on_host
        self._usable = usable
        self.crop_size, self.scale, self.seed, self.layout = crop_size, scale, seed, layout
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // process_count
        self._first_example = process_index * self.local_batch_size
        self._device_shape = ((local_device_count, self.local_batch_size // local_device_count)
                              if layout == "pmap" else (self.local_batch_size,))
        self._prefetch, self._num_workers = prefetch, num_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: collections.deque[concurrent.futures.Future] = collections.deque()
        self._step = 0

    def image_indices(self, step: int) -> np.ndarray:
        """The source images of the global batch `step`, one per example: distinct images (as the
        paper's batches are), drawn without replacement while the source has enough of them."""
        rng = np.random.default_rng([self.seed, step])
        count, available = self.global_batch_size, len(self._usable)
        rounds = [rng.permutation(available) for _ in range(-(-count // available))]
        return self._usable[np.concatenate(rounds)[:count]]

    @property
    def augments_on_device(self) -> bool:
        """Whether flips/rotations are left to the compiled step (HR-only batches)."""
        return self.source.lr is None and not self.degrade_on_host

    def _example(
        self, index: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None, int]:
        """One uint8 HR crop of image `index` and, for sources with LR images, its aligned uint8
        LR crop, at a random place, and one of the eight flips/rotations (flip * 4 + rotations),
        applied here unless `augments_on_device`."""
        crop, scale = self.crop_size, self.scale
        if self.source.lr is None:
            image = self.source.hr[index]
            top = rng.integers(image.shape[0] - crop + 1)
            left = rng.integers(image.shape[1] - crop + 1)
            hr, lr = image[top:top + crop, left:left + crop], None
        else:
            low = self.source.lr[index]
            size = crop // scale
            top, left = rng.integers(low.shape[0] - size + 1), rng.integers(low.shape[1] - size + 1)
            lr = low[top:top + size, left:left + size]
            hr = self.source.hr[index][top * scale:(top + size) * scale,
                                       left * scale:(left + size) * scale]
        flip, rotations = int(rng.integers(2)), int(rng.integers(4))
        if self.augments_on_device:
            return hr, None, flip * 4 + rotations
        return (_augment(hr, flip, rotations),
                None if lr is None else _augment(lr, flip, rotations), flip * 4 + rotations)

    def batch(self, step: int) -> Batch:
        """This host's share of the global batch number `step` (a pure function of seed, step)."""
        first = self._first_example
        indices = self.image_indices(step)[first:first + self.local_batch_size]
        examples = [self._example(int(index), np.random.default_rng([self.seed, step, first + j]))
                    for j, index in enumerate(indices)]
        hr = np.stack([hr for hr, _, _ in examples])
        batch = {"hr": hr.reshape(self._device_shape + hr.shape[1:])}
        if self.augments_on_device:
            transform = np.asarray([t for _, _, t in examples], np.int32)
            batch["transform"] = transform.reshape(self._device_shape)
        else:
            lr = np.stack([degrade(hr, self.scale) if lr is None else lr
                           for hr, lr, _ in examples])
            batch["lr"] = lr.reshape(self._device_shape + lr.shape[1:])
        return batch

    def __iter__(self) -> TrainIterator:
        return self

    def __next__(self) -> Batch:
        if self._prefetch <= 0:
            batch = self.batch(self._step)
        else:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self._num_workers, thread_name_prefix="srgan-input")
            first_pending = self._step + len(self._pending)
            for step in range(first_pending, self._step + self._prefetch + 1):
                self._pending.append(self._pool.submit(self.batch, step))
            batch = self._pending.popleft().result()
        self._step += 1
        return batch

    def get_state(self) -> dict[str, int]:
        """The position: the step whose batch `next()` returns next."""
        return {"step": self._step}

    def set_state(self, state: dict) -> None:
        """Continues from a position saved by `get_state()`."""
        step = int(state["step"])
        if step < 0:
            raise ValueError(f"iterator state step must be >= 0, got {step}")
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._step = step

    def close(self) -> None:
        """Stops the prefetch threads; `next()` restarts them."""
        self.set_state(self.get_state())
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> TrainIterator:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def create_train_iterator(
    source: ImageSource,
    *,
    global_batch_size: int,
    crop_size: int = 96,
    scale: int = 4,
    seed: int = 0,
    layout: str = "pmap",
    local_device_count: int | None = None,
    process_index: int = 0,
    process_count: int = 1,
    prefetch: int = 2,
    num_workers: int = 2,
    degrade_on_host: bool = True,
) -> TrainIterator:
    """A `TrainIterator` over `source`, producing this host's share of each global batch.

    `layout` 'pmap' shapes batches [local_device_count, per_device, ...] (`local_device_count`
    defaults to `jax.local_device_count()`); 'global' gives [global_batch_size / process_count,
    ...]. Images smaller than the crop are skipped with a `SkippedImageWarning` each.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if scale < 1 or crop_size < scale or crop_size % scale:
        raise ValueError(f"crop_size={crop_size} must be a positive multiple of scale={scale}")
    if seed < 0:
        raise ValueError(f"seed={seed} must be >= 0")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must be in [0, process_count="
                         f"{process_count})")
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(f"global_batch_size={global_batch_size} must be a positive multiple of "
                         f"process_count={process_count}")
    if layout == "pmap":
        if local_device_count is None:
            import jax

            local_device_count = jax.local_device_count()
        local_batch = global_batch_size // process_count
        if local_batch % local_device_count:
            raise ValueError(f"global_batch_size={global_batch_size} gives {local_batch} examples "
                             f"per host, not divisible by local_device_count={local_device_count}")
    if source.lr is not None and source.lr_scale != scale:
        raise ValueError(f"scale={scale} differs from the dataset's LR scale {source.lr_scale} "
                         f"({source.name}); use a matching dataset or use_dataset_lr=False")
    usable = []
    for index, (height, width) in enumerate(source.sizes):
        if min(height, width) < crop_size:
            _skip(source.names[index], f"{height}x{width} is smaller than crop_size={crop_size}")
        else:
            usable.append(index)
    if not usable:
        raise ValueError(f"no image in {source.name} is at least crop_size={crop_size} pixels")
    return TrainIterator(
        source, np.asarray(usable), global_batch_size=global_batch_size, crop_size=crop_size,
        scale=scale, seed=seed, layout=layout, local_device_count=local_device_count or 1,
        process_index=process_index, process_count=process_count, prefetch=prefetch,
        num_workers=max(1, num_workers), degrade_on_host=degrade_on_host)
