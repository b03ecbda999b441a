"""tfds_data: the real TFDS `div2k` builder under `tfds.testing.mock_data`, and the up-front check.

The loading tests need TensorFlow and TFDS (the `tfds` extra) and skip cleanly without them; the
missing-extra tests run everywhere. As in the flax examples, `mock_data` stands in for the
download: with its own random examples (HR and LR of unrelated random sizes, 5 to 49 pixels), or
with examples made here by hand (`as_dataset_fn`), whose HR is LR blown up 4x by pixel repetition.
"""
import pathlib
import sys
import tomllib
import warnings

import numpy as np
import pytest

from srgan_jax import cli
from srgan_jax.data import input_pipeline as ip
from srgan_jax.data import tfds_data
from srgan_jax.evaluation.validation_set import ValidationSet
from srgan_jax.imresize import degrade

REPO = pathlib.Path(__file__).resolve().parents[1]
SCALE, CROP = 4, 16


def tfds_config(**fields):
    config = ip.default_config()
    config.source = "tfds"
    config.update(fields)
    return config


def validation_set(source):
    """The validation images of a TFDS source, as the trainer prepares them."""
    lr = None if source.lr is None else list(source.lr)
    return ValidationSet.from_arrays(source.names, list(source.hr), SCALE, lr)


def train_iterator(source, **overrides):
    options = dict(global_batch_size=8, crop_size=CROP, scale=SCALE, seed=0, layout="global",
                   prefetch=0)
    options.update(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ip.SkippedImageWarning)  # mock images below crop size
        return ip.create_train_iterator(source, **options)


# --- without TensorFlow: the up-front check ----------------------------------------------------


@pytest.fixture
def without_tfds(monkeypatch):
    """As if TensorFlow Datasets were not installed (`find_spec` sees a None in sys.modules)."""
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)


def test_missing_tfds_fails_first_with_the_install_command(without_tfds):
    with pytest.raises(tfds_data.TFDSNotInstalledError) as caught:
        tfds_data.require_tfds(tfds_config())
    message = str(caught.value)
    assert "config.data.source='tfds'" in message and "tensorflow_datasets" in message
    assert tfds_data.install_command() in message
    # tfds_source (and so make_source) says the same before it imports anything.
    with pytest.raises(tfds_data.TFDSNotInstalledError, match="install them with: pip install"):
        ip.make_source(tfds_config())


def test_install_command_names_the_tfds_extra_of_pyproject():
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["tfds"]
    command = tfds_data.install_command()
    assert command.startswith("pip install ")
    for requirement in extra:
        name = requirement.split(">")[0].split("=")[0].split("<")[0].strip()
        assert name in command, (name, command)


def test_other_sources_need_no_tensorflow(without_tfds):
    for source in ("demo", "folder"):
        config = ip.default_config()
        config.source = source
        tfds_data.require_tfds(config)


def test_missing_tfds_is_one_line_for_the_cli(without_tfds, capsys):
    def body(argv):
        tfds_data.require_tfds(tfds_config())

    assert cli.run_command("train", body, []) == cli.EXIT_FAILED
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("srgan-jax train: config.data.source='tfds'") and "pip install" in err


# --- with TensorFlow: the real div2k builder under mock_data ----------------------------------


@pytest.fixture(scope="module")
def tfds():
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("tensorflow_datasets.testing")  # an attribute of tfds only once imported
    return tfds


def test_random_mock_examples_load_and_train_with_our_degradation(tfds):
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        train = ip.make_source(tfds_config(tfds_data_dir="/nonexistent/tfds"))
        validation = ip.make_source(tfds_config(), split="validation")
    assert len(train) == 12 and train.lr is None and train.name == "div2k/bicubic_x4 (train)"
    for image, size in zip(train.hr, train.sizes, strict=True):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert image.shape[:2] == size and min(size) >= 5 and max(size) < 50
    assert len(validation_set(validation)) == len(validation)

    batch = next(train_iterator(train))
    assert batch["hr"].shape == (8, CROP, CROP, 3) and batch["lr"].shape == (8, 4, 4, 3)
    for lr, hr in zip(batch["lr"], batch["hr"], strict=True):
        np.testing.assert_array_equal(lr, degrade(hr, SCALE))


def test_dataset_lr_of_random_sizes_is_a_clear_error(tfds):
    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE), \
            pytest.raises(ValueError, match=r"config\.data\.use_dataset_lr=True needs the LR "
                                            r"images of div2k/bicubic_x4 train .* example \d+ has"):
        ip.make_source(tfds_config(use_dataset_lr=True))


def hand_made_examples(split):
    """div2k-like examples: HR is LR repeated 4x4 (plus a ragged edge, as HR sizes need not be
    multiples of the scale), so each HR pixel's LR pixel is known exactly."""
    sizes = {"train": [(6, 9), (8, 7), (5, 5)], "validation": [(4, 6)]}[split]
    examples = []
    for seed, (height, width) in enumerate(sizes):
        lr = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
        hr = np.pad(np.kron(lr, np.ones((SCALE, SCALE, 1), np.uint8)), ((0, 3), (0, 1), (0, 0)),
                    mode="edge")
        examples.append({"hr": hr, "lr": lr})
    return examples


def test_dataset_lr_of_the_right_sizes_gives_aligned_pairs(tfds):
    import tensorflow as tf

    def as_dataset(builder, split, **kwargs):
        examples = hand_made_examples(str(split))
        return tf.data.Dataset.from_generator(
            lambda: iter(examples), output_signature=builder.info.features.get_tensor_spec())

    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                as_dataset_fn=as_dataset):
        train = ip.make_source(tfds_config(use_dataset_lr=True))
        validation = ip.make_source(tfds_config(use_dataset_lr=True), split="validation")

    expected = hand_made_examples("train")
    assert train.lr_scale == SCALE and len(train) == len(expected)
    for hr, lr, example in zip(train.hr, train.lr, expected, strict=True):
        np.testing.assert_array_equal(lr, example["lr"])
        np.testing.assert_array_equal(hr, np.kron(lr, np.ones((SCALE, SCALE, 1), np.uint8)))

    batch = next(train_iterator(train, global_batch_size=6))
    for lr, hr in zip(batch["lr"], batch["hr"], strict=True):
        np.testing.assert_array_equal(np.kron(lr, np.ones((SCALE, SCALE, 1), np.uint8)), hr)
    [image] = validation_set(validation).images
    np.testing.assert_array_equal(image.lr, hand_made_examples("validation")[0]["lr"])
    assert image.hr.shape == (16, 24, 3)
    with pytest.raises(ValueError, match="scale=2 differs from the dataset's LR scale 4"):
        train_iterator(train, scale=2, crop_size=8)
