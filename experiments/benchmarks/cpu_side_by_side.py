"""Interleaved CPU timing: our steps, the plain Flax steps, PyTorch's eager step, and XLA flags.

One round runs, each in a fresh process and in this order (rotated by one every round, so that no
variant always runs first after a quiet spell):

  ours           `train_step.py` (srgan_jax's pretrain_step and gan_step, fp32, batch 16, 96x96)
  ours + FLAGS   the same under each `--xla-flags` setting (the YNNPACK fusion A/B of issue 11)
  plain flax     `plain_flax_step.py` (the same model and losses from stock flax.linen layers)
  pytorch eager  `../shared/peer/torch_srgan_ref.py --device cpu --channels-last` (fp32, eager)
  upscale        with --upscale: `inference.py`'s untiled 128x128 -> 512x512 fp32 forward pass,
                 under the default flags and each `--xla-flags` setting

Each variant reports its time per step (ours and plain: steps back to back / --iters; PyTorch:
median of --iters), and the load average is read before each process starts. The table gives, per
variant and step, the median over rounds with min-max, and the ratio to PyTorch's median.

    python experiments/benchmarks/cpu_side_by_side.py --peer-python /path/to/torch/venv/bin/python
    python experiments/benchmarks/cpu_side_by_side.py --rounds 3 --iters 3 --upscale \\
        --xla-flags=--xla_cpu_experimental_ynn_fusion_type= \\
        --xla-flags=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

HERE = pathlib.Path(__file__).resolve().parent
PEER = HERE.parents[1].parent / "shared" / "peer" / "torch_srgan_ref.py"
PEER_MODES = {"srresnet": "pretrain", "srgan": "gan"}
Measurement = tuple[dict[str, float], float]  # ms per step by step kind, load average


def _run(command: list[str], xla_flags: str | None = None) -> tuple[list[dict], float]:
    """JSON lines printed by `command` (run with XLA_FLAGS=`xla_flags` if given), and the 1-min
    load average just before it started."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    if xla_flags:
        env["XLA_FLAGS"] = xla_flags
    load = os.getloadavg()[0]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return rows, load


def ours(args: argparse.Namespace, xla_flags: str | None) -> Measurement:
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = pathlib.Path(tmp) / "rows.jsonl"
        _, load = _run([sys.executable, str(HERE / "train_step.py"), "--steps", "pretrain,gan",
                        "--batch-sizes", str(args.batch), "--crop-size", str(args.crop),
                        "--num-blocks", str(args.num_blocks), "--dtypes", "float32", "--warmup",
                        str(args.warmup), "--iters", str(args.iters), "--jsonl", str(jsonl)],
                       xla_flags)
        rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    return {r["step"]: r["ms_per_step"] for r in rows}, load


def plain_flax(args: argparse.Namespace) -> Measurement:
    rows, load = _run([sys.executable, str(HERE / "plain_flax_step.py"), "--steps",
                       "pretrain,gan", "--batch", str(args.batch), "--crop", str(args.crop),
                       "--num-blocks", str(args.num_blocks), "--warmup", str(args.warmup),
                       "--iters", str(args.iters)])
    return {r["step"]: r["ms_per_step"] for r in rows}, load


def pytorch(args: argparse.Namespace) -> Measurement:
    """The peer's generator is always the paper's (16 blocks): compare it at --num-blocks 16."""
    rows, load = _run([args.peer_python, str(args.peer_script), "--device", "cpu",
                       "--channels-last", "--mode", "srresnet,srgan", "--batch", str(args.batch),
                       "--hr-size", str(args.crop),
                       "--threads", str(os.cpu_count()), "--warmup", str(args.warmup),
                       "--steps", str(args.iters)])
    return {PEER_MODES[r["mode"]]: 1e3 * r["median_step_s"] for r in rows}, load


def upscale(args: argparse.Namespace, xla_flags: str | None) -> Measurement:
    side = args.upscale_size
    rows, load = _run([sys.executable, str(HERE / "inference.py"), "--child", "--size",
                       f"{side}x{side}", "--dtype", "float32", "--mode", "untiled", "--tile",
                       "256", "--repeats", "2", "--num-blocks", str(args.num_blocks),
                       "--channels", "64"], xla_flags)
    return {f"upscale {side}->{4 * side}": 1e3 * rows[-1]["seconds"]}, load


def variants(args: argparse.Namespace) -> dict[str, Callable[[], Measurement]]:
    found = {"ours": lambda: ours(args, None)}
    for flags in args.xla_flags:
        found[f"ours, XLA_FLAGS={flags}"] = lambda flags=flags: ours(args, flags)
    found["plain flax"] = lambda: plain_flax(args)
    if args.peer_python:
        found["pytorch eager fp32"] = lambda: pytorch(args)
    if args.upscale:
        found["upscale"] = lambda: upscale(args, None)
        for flags in args.xla_flags:
            found[f"upscale, XLA_FLAGS={flags}"] = lambda flags=flags: upscale(args, flags)
    return found


def table(results: dict[str, list[dict[str, float]]], loads: list[float]) -> str:
    peer = results.get("pytorch eager fp32", [])
    peer_median = {k: statistics.median(r[k] for r in peer) for k in (peer[0] if peer else {})}
    lines = ["| variant | step | ms/step, median | min-max | rounds | PyTorch eager / this |",
             "|---|---|---|---|---|---|"]
    for name, rounds in results.items():
        for step in rounds[0]:
            times = [r[step] for r in rounds]
            median = statistics.median(times)
            ratio = f"{peer_median[step] / median:.2f}x" if step in peer_median else "-"
            lines.append(f"| {name} | {step} | {median:.0f} | {min(times):.0f}-{max(times):.0f} "
                         f"| {len(times)} | {ratio} |")
    lines.append("")
    lines.append(f"Load average (1 min) before each process: {min(loads):.2f}-{max(loads):.2f}.")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=96, help="HR crop side")
    p.add_argument("--num-blocks", type=int, default=16, help="generator residual blocks")
    p.add_argument("--upscale-size", type=int, default=128, help="LR side of the upscale timing")
    p.add_argument("--peer-python", help="a Python with torch (the peer is skipped without it)")
    p.add_argument("--peer-script", default=str(PEER))
    p.add_argument("--xla-flags", action="append", default=[],
                   help="an XLA_FLAGS setting to time our step under (repeatable)")
    p.add_argument("--upscale", action="store_true", help="also time upscale under each setting")
    p.add_argument("--jsonl", help="append every measurement to this file")
    args = p.parse_args()

    found = variants(args)
    names = list(found)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    loads = []
    for round_ in range(args.rounds):
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in order:
            times, load = found[name]()
            results[name].append(times)
            loads.append(load)
            print(f"round {round_ + 1}: {name}: {times} (load {load:.2f})", file=sys.stderr,
                  flush=True)
            if args.jsonl:
                with open(args.jsonl, "a") as f:
                    f.write(json.dumps({"round": round_ + 1, "variant": name, "ms": times,
                                        "load": load, "time": time.time()}) + "\n")
    print(table(results, loads))


if __name__ == "__main__":
    main()
