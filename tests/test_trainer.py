"""The training loop end to end on the `test` config (8 fake CPU devices, pmap).

Training runs happen in `python -m srgan_jax.main` subprocesses, so that exits and signals are real;
they share a JAX compilation cache, so only the first one pays for compiling. The reference run
(one uninterrupted process) is checked for learning and for its outputs; the interrupted runs
(SIGTERM, SIGKILL) must end bit-identical to it.
"""

import glob
import io
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2

from srgan_jax import vgg
from srgan_jax.configs import test as test_config
from srgan_jax.data import demo_data
from srgan_jax.training import checkpoints, metrics_log, phases, run_control, trainer

CONFIG_FILE = test_config.__file__
CONFIG = test_config.get_config()
FINAL_STEP = CONFIG.pretrain.steps + CONFIG.gan.steps
PROCESS_TIMEOUT = 900  # generous: a busy 2-core machine compiles the GAN step in minutes


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("jax_cache"))


def _start(workdir, compilation_cache: str, *overrides: str, devices: int = 8,
           log: str | None = None) -> subprocess.Popen:
    """`python -m srgan_jax.main` on the test config with `devices` CPU devices, its output in
    `log` (default `workdir`.log)."""
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=compilation_cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )
    command = [sys.executable, "-m", "srgan_jax.main", f"--workdir={workdir}"]
    command += [f"--config={CONFIG_FILE}", *overrides]
    output = open(log or f"{workdir}.log", "w")  # noqa: SIM115 (the child owns it until it exits)
    return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)


def _log_tail(workdir) -> str:
    return pathlib.Path(f"{workdir}.log").read_text()[-5000:]


def _finish(process: subprocess.Popen) -> int:
    try:
        return process.wait(timeout=PROCESS_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()


def _train(workdir, compilation_cache: str, *overrides: str) -> None:
    returncode = _finish(_start(workdir, compilation_cache, *overrides))
    assert returncode == 0, _log_tail(workdir)


def _wait_until(done, workdir, process: subprocess.Popen, what: str) -> None:
    """Until `done()`, failing if the run of `workdir` ends first or PROCESS_TIMEOUT passes."""
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while not done():
        assert process.poll() is None, _log_tail(workdir)
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.05)


def _wait_for_checkpoint(workdir, step: int, process: subprocess.Popen) -> None:
    """Until step `step`'s checkpoint is committed (orbax renames it into place when complete)."""
    path = os.path.join(workdir, "checkpoints", str(step))
    _wait_until(lambda: os.path.isdir(path), workdir, process, f"checkpoint {path}")


def _final_states(workdir) -> checkpoints.TrainingCheckpoint:
    """The final checkpoint, restored into the structure of fresh GAN-phase states."""
    generator, discriminator = phases.abstract_states(CONFIG, "gan")
    with checkpoints.Checkpointer(str(workdir), CONFIG) as ckpt:
        assert ckpt.latest_step() == FINAL_STEP
        return ckpt.restore(FINAL_STEP, generator, discriminator)


def _assert_same_states(a: checkpoints.TrainingCheckpoint, b: checkpoints.TrainingCheckpoint):
    assert (a.step, a.phase, a.data_state) == (b.step, b.phase, b.data_state)
    for name in ("generator", "discriminator"):
        leaves_a, leaves_b = jax.tree.leaves(getattr(a, name)), jax.tree.leaves(getattr(b, name))
        assert len(leaves_a) == len(leaves_b)
        for x, y in zip(leaves_a, leaves_b, strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)


def _events(workdir) -> list[event_pb2.Event]:
    """Every event of every TensorBoard file in `workdir`, read back with TensorBoard's reader."""
    events = []
    for path in sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*"))):
        events += [event_pb2.Event.FromString(r) for r in RawEventFileLoader(path).Load()]
    return events


def _scalars(events: list[event_pb2.Event], tag: str) -> dict[int, float]:
    return {e.step: v.simple_value for e in events for v in e.summary.value if v.tag == tag}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, compilation_cache) -> str:
    workdir = str(tmp_path_factory.mktemp("reference") / "workdir")
    _train(workdir, compilation_cache)
    return workdir


def test_two_phase_run_learns_and_writes_outputs(reference_run):
    events = _events(reference_run)
    pixel_loss = _scalars(events, "pixel_loss")
    val_psnr = _scalars(events, "val/psnr")
    # Logged at the first step of each phase, every log_every steps and at checkpoints.
    assert sorted(pixel_loss) == [1, 10, 20, 30, 40, 50, 60, 61, 64]
    assert pixel_loss[FINAL_STEP] < 0.5 * pixel_loss[1]
    assert pixel_loss[61] < 0.5 * pixel_loss[1]  # the GAN phase starts from the trained SRResNet
    assert sorted(val_psnr) == [20, 40, 60, FINAL_STEP]
    assert val_psnr[FINAL_STEP] > val_psnr[20] + 1.0
    bicubic = _scalars(events, "val/bicubic_psnr")  # the baseline, the same at every evaluation
    assert sorted(bicubic) == sorted(val_psnr) and len(set(bicubic.values())) == 1
    d_real, d_fake = _scalars(events, "d_real"), _scalars(events, "d_fake")
    assert sorted(d_real) == sorted(d_fake) == [61, 64]
    assert all(0.0 < v < 1.0 for v in [*d_real.values(), *d_fake.values()])
    assert _scalars(events, "steps_per_sec")[FINAL_STEP] > 0

    samples = sorted(glob.glob(os.path.join(reference_run, "samples", "*.png")))
    assert [os.path.basename(p) for p in samples] == [
        f"step{s:08d}_0.png" for s in (30, 60, FINAL_STEP)
    ]
    strip = np.asarray(Image.open(samples[-1]))
    assert strip.shape == (128, 3 * 128, 3)  # LR bicubic | SR | HR of a 128x128 demo image
    hr = demo_data.demo_images("validation")[0]
    assert np.abs(strip[:, 256:].astype(int) - hr).max() <= 1
    images = {
        (e.step, v.tag): v.image for e in events for v in e.summary.value if v.HasField("image")
    }
    assert sorted(images) == [(30, "samples/0"), (60, "samples/0"), (FINAL_STEP, "samples/0")]
    logged = Image.open(io.BytesIO(images[FINAL_STEP, "samples/0"].encoded_image_string))
    np.testing.assert_array_equal(np.asarray(logged), strip)

    best = max(val_psnr, key=val_psnr.get)
    with checkpoints.Checkpointer(reference_run, CONFIG) as ckpt:
        assert ckpt.all_steps() == sorted({best, 60, FINAL_STEP})  # the last 2 and the best
        assert ckpt.best_step() == FINAL_STEP  # the only evaluated step of the latest phase
        assert ckpt.read_meta(FINAL_STEP) == {
            "step": FINAL_STEP,
            "phase": "gan",
            "rng": np.asarray(jax.random.key_data(jax.random.key(CONFIG.seed))).tolist(),
        }


@pytest.mark.slow
def test_sigterm_saves_and_a_restart_continues_exactly(reference_run, compilation_cache, tmp_path):
    workdir = str(tmp_path / "workdir")
    process = _start(workdir, compilation_cache)
    _wait_for_checkpoint(workdir, CONFIG.pretrain.steps, process)  # now in the GAN phase
    process.send_signal(signal.SIGTERM)
    assert _finish(process) == 143, _log_tail(workdir)  # 128 + SIGTERM, as shells report it
    with checkpoints.Checkpointer(workdir, CONFIG) as ckpt:
        stopped_at = ckpt.latest_step()
        assert CONFIG.pretrain.steps < stopped_at < FINAL_STEP
        assert ckpt.read_meta(stopped_at)["phase"] == "gan"

    _train(workdir, compilation_cache)
    _assert_same_states(_final_states(workdir), _final_states(reference_run))
    resumed = _scalars(_events(workdir), "pixel_loss")
    assert stopped_at + 1 in resumed


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_130(compilation_cache, tmp_path):
    """README: Ctrl-C, like SIGTERM, finishes the step, writes its checkpoint and says so, and the
    status is 130 (128 + SIGINT), so that a script can tell the run did not finish. No other
    checkpoint is due in this run: the one there is the stop's."""
    workdir = str(tmp_path / "workdir")
    endless = ["--config.pretrain.steps=1000000", "--config.gan.steps=0"]
    cadences = [f"--config.{name}=1000000"
                for name in ("eval_every", "sample_every", "checkpoint_every")]
    process = _start(workdir, compilation_cache, *endless, *cadences)
    log = pathlib.Path(f"{workdir}.log")
    _wait_until(lambda: "pretrain step 10/" in log.read_text(), workdir, process, "step 10")
    process.send_signal(signal.SIGINT)
    assert _finish(process) == 130, _log_tail(workdir)
    stopped = re.search(r"srgan-jax train: stopped by SIGINT at step (\d+); its checkpoint is "
                        rf"in {re.escape(workdir)}: run the same command to continue\n",
                        log.read_text())
    assert stopped, _log_tail(workdir)
    step = int(stopped[1])
    with checkpoints.Checkpointer(workdir, CONFIG) as ckpt:
        assert ckpt.all_steps() == [step] and step >= 10
        assert ckpt.read_meta(step)["step"] == step


@pytest.mark.slow
def test_sigkill_resumes_from_the_last_checkpoint(reference_run, compilation_cache, tmp_path):
    workdir = str(tmp_path / "workdir")
    process = _start(workdir, compilation_cache)
    _wait_for_checkpoint(workdir, CONFIG.checkpoint_every, process)
    process.kill()
    process.wait()
    with checkpoints.Checkpointer(workdir, CONFIG) as ckpt:  # a half-written step is not listed
        last = ckpt.latest_step()
        assert last in (20, 40, 60)
        meta = ckpt.read_meta(last)
        assert (meta["step"], meta["phase"]) == (last, "pretrain")
        generator, _ = phases.abstract_states(CONFIG, "pretrain")
        restored = ckpt.restore(last, generator, None)
        assert all(np.isfinite(x).all() for x in jax.tree.leaves(restored.generator))

    _train(workdir, compilation_cache)
    assert f"resumed at step {last} (phase pretrain)" in pathlib.Path(f"{workdir}.log").read_text()
    _assert_same_states(_final_states(workdir), _final_states(reference_run))


@pytest.fixture(scope="module")
def four_steps_per_call_run(tmp_path_factory, compilation_cache) -> str:
    workdir = str(tmp_path_factory.mktemp("k4") / "workdir")
    _train(workdir, compilation_cache, "--config.steps_per_call=4")
    return workdir


def test_four_steps_per_call_train_like_one(four_steps_per_call_run, reference_run):
    """K=4 (lax.scan) logs, evaluates and saves at the same steps as K=1, with the same numbers
    to float tolerance: XLA compiles the scanned step differently, so it is not bitwise on CPU."""
    k4, k1 = _events(four_steps_per_call_run), _events(reference_run)
    for tag in ("pixel_loss", "val/psnr", "d_real"):
        got, expected = _scalars(k4, tag), _scalars(k1, tag)
        assert sorted(got) == sorted(expected), tag
        np.testing.assert_allclose([got[s] for s in sorted(got)],
                                   [expected[s] for s in sorted(expected)], rtol=2e-3, err_msg=tag)
    a, b = _final_states(four_steps_per_call_run), _final_states(reference_run)
    assert (a.step, a.phase, a.data_state) == (b.step, b.phase, b.data_state)
    for x, y in zip(jax.tree.leaves(a.generator.params), jax.tree.leaves(b.generator.params),
                    strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-2, atol=1e-4)


@pytest.mark.slow
def test_sigterm_inside_a_block_of_four_resumes_exactly(
        four_steps_per_call_run, compilation_cache, tmp_path):
    workdir = str(tmp_path / "workdir")
    process = _start(workdir, compilation_cache, "--config.steps_per_call=4")
    _wait_for_checkpoint(workdir, CONFIG.checkpoint_every, process)
    process.send_signal(signal.SIGTERM)
    assert _finish(process) == 143, _log_tail(workdir)
    _train(workdir, compilation_cache, "--config.steps_per_call=4")
    _assert_same_states(_final_states(workdir), _final_states(four_steps_per_call_run))


@pytest.mark.slow
def test_second_run_on_a_busy_workdir_fails_and_loses_nothing(compilation_cache, tmp_path):
    workdir = str(tmp_path / "workdir")
    first = _start(workdir, compilation_cache)
    _wait_for_checkpoint(workdir, CONFIG.checkpoint_every, first)
    second = subprocess.run(
        [sys.executable, "-m", "srgan_jax.main", f"--workdir={workdir}",
         f"--config={CONFIG_FILE}"],
        capture_output=True, text=True, timeout=PROCESS_TIMEOUT,
        env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert second.returncode == 1, second.stderr
    assert f"is in use by another training run (pid {first.pid} on" in second.stderr
    assert "Traceback" not in second.stderr
    assert _finish(first) == 0, _log_tail(workdir)
    assert len(glob.glob(os.path.join(workdir, "events.out.tfevents.*"))) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start_two_hosts(workdir, compilation_cache: str) -> list[subprocess.Popen]:
    """The test config as two JAX processes on localhost with 4 CPU devices each (gloo)."""
    port = _free_port()
    return [
        _start(workdir, compilation_cache, "--config.distributed=True",
               f"--config.coordinator_address=localhost:{port}", "--config.num_processes=2",
               f"--config.process_id={process_id}", devices=4,
               log=f"{workdir}.log" if process_id == 0 else f"{workdir}.host1.log")
        for process_id in (0, 1)
    ]


@pytest.mark.slow
def test_two_processes_train_resume_and_match_one(reference_run, compilation_cache, tmp_path):
    """Multi-host on one machine: two processes of 4 devices each, killed after a checkpoint and
    restarted, end where the one-process 8-device run of the same global batches ends."""
    workdir = str(tmp_path / "workdir")
    first = _start_two_hosts(workdir, compilation_cache)
    _wait_for_checkpoint(workdir, CONFIG.checkpoint_every, first[0])
    for process in first:
        process.kill()
        process.wait()
    second = _start_two_hosts(workdir, compilation_cache)
    statuses = [_finish(p) for p in second]
    assert statuses == [0, 0], _log_tail(workdir) + _log_tail(f"{workdir}.host1")
    assert "resumed at step" in pathlib.Path(f"{workdir}.log").read_text()

    a, b = _final_states(workdir), _final_states(reference_run)
    assert (a.step, a.phase, a.data_state) == (b.step, b.phase, b.data_state)
    # The generator, trained 64 steps, agrees tightly. The discriminator sees 16x16 crops, where
    # its last BatchNorms normalise over four values each: gloo's other summation order changes
    # its four GAN updates (Adam, lr 1e-4) by up to a few 1e-4 in some weights, from run to run,
    # about what four updates move a weight (at most 4e-4: atol=4e-4 let a D with three updates
    # through). So each of its tensors is held to how far those updates moved it from its start:
    # measured, the two runs differ by 0.2 % of that; a D that did not train, trained fewer steps
    # or on other batches differs by a large part of it. Its logged losses agree to 1 %.
    for x, y in zip(jax.tree.leaves(a.generator), jax.tree.leaves(b.generator), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-3, atol=1e-5)
    start = phases.create_states(CONFIG, "gan", jax.random.key(CONFIG.seed), None)[1].params
    for (path, x), y, x0 in zip(jax.tree_util.tree_flatten_with_path(a.discriminator.params)[0],
                                jax.tree.leaves(b.discriminator.params), jax.tree.leaves(start),
                                strict=True):
        moved = np.linalg.norm(np.asarray(y) - np.asarray(x0))
        assert np.linalg.norm(np.asarray(x) - np.asarray(y)) < 0.05 * moved, (
            jax.tree_util.keystr(path), moved)
    for tag in ("d_loss", "d_real", "d_fake"):
        got, expected = _scalars(_events(workdir), tag), _scalars(_events(reference_run), tag)
        assert sorted(got) == sorted(expected) == [61, 64], tag
        np.testing.assert_allclose([got[s] for s in (61, 64)], [expected[s] for s in (61, 64)],
                                   rtol=1e-2, err_msg=tag)
    # Process 0 alone writes events and samples: one event file per start, no duplicates.
    assert len(glob.glob(os.path.join(workdir, "events.out.tfevents.*"))) == 2
    samples = sorted(os.listdir(os.path.join(workdir, "samples")))
    assert samples == sorted(os.listdir(os.path.join(reference_run, "samples")))
    assert sorted(_scalars(_events(workdir), "val/psnr")) == [20, 40, 60, FINAL_STEP]


def test_checkpoint_of_another_model_is_a_clear_error(reference_run):
    config = test_config.get_config()
    config.model.num_blocks = 2
    with pytest.raises(checkpoints.CheckpointMismatchError, match=r"model.num_blocks=1 .*=2"):
        trainer.train_and_evaluate(config, reference_run)


def test_gan_phase_starts_from_an_srresnet_checkpoint(reference_run):
    config = test_config.get_config()
    config.pretrain.steps = 0
    config.gan.init_from = reference_run
    variables = phases.initial_generator_variables(config, "gan", previous_generator=None)
    final = _final_states(reference_run).generator
    expected = {"params": final.params, "batch_stats": final.batch_stats}
    for x, y in zip(jax.tree.leaves(variables), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    config.model.channels = 16
    with pytest.raises(checkpoints.CheckpointMismatchError, match="model.channels=8"):
        phases.initial_generator_variables(config, "gan", previous_generator=None)
    config.pretrain.steps = 10
    with pytest.raises(ValueError, match="config.pretrain.steps=0"):
        trainer.train_and_evaluate(config, "unused")


def test_non_finite_loss_stops_before_saving(tmp_path):
    config = test_config.get_config()
    config.optimizer_name = "sgd"
    config.pretrain.learning_rate = 10.0  # diverges within a few steps
    config.gan.steps = 0
    config.checkpoint_every = 1
    with pytest.raises(metrics_log.NonFiniteLossError) as error:
        trainer.train_and_evaluate(config, str(tmp_path))
    # The training loss, or first the generator's inference output (BN running statistics).
    match = re.match(r"(content_loss|the generator's validation output) is (nan|inf|NaN or "
                     r"infinite) at step (\d+)", str(error.value))
    assert match, str(error.value)
    bad_step = int(match.group(3))
    with checkpoints.Checkpointer(str(tmp_path), config) as ckpt:
        steps = ckpt.all_steps()
        generator, _ = phases.abstract_states(config, "pretrain")
        restored = ckpt.restore(steps[-1], generator, None)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(restored.generator))
    assert steps[-1] == bad_step - 1  # every good step was saved, the bad one not


def test_missing_vgg_weights_fail_before_training(tmp_path):
    config = test_config.get_config()
    config.gan.content_loss = "vgg54"
    config.vgg.weights_path = str(tmp_path / "missing.h5")
    with pytest.raises(vgg.VGGWeightsNotFoundError, match="missing.h5"):
        trainer.train_and_evaluate(config, str(tmp_path / "workdir"))
    assert not os.path.exists(tmp_path / "workdir")


def test_stop_request_ctrl_c_once_stops_twice_aborts():
    # Python's own Ctrl-C handler, even where pytest was started in the background (SIG_IGN).
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with run_control.StopRequest() as stop:
            assert not stop.requested
            os.kill(os.getpid(), signal.SIGINT)  # handled at once, in this (the main) thread
            assert stop.requested
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)


def test_phase_spans():
    config = test_config.get_config()
    assert phases.phase_spans(config) == [
        phases.PhaseSpan("pretrain", 0, 60),
        phases.PhaseSpan("gan", 60, 64),
    ]
    config.pretrain.steps = -1
    with pytest.raises(ValueError, match="config.pretrain.steps"):
        phases.phase_spans(config)


def test_sigterm_during_a_long_validation_saves_at_once(tmp_path, monkeypatch):
    """Was: a long validation ran to its end before the checkpoint (here: ten minutes)."""
    config = test_config.get_config()
    config.pretrain.steps, config.gan.steps = 4, 0
    config.eval_every, config.checkpoint_every, config.sample_every = 2, 100, 100
    started = []

    def long_validation(self, state, eval_metrics, samples):
        started.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(600)

    monkeypatch.setattr(trainer._Run, "validate", long_validation)
    with run_control.StopRequest() as stop:
        state = trainer.train_and_evaluate(config, str(tmp_path), stop)
    assert time.monotonic() - started[0] < 60
    assert (stop.signal_name, state.step) == ("SIGTERM", 2)
    with checkpoints.Checkpointer(str(tmp_path), config) as ckpt:
        assert ckpt.all_steps() == [2]


def test_vgg_weights_that_are_not_keras_are_named_before_training(tmp_path, caplog):
    """A file that is not Keras's (random weights in Keras's layout here) is read whole before
    step 0 and named in a warning; the run goes on with it."""
    import h5py

    path = tmp_path / "other_vgg19.h5"
    with h5py.File(path, "w") as f:
        names = [name for name, _, _ in vgg.conv_layers("phi_2_2")]
        f.attrs["layer_names"] = [n.encode() for n in names]
        for name, cin, cout in vgg.conv_layers("phi_2_2"):
            group = f.create_group(name)
            group.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            group.create_dataset(f"{name}/kernel:0", data=np.zeros((3, 3, cin, cout), np.float32))
            group.create_dataset(f"{name}/bias:0", data=np.zeros(cout, np.float32))
    config = test_config.get_config()
    config.gan.content_loss = "vgg22"
    config.vgg.weights_path = str(path)
    with caplog.at_level("WARNING"):
        trainer._require_inputs(config)
    md5 = vgg._file_md5(path)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: md5 {md5} is not that of Keras's {vgg.WEIGHTS_FILENAME} ({vgg.WEIGHTS_MD5}); "
        "the VGG losses use these weights as they are, and are not the paper's"]
    config.gan.content_loss = "vgg54"  # needs convs this file lacks: refused before step 0
    with pytest.raises(vgg.VGGWeightsError, match="layer block3_conv1 is missing"):
        trainer._require_inputs(config)
