"""Inference throughput and peak memory of `srgan_jax.upscale`, on whatever device JAX finds.

For each LR size x compute dtype x mode it reports output megapixels per second (and the FLOP
rate that means, counting only output pixels, not the recomputed tile overlaps) and peak memory:

  untiled  the whole image in one forward pass (skipped when XLA's memory analysis says it needs
           more than the memory budget, e.g. 2000x1500 at full size on a 24 GiB CPU host)
  tiled    each of `--tiles` (`--tile N`: N x N LR pixels kept per tile, read with the exact
           overlap, the receptive-field radius, around them; one compiled window shape)
  auto     what `upscale` does by default: untiled if it fits the budget, else the largest tile

What tiling costs: each tiled row's note gives the pixels its windows compute per pixel of the
untiled (mirror-padded) image, the share its overlap adds, and its time against the untiled row
of the same size and dtype (the overlap's share, or less: smaller windows can run faster per pixel),
and every row the compilations it needed (one for all the tiles of an image).

Every measurement runs in a fresh subprocess, so its peak RSS (host) and, on accelerators, the
device's peak bytes in use belong to that measurement alone. The model is the full-size
generator (16 blocks, 64 channels, x4) with random weights: speed does not depend on the values.
The first call includes compilation; when it is short, `--repeats` more calls are timed and the
best is reported.

  python experiments/benchmarks/inference.py                 # the table of issue 5
  python experiments/benchmarks/inference.py --quick         # seconds: tiny model, small sizes
  python experiments/benchmarks/inference.py --sizes 4000x3000 --dtypes float32 --modes auto
  python experiments/benchmarks/inference.py --sizes 200x150,640x480 --dtypes float32 \
      --tiles 100,256,512                                    # what tiling costs (issue 24)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

RETIME_BELOW_S = 30.0  # only re-run measurements whose first call was shorter than this


def measure(args: argparse.Namespace) -> dict:
    """One measurement, in this process: {'mp_per_s', 'seconds', 'peak_rss_gib', ...}."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flops import inference_flops_per_output_pixel

    from srgan_jax.models import Generator
    from srgan_jax.upscaling.inference import Upscaler, _forward, upscale
    from srgan_jax.upscaling.tiling import plan_tiles

    height, width = (int(v) for v in args.size.split("x"))
    model = Generator(num_blocks=args.num_blocks, channels=args.channels, scale=4)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    upscaler = Upscaler(variables, dtype=args.dtype)
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    tile = {"untiled": None, "tiled": args.tile, "auto": None}[args.mode]
    result = {"device": str(jax.devices()[0].device_kind)}
    margin = upscaler.receptive_field  # the mirrored border inference adds on each side
    padded_pixels = (height + 2 * margin) * (width + 2 * margin)
    if args.mode == "untiled" and padded_pixels > upscaler.max_pixels:
        needed = upscaler.bytes_per_pixel * padded_pixels
        return {**result, "skipped": f"needs {needed / 2**30:.1f} GiB (budget "
                                     f"{upscaler.memory_budget / 2**30:.1f} GiB) or more than "
                                     "MAX_OUTPUT_PIXELS"}
    side = upscaler.tile_for(tile, margin, height + 2 * margin, width + 2 * margin)
    windows = [(t.rows.stop - t.rows.start) * (t.cols.stop - t.cols.start)
               for t in plan_tiles(height + 2 * margin, width + 2 * margin, side, margin, margin)
               ] if side is not None else [padded_pixels]
    compiled = _forward._cache_size()
    times = []
    for _ in range(1 + args.repeats):
        start = time.perf_counter()
        sr = upscale(upscaler, image, tile=tile)
        times.append(time.perf_counter() - start)
        if times[0] > RETIME_BELOW_S:
            break
    assert sr.shape == (4 * height, 4 * width, 3)
    seconds = min(times[1:] or times)
    mp_per_s = 16 * height * width / seconds / 1e6
    flops_per_mp = 1e6 * inference_flops_per_output_pixel(args.num_blocks, args.channels, 4)
    result.update(
        seconds=seconds,
        includes_compile=len(times) == 1,
        mp_per_s=mp_per_s,
        gflop_per_s=mp_per_s * flops_per_mp / 1e9,
        peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        tile=side if side is not None else "-",
        windows=len(windows),
        computed_per_pixel=sum(windows) / padded_pixels,
        compilations=_forward._cache_size() - compiled,
    )
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        result["device_peak_gib"] = stats["peak_bytes_in_use"] / 2**30
    return result


def row(args: argparse.Namespace, size: str, dtype: str, mode: str, tile: int) -> dict:
    """Runs `measure` for one configuration in a fresh interpreter."""
    command = [sys.executable, __file__, "--child", "--size", size, "--dtype", dtype,
               "--mode", mode, "--tile", str(tile), "--repeats", str(args.repeats),
               "--num-blocks", str(args.num_blocks), "--channels", str(args.channels)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"skipped": f"failed: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def format_row(size: str, dtype: str, mode: str, r: dict, untiled: dict | None = None) -> str:
    if "skipped" in r:
        return f"| {size} | {dtype} | {mode} | - | - | - | - | - | {r['skipped']} |"
    notes = ["first call, incl. compile"] if r["includes_compile"] else []
    if r["windows"] > 1:
        notes.append(f"{r['windows']} windows computing {r['computed_per_pixel']:.2f}x the "
                     "untiled pixels")
    elif mode != "untiled":
        notes.append("one tile: the whole image")
    if untiled and "seconds" in untiled and mode != "untiled":
        notes.append(f"time {r['seconds'] / untiled['seconds']:.2f}x untiled")
    notes.append(f"{r['compilations']} compilation(s)")
    note = "; ".join(notes)
    device_peak = f"{r['device_peak_gib']:.2f}" if "device_peak_gib" in r else "-"
    return (f"| {size} | {dtype} | {mode} | {r['tile']} | {r['mp_per_s']:.3f} "
            f"| {r['gflop_per_s']:.0f} | {r['seconds']:.2f} "
            f"| {r['peak_rss_gib']:.2f} / {device_peak} | {note} |")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128x128,512x512,2000x1500", help="LR HxW list")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--modes", default="untiled,tiled")
    parser.add_argument("--tiles", default="256",
                        help="LR pixels kept per tile, a side, of each tiled row (a list)")
    parser.add_argument("--tile", type=int, default=256, help=argparse.SUPPRESS)  # a child's
    parser.add_argument("--repeats", type=int, default=2, help="timed calls after the first")
    parser.add_argument("--num-blocks", type=int, default=16)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2 blocks, 16 channels, small sizes, tile 48")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:  # new defaults; options given explicitly still win
        parser.set_defaults(sizes="64x64,96x128", tiles="48", repeats=1, num_blocks=2,
                            channels=16)
        args = parser.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        print(json.dumps(measure(args)))
        return 0
    tiles = [int(t) for t in args.tiles.split(",")]
    print(f"model: {args.num_blocks} blocks, {args.channels} channels, x4; tiled: --tile "
          f"{args.tiles}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print("| LR size | dtype | mode | tile | output MP/s | useful GFLOP/s | seconds "
          "| peak RSS / device GiB | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    device = None
    for size in args.sizes.split(","):
        for dtype in args.dtypes.split(","):
            untiled = None
            for mode in args.modes.split(","):
                for tile in tiles if mode == "tiled" else [tiles[0]]:
                    r = row(args, size, dtype, mode, tile)
                    untiled = r if mode == "untiled" else untiled
                    device = r.get("device", device)
                    print(format_row(size, dtype, mode, r, untiled), flush=True)
    print(f"load average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"device: {device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
