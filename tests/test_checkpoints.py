"""Checkpoints: exact round trip, last N plus best kept, config mismatch, atomic under SIGKILL."""

import os
import subprocess
import sys
import textwrap

import jax
import ml_collections
import numpy as np
import pytest

from srgan_jax import checkpoint_reading
from srgan_jax.training import checkpoints


def _config(num_blocks: int = 2, crop_size: int = 32) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {"model": {"num_blocks": num_blocks, "channels": 8, "scale": 4}, "crop_size": crop_size}
    )


def _state(seed: int, size: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "params": {"w": rng.standard_normal((size, size)).astype(np.float32)},
        "batch_stats": {"mean": rng.standard_normal(size).astype(np.float32)},
        "step": np.int32(seed),
    }


def _ckpt(step: int, phase: str = "pretrain", discriminator=None) -> checkpoints.TrainingCheckpoint:
    return checkpoints.TrainingCheckpoint(
        step=step,
        phase=phase,
        generator=_state(step),
        discriminator=discriminator,
        rng=jax.random.key(1000 + step),
        data_state={"epoch": 1, "position": step, "seed": 7},
    )


def _assert_tree_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_is_exact(tmp_path):
    discriminator = _state(99, size=6)
    with checkpoints.Checkpointer(str(tmp_path), _config()) as ckpt:
        ckpt.save(_ckpt(5, "gan", discriminator))
        ckpt.wait()
        assert ckpt.read_meta(5)["phase"] == "gan"
        restored = ckpt.restore(5, generator=_state(0), discriminator=_state(0, size=6))
    assert (restored.step, restored.phase) == (5, "gan")
    assert restored.data_state == {"epoch": 1, "position": 5, "seed": 7}
    _assert_tree_equal(restored.generator, _state(5))
    _assert_tree_equal(restored.discriminator, discriminator)
    np.testing.assert_array_equal(
        jax.random.key_data(restored.rng), jax.random.key_data(jax.random.key(1005))
    )


def test_keeps_last_n_and_best_across_restarts(tmp_path):
    psnrs = {1: 20.0, 2: 31.0, 3: 25.0, 4: 26.0, 5: None}
    with checkpoints.Checkpointer(str(tmp_path), _config(), keep=2) as ckpt:
        for step, psnr in psnrs.items():
            ckpt.save(_ckpt(step), None if psnr is None else {"psnr": psnr})
        ckpt.wait()
        assert ckpt.all_steps() == [2, 4, 5]
    with checkpoints.Checkpointer(str(tmp_path), _config(), keep=2) as ckpt:
        assert (ckpt.best_step(), ckpt.latest_step()) == (2, 5)  # metrics were persisted
        ckpt.save(_ckpt(6), {"psnr": 10.0})
        ckpt.wait()
        assert ckpt.all_steps() == [2, 5, 6]


def test_best_is_ranked_within_the_latest_phase(tmp_path):
    """SRGAN's PSNR is below SRResNet's by design: `best` of a GAN run is its best GAN step."""
    runs = {1: ("pretrain", 30.0), 2: ("pretrain", 31.0), 3: ("gan", 27.0), 4: ("gan", 28.0),
            5: ("gan", 26.0), 6: ("gan", None)}
    with checkpoints.Checkpointer(str(tmp_path), _config(), keep=1) as ckpt:
        for step, (phase, psnr) in runs.items():
            if step == 3:
                assert ckpt.best_step() == 2
            ckpt.save(_ckpt(step, phase), None if psnr is None else {"psnr": psnr})
            ckpt.wait()
        assert ckpt.best_step() == 4
        assert ckpt.all_steps() == [2, 4, 6]  # best SRResNet, best SRGAN, latest
    assert checkpoint_reading.best_step(str(tmp_path)) == 4
    with pytest.raises(FileNotFoundError, match="no checkpoint was saved with a validation psnr"):
        checkpoint_reading.best_step(str(tmp_path / "elsewhere"))


def test_config_mismatch_names_the_field_and_both_values(tmp_path):
    with checkpoints.Checkpointer(str(tmp_path), _config(num_blocks=2)) as ckpt:
        ckpt.save(_ckpt(3))
    with (
        checkpoints.Checkpointer(str(tmp_path), _config(num_blocks=4)) as ckpt,
        pytest.raises(checkpoints.CheckpointMismatchError, match=r"model.num_blocks=2.*=4"),
    ):
        ckpt.restore(3, generator=_state(0), discriminator=None)
    with pytest.raises(checkpoints.CheckpointMismatchError, match="model.num_blocks"):
        checkpoint_reading.load_generator_variables(str(tmp_path), _config(num_blocks=4))


def test_discriminator_crop_mismatch_is_an_error(tmp_path):
    with checkpoints.Checkpointer(str(tmp_path), _config(crop_size=32)) as ckpt:
        ckpt.save(_ckpt(3, "gan", _state(9)))
    with (
        checkpoints.Checkpointer(str(tmp_path), _config(crop_size=48)) as ckpt,
        pytest.raises(checkpoints.CheckpointMismatchError, match="crop_size=32"),
    ):
        ckpt.restore(3, generator=_state(0), discriminator=_state(0))


def test_load_generator_variables_from_workdir_or_step_dir(tmp_path):
    with checkpoints.Checkpointer(str(tmp_path), _config()) as ckpt:
        ckpt.save(_ckpt(3))
        ckpt.save(_ckpt(8))
    expected = {"params": _state(8)["params"], "batch_stats": _state(8)["batch_stats"]}
    loaded = checkpoint_reading.load_generator_variables(str(tmp_path), _config())
    _assert_tree_equal(loaded, expected)
    step_dir = tmp_path / "checkpoints" / "3"
    loaded = checkpoint_reading.load_generator_variables(str(step_dir))
    np.testing.assert_array_equal(loaded["params"]["w"], _state(3)["params"]["w"])
    with pytest.raises(FileNotFoundError, match="no checkpoint found"):
        checkpoint_reading.load_generator_variables(str(tmp_path / "nothing"))


def test_the_upscaler_reads_a_workdir_without_the_training_stack(tmp_path):
    """Reading a workdir (export, upscale --workdir) sits below training: no training module."""
    with checkpoints.Checkpointer(str(tmp_path), _config()) as ckpt:
        ckpt.save(_ckpt(3))
    code = ("import sys\n"
            "from srgan_jax.upscaling import registry\n"
            f"variables = registry.workdir_variables({str(tmp_path)!r}, best=False, step=3)\n"
            "assert variables['params']['w'].shape == (4, 4)\n"
            "print(sorted(m for m in sys.modules if m.startswith('srgan_jax.training')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "[]\n"


_KILL_MID_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import jax, ml_collections, numpy as np
    from srgan_jax.training import checkpoints
    config = ml_collections.ConfigDict(
        {"model": {"num_blocks": 2, "channels": 8, "scale": 4}, "crop_size": 32})
    def ckpt(step, n):
        return checkpoints.TrainingCheckpoint(
            step, "pretrain", {"w": np.full(n, step, np.float32)}, None, jax.random.key(0), {})
    manager = checkpoints.Checkpointer(sys.argv[1], config)
    manager.save(ckpt(1, 10))
    manager.wait()
    manager.save(ckpt(2, 64 * 2**20))  # 256 MB: still being written when the process dies
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_sigkill_mid_save_keeps_previous_checkpoint(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_MID_SAVE, str(tmp_path)], env=env, capture_output=True
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    leftovers = os.listdir(tmp_path / "checkpoints")
    assert any(name.startswith("2") for name in leftovers), leftovers  # the save had started
    with checkpoints.Checkpointer(str(tmp_path), _config()) as ckpt:
        assert ckpt.all_steps() == [1]
        restored = ckpt.restore(1, generator={"w": np.zeros(10, np.float32)}, discriminator=None)
    np.testing.assert_array_equal(restored.generator["w"], np.ones(10, np.float32))


@pytest.mark.parametrize("damage", ["truncate", "delete", "meta"])
def test_unreadable_latest_checkpoint_falls_back_to_the_one_before(tmp_path, damage):
    """A crash that damaged the newest step costs only the steps since the one before."""
    with checkpoints.Checkpointer(str(tmp_path), _config()) as ckpt:
        for step in (1, 2):
            ckpt.save(_ckpt(step))
        ckpt.wait()
    step_dir = tmp_path / "checkpoints" / "2"
    if damage == "meta":
        target = next(step_dir.rglob("meta/metadata"))
        target.write_text("{not json")
    else:
        data_files = sorted((p for p in (step_dir / "generator").rglob("*") if p.is_file()),
                            key=lambda p: p.stat().st_size)
        target = data_files[-1]  # the largest: array data, not metadata
        if damage == "truncate":
            target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
        else:
            target.unlink()

    with checkpoints.Checkpointer(str(tmp_path), _config()) as ckpt:
        restored = ckpt.restore_newest_readable(lambda phase: (_state(0), None))
        assert restored.step == 1 and ckpt.all_steps() == [1]
    _assert_tree_equal(restored.generator, _state(1))
    (kept,) = os.listdir(tmp_path / "damaged_checkpoints")
    assert kept.startswith("2-")


def test_no_readable_checkpoint_restores_nothing(tmp_path):
    with checkpoints.Checkpointer(str(tmp_path), _config()) as ckpt:
        assert ckpt.restore_newest_readable(lambda phase: (_state(0), None)) is None


def test_workdir_urls_stay_urls_and_local_paths_become_absolute(tmp_path, monkeypatch):
    from srgan_jax import workdirs

    assert checkpoint_reading.checkpoint_dir("gs://bucket/run") == "gs://bucket/run/checkpoints"
    assert workdirs.is_remote("gs://bucket/run") and not workdirs.is_remote("runs/gs:x")
    monkeypatch.chdir(tmp_path)
    assert checkpoint_reading.checkpoint_dir("run") == str(tmp_path / "run" / "checkpoints")


# --- Issue 24: failures while writing, and readers racing a running training ------------------

def test_a_failed_save_is_one_error_naming_its_step_and_what_is_intact(tmp_path, monkeypatch):
    """orbax re-raises its writer thread's error (tensorstore's status text) at the next wait."""
    ckpt = checkpoints.Checkpointer(str(tmp_path), _config())
    ckpt.save(_ckpt(1))
    ckpt.wait()
    ckpt.save(_ckpt(2))
    ckpt.wait()

    def disk_full():
        raise ValueError('RESOURCE_EXHAUSTED: Error writing "step/0" in OCDBT database: Failed '
                         "to write 8302592 bytes to file 5: No space left on device "
                         "[os_error_code='28']")

    monkeypatch.setattr(ckpt._manager, "wait_until_finished", disk_full)
    ckpt._saving = 3  # as if the save of step 3 were under way
    with pytest.raises(checkpoints.CheckpointWriteError) as error:
        ckpt.close()
    assert str(error.value) == (
        f"cannot write the checkpoint of step 3 to {tmp_path / 'checkpoints'} (No space left on "
        "device); the checkpoint of step 2 is intact: fix that, then run the same command to "
        "resume from it")
    monkeypatch.undo()
    ckpt._manager.close()


def test_a_second_ctrl_c_while_a_checkpoint_is_written_says_what_is_left(tmp_path, monkeypatch):
    """Was: dozens of orbax/asyncio tracebacks; now one line (cli prints 'interrupted: ...') and
    the checkpoints before are intact. The second Ctrl-C lands while 128 MB are being written."""
    ckpt = checkpoints.Checkpointer(str(tmp_path), _config())
    ckpt.save(_ckpt(1))
    ckpt.wait()
    big = checkpoints.TrainingCheckpoint(2, "pretrain", {"w": np.zeros(32 << 20, np.float32)},
                                         None, jax.random.key(0), {"step": 2})
    ckpt.save(big)
    real_wait = ckpt._manager.wait_until_finished

    def ctrl_c_again():  # pressed while the save is under way
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt._manager, "wait_until_finished", ctrl_c_again)
    with pytest.raises(KeyboardInterrupt) as interrupt:
        ckpt.close()
    assert str(interrupt.value) == ("the checkpoint of step 2 was being written: if it is "
                                    "incomplete, the next run ignores it and resumes from step 1")
    monkeypatch.undo()
    real_wait()
    assert str(ckpt.interrupted()) == ""  # nothing under way: nothing to say
    ckpt._manager.close()
    with checkpoints.Checkpointer(str(tmp_path), _config()) as again:
        restored = again.restore(1, _state(0), None)
    _assert_tree_equal(restored.generator, _state(1))


def test_a_reader_takes_the_next_step_when_a_training_rotates_the_one_it_reads(tmp_path,
                                                                             monkeypatch):
    """Was: `srgan-jax export` racing a running training's rotation failed. The training here
    keeps one checkpoint: it saves step 2, and deletes step 1, while step 1 is being read."""
    with checkpoints.Checkpointer(str(tmp_path), _config(), keep=1) as training:
        training.save(_ckpt(1))
        training.wait()
        read = checkpoint_reading._read_generator
        steps = []

        def rotated_meanwhile(directory, step, config):
            steps.append(step)
            if len(steps) == 1:
                training.save(_ckpt(2))
                training.wait()
                assert training.all_steps() == [2]
            return read(directory, step, config)

        monkeypatch.setattr(checkpoint_reading, "_read_generator", rotated_meanwhile)
        variables = checkpoint_reading.load_generator_variables(str(tmp_path))
    assert steps == [1, 2]
    np.testing.assert_array_equal(variables["params"]["w"], _state(2)["params"]["w"])


def test_a_damaged_step_asked_for_by_name_is_not_replaced_by_another(tmp_path):
    with checkpoints.Checkpointer(str(tmp_path), _config()) as ckpt:
        ckpt.save(_ckpt(1))
        ckpt.save(_ckpt(2))
    for metadata in (tmp_path / "checkpoints" / "2").rglob("_METADATA"):
        metadata.write_text("")
    with pytest.raises(Exception):  # noqa: B017 (orbax's own error for damaged metadata)
        checkpoint_reading.load_generator_variables(str(tmp_path / "checkpoints" / "2"))
