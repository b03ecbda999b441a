"""Training-step speed: steps/s and images/s, analytic FLOPs and the fraction of the device's peak.

Times `srgan_jax.training.steps.pretrain_step` (SRResNet with the pixel MSE, the peer's `srresnet`
mode) and `gan_step` (SRGAN with the VGG54 content loss on random VGG weights, the peer's `srgan`
mode; --content-loss vgg22 for the cheaper variant), compiled as the trainer compiles them
(`srgan_jax.training.parallel`, donated states), for every combination of --steps x --batch-sizes x
--dtypes x --steps-per-call x --degradation. Batches are fixed random uint8 crops already on the
device (no input pipeline), as in the PyTorch peer `../shared/peer/torch_srgan_ref.py`: HR and LR
made on the host (`--degradation host`), or HR only with the LR made inside the compiled step
(`device`). With K steps per call (`steps.multi_step`, `config.steps_per_call`) one call runs K
steps on K stacked batches and the time per step is the call's / K. `temp_mb` is XLA's compiled
memory analysis of the call (temporaries; None where the backend has none).

Each configuration: one call that compiles, --warmup untimed steps, then --iters steps issued
back to back (the way the trainer runs: it never waits for a step) and one wait at the end; the
time per step is that total / --iters. XLA compilations after the first call are counted and
reported (`recompiles`, expected 0). FLOPs are `srgan_jax.flops` (conv/dense MACs x 2, counted as
the peer's flops.py counts them); `peak_fraction` is achieved FLOP/s over the chip's dense peak
for the dtype (`srgan_jax.flops.DEVICE_PEAKS`; none for CPUs).

    python experiments/benchmarks/train_step.py                       # 16,64 x f32,bf16 x both
    python experiments/benchmarks/train_step.py --batch-sizes 16 --iters 3 --warmup 1
    python experiments/benchmarks/train_step.py --quick               # CI smoke run, tiny model
    python experiments/benchmarks/train_step.py --jsonl ours.jsonl --peer-jsonl peer.jsonl

With --peer-jsonl (JSON lines printed by the peer script) a second table gives, for each of our
rows, the best peer configuration with the same step, batch and precision and the speed ratio.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import flops
import jax
import numpy as np

from srgan_jax import vgg
from srgan_jax.configs import default as default_config
from srgan_jax.imresize import degrade
from srgan_jax.training import parallel as parallel_lib
from srgan_jax.training import steps as train
from srgan_jax.training import train_state as train_state_lib

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
PEER_MODES = {"pretrain": "srresnet", "gan": "srgan"}
PEER_AMP = {"float32": "none", "bfloat16": "bf16"}
PEER_MODEL = "B16C64"  # the peer always runs the paper's generator


@contextlib.contextmanager
def count_compiles() -> Iterator[list[str]]:
    """Collects one entry per XLA backend compilation inside the block."""
    events: list[str] = []

    def listener(event: str, duration: float, **kwargs: Any) -> None:
        del duration, kwargs
        if event == COMPILE_EVENT:
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def make_config(args: argparse.Namespace, batch_size: int, dtype: str):
    config = default_config.get_config()
    config.model.num_blocks, config.model.channels = args.num_blocks, args.channels
    config.crop_size, config.batch_size = args.crop_size, batch_size
    config.dtype, config.parallelism = dtype, args.parallelism
    return config


def random_batch(par: parallel_lib.Parallel, batch_size: int, crop: int, scale: int,
                 steps_per_call: int, degradation: str):
    """A fixed uint8 batch (or block of K) in `par`'s layout; 'lr' only for host degradation."""
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (batch_size, crop, crop, 3), dtype=np.uint8)
    batch = {"hr": hr}
    if degradation == "host":
        batch["lr"] = np.stack([degrade(image, scale) for image in hr])
    if par.layout == "pmap":
        n = par.num_local_devices
        batch = {k: v.reshape(n, batch_size // n, *v.shape[1:]) for k, v in batch.items()}
    if steps_per_call > 1:
        batch = par.stack([{k: np.roll(v, i, axis=0) for k, v in batch.items()}
                           for i in range(steps_per_call)])
    return par.put_batch(batch)


def build(config, step: str, content_loss: str, steps_per_call: int, degradation: str):
    """(compiled call, its argument tuple minus the states, placed states) for `step`."""
    par = parallel_lib.Parallel.create(config.parallelism, config.batch_size)
    rng = jax.random.key(config.seed)
    g_state = train_state_lib.create_generator_state(config, rng, step, par.bn_axis_name)
    batch = random_batch(par, config.batch_size, config.crop_size, config.model.scale,
                         steps_per_call, degradation)
    key = jax.random.key_data(rng)
    if steps_per_call > 1:
        key = np.stack([np.asarray(key)] * steps_per_call)
    key = par.put_state(key)
    scale = config.model.scale
    if step == "pretrain":
        fn, num_states, static = train.pretrain_step, 1, dict(content_loss="mse", scale=scale)
        states, vgg_params = [g_state], None
    else:
        fn, num_states = train.gan_step, 2
        static = dict(content_loss=content_loss, adversarial_weight=1e-3, scale=scale)
        d_state = train_state_lib.create_discriminator_state(config, rng, par.bn_axis_name)
        states = [g_state, d_state]
        vgg_params = par.put_state(vgg.random_vgg19_params(rng, train.vgg_layer(content_loss)))
    if steps_per_call > 1:
        fn = train.multi_step(fn, num_states)
    call = par.compile(fn, donate_states=num_states, **static)
    return call, (batch, key, vgg_params), [par.put_state(s) for s in states]


def temp_megabytes(call, states, rest) -> float | None:
    """XLA's compiled temporary memory of `call` on these arguments (None if not available)."""
    try:
        stats = call.lower(*states, *rest).compile().memory_analysis()
        return round(stats.temp_size_in_bytes / 2**20, 1)
    except (AttributeError, NotImplementedError, TypeError):
        return None


def measure(args: argparse.Namespace, step: str, batch_size: int, dtype: str,
            steps_per_call: int = 1, degradation: str = "host") -> dict[str, Any]:
    """Times one configuration; returns a JSON-able row."""
    config = make_config(args, batch_size, dtype)
    fn, rest, states = build(config, step, args.content_loss, steps_per_call, degradation)
    n_states = len(states)
    temp_mb = temp_megabytes(fn, states, rest)

    def run(states):
        *states, metrics = fn(*states, *rest)
        return states, metrics

    start = time.perf_counter()
    states, metrics = run(states)
    jax.block_until_ready(metrics)
    first = time.perf_counter() - start
    with count_compiles() as compiles:
        for _ in range(args.warmup):
            states, metrics = run(states)
        jax.block_until_ready(metrics)
        start = time.perf_counter()
        for _ in range(args.iters):
            states, metrics = run(states)
        jax.block_until_ready((states, metrics))
        seconds = (time.perf_counter() - start) / (args.iters * steps_per_call)
    assert len(states) == n_states
    loss = float(np.asarray(metrics["content_loss"]).reshape(-1)[-1])
    shape = dict(
        hr_side=config.crop_size, num_blocks=config.model.num_blocks,
        channels=config.model.channels, scale=config.model.scale,
    )
    step_flops = (
        flops.pretrain_step_flops(batch_size, **shape) if step == "pretrain"
        else flops.gan_step_flops(batch_size, **shape, vgg_layer=train.vgg_layer(args.content_loss))
    )
    device = jax.devices()[0]
    peak = flops.device_peak(device.device_kind, dtype)
    achieved = step_flops / seconds
    return {
        "step": step,
        "batch": batch_size,
        "dtype": dtype,
        "steps_per_call": steps_per_call,
        "degradation": degradation,
        "crop": config.crop_size,
        "model": f"B{config.model.num_blocks}C{config.model.channels}",
        "parallelism": args.parallelism,
        "devices": parallel_lib.Parallel.create(config.parallelism, config.batch_size).mesh.size,
        "device": device.device_kind,
        "ms_per_step": round(1e3 * seconds, 3),
        "steps_per_s": round(1 / seconds, 3),
        "images_per_s": round(batch_size / seconds, 2),
        "first_call_s": round(first, 2),
        "recompiles": len(compiles),
        "temp_mb": temp_mb,
        "gflop_per_step": round(step_flops / 1e9, 2),
        "achieved_tflops": round(achieved / 1e12, 4),
        "peak_fraction": None if peak is None else round(achieved / peak, 4),
        "content_loss": loss,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    header = ("step", "batch", "dtype", "K", "LR made on", "ms/step", "steps/s", "images/s",
              "GFLOP/step", "TFLOP/s", "of peak", "temp MB", "first call s", "recompiles")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        peak = "n/a" if r["peak_fraction"] is None else f"{100 * r['peak_fraction']:.1f} %"
        cells = (r["step"], r["batch"], r["dtype"], r.get("steps_per_call", 1),
                 r.get("degradation", "host"), r["ms_per_step"], r["steps_per_s"],
                 r["images_per_s"], r["gflop_per_step"], r["achieved_tflops"], peak,
                 r.get("temp_mb"), r["first_call_s"], r["recompiles"])
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def peer_ratios(rows: list[dict[str, Any]], peer_rows: list[dict[str, Any]]) -> str:
    """Our rows against the fastest peer row of the same step, batch, precision and crop.

    The peer runs only the paper's model, so rows of other model sizes (e.g. --quick) get none.
    """
    lines = ["| step | batch | dtype | K | LR made on | ours ms | best peer ms "
             "| peer configuration | peer/ours |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        same = [
            p for p in peer_rows
            if "median_step_s" in p
            and r["model"] == PEER_MODEL
            and p["settings"]["hr_size"] == r["crop"]
            and p["mode"] == PEER_MODES[r["step"]]
            and p["settings"]["batch"] == r["batch"]
            and p["settings"]["amp"] == PEER_AMP[r["dtype"]]
        ]
        if not same:
            continue
        best = min(same, key=lambda p: p["median_step_s"])
        s = best["settings"]
        setup = ", ".join(
            [f"torch {s['torch']}"]
            + (["compile " + str(s["compile_mode"])] if s["compile"] else ["eager"])
            + (["channels-last"] if s["channels_last"] else [])
        )
        peer_ms = 1e3 * best["median_step_s"]
        lines.append(
            f"| {r['step']} | {r['batch']} | {r['dtype']} | {r.get('steps_per_call', 1)} "
            f"| {r.get('degradation', 'host')} | {r['ms_per_step']} | {peer_ms:.3f} "
            f"| {setup} | {peer_ms / r['ms_per_step']:.2f}x |"
        )
    return "\n".join(lines)


def _read_jsonl(path: str) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file (other lines, e.g. log output, are skipped)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.startswith("{")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="pretrain,gan", help="pretrain,gan (comma list)")
    parser.add_argument("--batch-sizes", default="16,64", help="global batch sizes (comma list)")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="compute dtypes (comma list)")
    parser.add_argument("--crop-size", type=int, default=96, help="HR crop side")
    parser.add_argument("--num-blocks", type=int, default=16)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--content-loss", default="vgg54", choices=("vgg22", "vgg54"),
                        help="the GAN step's content loss (the peer's is vgg54)")
    parser.add_argument("--steps-per-call", default="1",
                        help="K steps per compiled call (comma list, e.g. 1,4,16)")
    parser.add_argument("--degradation", default="host",
                        help="where LR is made: host (sent as uint8), device (comma list)")
    parser.add_argument("--parallelism", default="none", choices=parallel_lib.PARALLELISMS)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after compiling")
    parser.add_argument("--iters", type=int, default=20, help="timed steps")
    parser.add_argument("--jsonl", help="also append every row to this JSON-lines file")
    parser.add_argument("--peer-jsonl", help="the PyTorch peer's JSON lines, for the ratio table")
    parser.add_argument("--rows-from", metavar="JSONL",
                        help="measure nothing: tabulate the rows of an earlier --jsonl file")
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke run: tiny model, 32x32, batch 4, bf16, VGG22, 2 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_blocks, args.channels, args.crop_size = 2, 16, 32
        args.batch_sizes, args.dtypes, args.warmup, args.iters = "4", "bfloat16", 1, 2
        args.content_loss = "vgg22"
    if args.iters < 1 or args.warmup < 0:
        parser.error("--iters must be >= 1 and --warmup >= 0")
    if not set(args.degradation.split(",")) <= {"host", "device"}:
        parser.error("--degradation takes host and/or device")
    return args


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = _read_jsonl(args.rows_from) if args.rows_from else []
    for step in args.steps.split(",") if not args.rows_from else ():
        for batch_size in _ints(args.batch_sizes):
            for dtype, k, where in itertools.product(
                    args.dtypes.split(","), _ints(args.steps_per_call),
                    args.degradation.split(",")):
                row = measure(args, step, batch_size, dtype, k, where)
                print(json.dumps(row), flush=True)
                if args.jsonl:
                    with open(args.jsonl, "a") as f:
                        f.write(json.dumps(row) + "\n")
                rows.append(row)
    if not rows:
        raise SystemExit(f"no rows in {args.rows_from}")
    print(f"\n{jax.devices()[0].device_kind}, jax {jax.__version__}, "
          f"{rows[0]['model']}, {rows[0]['crop']}x{rows[0]['crop']} HR crops\n")
    print(markdown(rows))
    if args.peer_jsonl:
        print("\n" + peer_ratios(rows, _read_jsonl(args.peer_jsonl)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
