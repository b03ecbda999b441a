"""The benchmark scripts run (tiny sizes, CPU: a smoke test, not a timing) and count FLOPs right.

`experiments/benchmarks/flops.py` is checked against the PyTorch peer's own counter
(`../shared/peer/flops.py`, an independent implementation) where that file is present, and against
the numbers the peer documents (691.7 / 122.4 GFLOP per step at batch 16, 277 GFLOP per output
megapixel).
"""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "experiments" / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the benchmark scripts import their flops.py as scripts do
import flops  # noqa: E402

PEER_FLOPS = REPO.parent / "shared" / "peer" / "flops.py"
TIMEOUT = 600


def _load(path: pathlib.Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses (flax modules) look their module up there
    spec.loader.exec_module(module)
    return module


def _run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_paper_model_flops_are_the_documented_ones():
    assert flops.gan_step_flops(16) / 1e9 == pytest.approx(691.7, abs=0.05)
    assert flops.pretrain_step_flops(16) / 1e9 == pytest.approx(122.4, abs=0.05)
    assert flops.inference_flops_per_output_pixel() * 1e6 / 1e9 == pytest.approx(277.27, abs=0.01)


@pytest.mark.parametrize("batch, hr", [(16, 96), (64, 96), (3, 128)])
def test_flops_match_the_peer_counter(batch, hr):
    if not PEER_FLOPS.is_file():
        pytest.skip(f"peer counter not found at {PEER_FLOPS}")
    peer = _load(PEER_FLOPS, "peer_flops").step_flops(batch, hr)
    assert flops.gan_step_flops(batch, hr) == sum(peer["srgan"].values())
    assert flops.pretrain_step_flops(batch, hr) == sum(peer["srresnet"].values())


def test_flops_by_hand_for_a_tiny_generator():
    # 1 block, 2 channels, x2 on a 4x4 LR input: every layer's MACs written out.
    head = 4 * 4 * 2 * 3 * 81
    body = 3 * (4 * 4 * 2 * 2 * 9)  # two block convs and the post-body conv
    up = 4 * 4 * 8 * 2 * 9
    tail = 8 * 8 * 3 * 2 * 81
    forward = 2 * (head + body + up + tail)
    backward = 2 * (head + 2 * (body + up + tail))  # no input gradient for the first layer
    got = flops.pretrain_step_flops(5, 8, num_blocks=1, channels=2, scale=2)
    assert got == 5 * (forward + backward)


@pytest.mark.parametrize("kind, dtype, peak", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989e12),
    ("NVIDIA H100 PCIe", "bfloat16", 756e12),
    ("NVIDIA H200", "float32", 494.5e12),
    ("TPU v5 lite", "bfloat16", 197e12),
    ("TPU v5p", "bfloat16", 459e12),
    ("cpu", "float32", None),
])
def test_device_peaks(kind, dtype, peak):
    assert flops.device_peak(kind, dtype) == peak


@pytest.mark.slow
def test_train_step_benchmark_quick(tmp_path):
    jsonl = tmp_path / "rows.jsonl"
    out = _run("train_step.py", "--quick", "--jsonl", str(jsonl))
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [(r["step"], r["dtype"]) for r in rows] == [
        ("pretrain", "bfloat16"), ("gan", "bfloat16")
    ]
    for r in rows:
        assert r["recompiles"] == 0, r
        assert r["ms_per_step"] > 0 and r["images_per_s"] == pytest.approx(
            r["batch"] * 1e3 / r["ms_per_step"], rel=1e-2)
        assert r["peak_fraction"] is None  # a CPU has no entry in the peak table
        assert r["content_loss"] > 0
    expected = flops.gan_step_flops(4, 32, num_blocks=2, channels=16, vgg_layer="phi_2_2")
    assert rows[-1]["gflop_per_step"] == round(expected / 1e9, 2)
    assert "| gan | 4 | bfloat16 | 1 | host |" in out
    assert all(r["temp_mb"] is None or r["temp_mb"] > 0 for r in rows)


@pytest.mark.slow
def test_device_run_bench_sweeps_steps_per_call_and_degradation(tmp_path):
    """`device_run.sh bench` at its CPU size: the K x degradation sweep and the input rate."""
    data = REPO.parent / "shared" / "data"
    env = dict(os.environ, QUICK="1", OUT=str(tmp_path), PYTHON=sys.executable,
               PEER_PYTHON=sys.executable, PEER=str(tmp_path / "no_peer.py"),
               DATA=str(data if data.is_dir() else tmp_path))
    result = subprocess.run(["bash", str(BENCHMARKS / "device_run.sh"), "bench"], env=env,
                            capture_output=True, text=True, timeout=2 * TIMEOUT, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "jax.jsonl").read_text().splitlines()]
    configurations = {(r["step"], r["steps_per_call"], r["degradation"]) for r in rows}
    assert configurations == {("gan", k, where) for k in (1, 4) for where in ("host", "device")} \
        | {("pretrain", 1, "device"), ("pretrain", 4, "device")}
    assert all(r["recompiles"] == 0 for r in rows)
    table = (tmp_path / "bench.md").read_text()
    assert "| gan | 4 | bfloat16 | 4 | device |" in table
    if data.is_dir():
        assert "crops/s" in (tmp_path / "input_pipeline.txt").read_text()


def test_peer_ratio_table():
    bench = _load(BENCHMARKS / "train_step.py", "train_step_benchmark")
    ours = {"step": "gan", "batch": 16, "dtype": "bfloat16", "ms_per_step": 4.0, "crop": 96,
            "model": "B16C64"}
    settings = {"batch": 16, "amp": "bf16", "torch": "2.x", "compile": True, "hr_size": 96,
                "compile_mode": "reduce-overhead", "channels_last": True}
    peer = [
        {"mode": "srgan", "median_step_s": 0.008, "settings": settings},
        {"mode": "srgan", "median_step_s": 0.020, "settings": {**settings, "compile": False}},
        {"mode": "srgan", "median_step_s": 0.001, "settings": {**settings, "amp": "none"}},
        {"mode": "srresnet", "median_step_s": 0.001, "settings": settings},
        {"mode": "srgan", "median_step_s": 0.001, "settings": {**settings, "hr_size": 128}},
        {"mode": "srgan", "error": "RuntimeError", "settings": settings},
    ]
    table = bench.peer_ratios([ours], peer).splitlines()
    assert len(table) == 3
    assert "| 8.000 |" in table[-1] and "compile reduce-overhead, channels-last" in table[-1]
    assert table[-1].endswith("| 2.00x |")
    # A smaller model than the peer's is never compared with it.
    assert len(bench.peer_ratios([{**ours, "model": "B2C16"}], peer).splitlines()) == 2


def test_input_pipeline_benchmark_runs():
    out = _run("input_pipeline.py", "--steps", "3", "--batch-size", "4", "--num-workers", "1")
    assert "synchronous" in out and "crops/s" in out


def test_inference_benchmark_runs():
    out = _run("inference.py", "--quick", "--sizes", "64x64", "--dtypes", "float32",
               "--modes", "tiled")
    assert "| 64x64 | float32 | tiled |" in out


@pytest.mark.slow
def test_device_run_train_ships_both_models_with_card_and_picture(shared_data, tmp_path):
    """`device_run.sh train` at its CPU size: SRResNet-MSE then SRGAN-MSE from it, both written in
    the shipped format (loadable as shipped models), the card's table and the comparison picture."""
    from srgan_jax.upscaling import model_file, registry

    env = dict(os.environ, QUICK="1", OUT=str(tmp_path), PYTHON=sys.executable,
               DATA=str(shared_data))
    result = subprocess.run(["bash", str(BENCHMARKS / "device_run.sh"), "train"], env=env,
                            capture_output=True, text=True, timeout=2 * TIMEOUT, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    weights = tmp_path / "weights"
    entries = {p.stem: registry.ShippedModel.from_json(p) for p in weights.glob("*.json")}
    assert set(entries) == {"srresnet_mse_x2", "srgan_mse_x2"}  # the test config is x2
    summary = json.loads((tmp_path / "results.json").read_text())
    for name, entry in entries.items():
        assert model_file.load_model(weights / entry.file).config.scale == entry.scale == 2
        run = name.removesuffix("_x2")
        assert entry.recipe["updates"] == summary["runs"][run]["steps"] > 0
        assert entry.psnr == {"Set5": round(summary["results"][run][0]["psnr"], 2)}
        assert entry.niqe == {"Set5": round(summary["results"][run][0]["niqe"], 2)}
        assert entry.baselines["HR"]["niqe"]["Set5"] == round(
            summary["results"][run][0]["hr_niqe"], 2)
        assert f"| {entry.psnr['Set5']:.2f} |" in (weights / entry.card).read_text()
    # The GAN phase ran with the antialiased D, and its metadata says so.
    assert entries["srgan_mse_x2"].recipe["discriminator_antialias"] is True
    assert "discriminator_antialias" not in entries["srresnet_mse_x2"].recipe
    card = json.loads((tmp_path / "card.json").read_text())["Set5"]
    assert list(card) == ["bicubic", "srresnet_mse_x2", "srgan_mse_x2", "HR"]
    assert card["srresnet_mse_x2"]["psnr"] == pytest.approx(
        summary["results"]["srresnet_mse"][0]["psnr"], abs=1e-6)
    from PIL import Image

    assert Image.open(tmp_path / "comparison.png").size == (4 * 64 + 3 * 4, 64)


def test_plain_flax_step_is_the_same_model_and_runs():
    """The plain-Flax baseline has exactly our generator's and discriminator's parameter counts,
    and its two steps run and report a time."""
    import jax
    import jax.numpy as jnp

    from srgan_jax.models import Discriminator, ModelConfig

    plain = _load(BENCHMARKS / "plain_flax_step.py", "plain_flax_step")
    count = lambda tree: sum(x.size for x in jax.tree.leaves(tree))  # noqa: E731
    lr, hr = jnp.zeros((1, 24, 24, 3)), jnp.zeros((1, 96, 96, 3))
    ours_g = ModelConfig(num_blocks=16, channels=64, scale=4).generator()
    assert count(jax.eval_shape(lambda: plain.Generator().init(jax.random.key(0), lr, False))) \
        == count(jax.eval_shape(lambda: ours_g.init(jax.random.key(0), lr, train=False)))
    assert count(jax.eval_shape(lambda: plain.Discriminator().init(jax.random.key(0), hr, False))) \
        == count(jax.eval_shape(lambda: Discriminator().init(jax.random.key(0), hr, train=False)))
    row = plain.measure("pretrain", batch=2, crop=32, blocks=1, warmup=1, iters=1)
    assert row["ms_per_step"] > 0 and row["loss"] > 0


def test_side_by_side_table():
    side = _load(BENCHMARKS / "cpu_side_by_side.py", "cpu_side_by_side")
    results = {"ours": [{"pretrain": 100.0}, {"pretrain": 120.0}, {"pretrain": 90.0}],
               "pytorch eager fp32": [{"pretrain": 200.0}] * 3}
    table = side.table(results, [1.0, 1.5])
    assert "| ours | pretrain | 100 | 90-120 | 3 | 2.00x |" in table
    assert "| pytorch eager fp32 | pretrain | 200 | 200-200 | 3 | 1.00x |" in table
    assert "1.00-1.50" in table
