"""TensorFlow Datasets (TFDS) super-resolution data, such as `div2k/bicubic_x4`, in host memory.

`config.data.source='tfds'` is the only path that needs TensorFlow; `require_tfds` says so at the
start of a run, before anything is downloaded, and `tfds_source` loads a dataset whose examples
are {'hr', 'lr'} uint8 images. TensorFlow only decodes images here and is kept off the
accelerators, which belong to JAX.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import shlex
from collections.abc import Sequence

import ml_collections
import numpy as np

from srgan_jax.cli import UserError
from srgan_jax.data.image_source import ImageSource
from srgan_jax.imresize import modcrop

DISTRIBUTION = "srgan-jax"
EXTRA = "tfds"
REQUIRED_MODULES = ("tensorflow", "tensorflow_datasets")


class TFDSNotInstalledError(UserError):
    """TensorFlow or TensorFlow Datasets is missing for a config whose data source is TFDS."""


def install_command() -> str:
    """The pip command that installs the packages of this package's `tfds` extra.

    Read from the installed package's metadata, so it names the same versions as pyproject.toml;
    from a checkout that is not installed, the extra itself.
    """
    try:
        requirements = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        requirements = []
    marker = f'extra == "{EXTRA}"'
    packages = [r.split(";")[0].strip() for r in requirements if marker in r.replace("'", '"')]
    if not packages:
        return f"pip install -e '.[{EXTRA}]'"
    return "pip install " + " ".join(shlex.quote(package) for package in packages)


def missing_modules() -> list[str]:
    """The modules of `REQUIRED_MODULES` that cannot be imported (found without importing them)."""
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def require_tfds(data_config: ml_collections.ConfigDict) -> None:
    """Raises `TFDSNotInstalledError`, naming the install command, if `data_config` reads TFDS
    data and TensorFlow or TFDS is missing or broken. A run calls it first, before it creates its
    workdir or fetches the VGG19 weights or the dataset; other sources import nothing here.
    """
    if data_config.source == "tfds":
        _require_installed(data_config.tfds_name)
        _require_importable(data_config.tfds_name)


def _require_installed(name: str) -> None:
    missing = missing_modules()
    if missing:
        raise TFDSNotInstalledError(
            f"config.data.source='tfds' ({name}) needs TensorFlow and TensorFlow Datasets, but "
            f"{' and '.join(missing)} cannot be imported; install them with: {install_command()}"
            "  (or use config.data.source='folder' or 'demo')"
        )


def _require_importable(name: str) -> None:
    """Imports TensorFlow and TFDS (installed, so the run will need them anyway): an install that
    is present but broken (mismatched versions, say) fails here with one line, not later."""
    for module in REQUIRED_MODULES:
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 (a broken package can raise anything)
            detail = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            raise TFDSNotInstalledError(
                f"config.data.source='tfds' ({name}): {module} is installed but fails to import "
                f"({detail}); reinstall it with: {install_command()}"
            ) from error


def tfds_source(
    name: str = "div2k/bicubic_x4",
    *,
    split: str = "train",
    data_dir: str | None = None,
    use_dataset_lr: bool = False,
    max_images: int | None = None,
) -> ImageSource:
    """A TFDS super-resolution dataset with {'hr', 'lr'} uint8 examples (div2k), in host memory.

    TFDS downloads and prepares the dataset on first use, into `data_dir` (None: TFDS's default,
    ~/tensorflow_datasets). DIV2K's 800 training images take about 6.6 GB as uint8 (plus 0.4 GB of
    x4 LR with `use_dataset_lr`). With `use_dataset_lr`, every LR image must be HR // scale in size
    for one integer scale; HR is then cropped to exactly scale x LR.
    """
    _require_installed(name)
    import tensorflow as tf
    import tensorflow_datasets as tfds

    # TF must not claim the GPUs that JAX uses (RuntimeError: TF was initialised elsewhere first).
    with contextlib.suppress(RuntimeError):
        tf.config.set_visible_devices([], "GPU")
    dataset = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False)
    hr, lr = [], []
    for index, example in enumerate(tfds.as_numpy(dataset)):
        if max_images is not None and index >= max_images:
            break
        hr.append(np.asarray(example["hr"], dtype=np.uint8))
        if use_dataset_lr:
            lr.append(np.asarray(example["lr"], dtype=np.uint8))
    if not hr:
        raise ValueError(f"TFDS dataset {name} split {split!r} has no examples")
    lr_scale = None
    if use_dataset_lr:
        lr_scale = dataset_scale(hr, lr, f"{name} {split}")
        hr = [modcrop(h, lr_scale) for h in hr]  # LR is already HR // lr_scale in size
    names = tuple(f"{name}/{split}/{i}" for i in range(len(hr)))
    return ImageSource(f"{name} ({split})", hr, names, tuple(h.shape[:2] for h in hr),
                       lr if use_dataset_lr else None, lr_scale)


def dataset_scale(hr: Sequence[np.ndarray], lr: Sequence[np.ndarray], name: str) -> int:
    """The one integer scale s with every LR image exactly HR // s in size; a ValueError naming
    the first example that breaks it (and `config.data.use_dataset_lr`) otherwise."""
    scale = hr[0].shape[0] // lr[0].shape[0]  # HR may be up to scale - 1 pixels larger
    for index, (high, low) in enumerate(zip(hr, lr, strict=True)):
        if (high.shape[0] // scale, high.shape[1] // scale) != low.shape[:2]:
            raise ValueError(
                f"config.data.use_dataset_lr=True needs the LR images of {name} to be HR // scale "
                f"in size for one integer scale (here {scale}, from example 0), but example "
                f"{index} has HR {high.shape[0]}x{high.shape[1]} and LR "
                f"{low.shape[0]}x{low.shape[1]}; set config.data.use_dataset_lr=False to make LR "
                "from HR with MATLAB bicubic")
    return scale
