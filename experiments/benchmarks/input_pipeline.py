"""Training-input throughput (crops/s) against what one train step consumes.

Loads a folder source (default `../shared/data/train/T91` beside the checkout, else the built-in
demo set), then times the `TrainIterator` making batches of random uint8 HR crops, with their
MATLAB-bicubic LR made on the host (`--degradation host`) or left to the compiled step (`device`,
the host only picks, crops, flips and rotates): once synchronously (`batch(step)` on the calling
thread) and through `next()` with background prefetch threads, for each of `--num-workers`.
With `--train-step` it also times a generator
forward+backward pass at the same batch size (pixel-MSE gradient, the cheapest training step), so
the two rates can be compared: the pipeline keeps up while its crops/s exceed batch_size x steps/s.

  python experiments/benchmarks/input_pipeline.py                  # T91, batch 16, 96x96 crops
  python experiments/benchmarks/input_pipeline.py --steps 5        # CI smoke run
  python experiments/benchmarks/input_pipeline.py --num-workers 1,2,4,8 --degradation device
  python experiments/benchmarks/input_pipeline.py --train-step     # plus the step it must feed
"""
from __future__ import annotations

import argparse
import pathlib
import time

from srgan_jax.data import input_pipeline

DEFAULT_FOLDER = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "train" / "T91"


def crops_per_second(
    iterator: input_pipeline.TrainIterator, steps: int, *, threaded: bool
) -> float:
    """Crops/s over `steps` batches, after one warm-up batch."""
    produce = (lambda step: next(iterator)) if threaded else iterator.batch
    produce(0)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        produce(step)
    return steps * iterator.local_batch_size / (time.perf_counter() - start)


def train_steps_per_second(batch: dict, steps: int) -> float:
    """Steps/s of a full-size generator's forward and backward pass on `batch` (pixel MSE)."""
    import jax
    import jax.numpy as jnp

    from srgan_jax import value_ranges
    from srgan_jax.models import Generator

    model = Generator()
    hr = value_ranges.hr_from_uint8(jnp.asarray(batch["hr"]))
    lr = value_ranges.lr_from_uint8(jnp.asarray(batch["lr"]))
    variables = jax.jit(model.init)(jax.random.key(0), lr[:1])

    @jax.jit
    def gradients(params):
        def loss(params):
            sr, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, lr,
                                train=True, mutable=["batch_stats"])
            return jnp.mean((sr - hr) ** 2)

        return jax.grad(loss)(params)

    jax.block_until_ready(gradients(variables["params"]))  # compile
    start = time.perf_counter()
    for _ in range(steps):
        jax.block_until_ready(gradients(variables["params"]))
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=pathlib.Path, default=None,
                        help=f"training images (default {DEFAULT_FOLDER} if present, else demo)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop-size", type=int, default=96)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--steps", type=int, default=200, help="batches timed per measurement")
    parser.add_argument("--prefetch", type=int, default=4)
    parser.add_argument("--num-workers", default="2", help="prefetch threads (comma list)")
    parser.add_argument("--degradation", default="host,device",
                        help="where LR is made: host, device (comma list)")
    parser.add_argument("--train-step", action="store_true",
                        help="also time a full-size generator step at this batch size")
    parser.add_argument("--train-steps", type=int, default=3)
    args = parser.parse_args()

    folder = args.folder or (DEFAULT_FOLDER if DEFAULT_FOLDER.is_dir() else None)
    start = time.perf_counter()
    source = (input_pipeline.folder_source([folder]) if folder
              else input_pipeline.demo_source("train"))
    load_seconds = time.perf_counter() - start
    megapixels = sum(h * w for h, w in source.sizes) / 1e6
    print(f"source: {source.name}: {len(source)} images, {megapixels:.1f} MP, "
          f"loaded in {load_seconds:.2f} s")

    def make(prefetch: int, workers: int, degradation: str) -> input_pipeline.TrainIterator:
        return input_pipeline.create_train_iterator(
            source, global_batch_size=args.batch_size, crop_size=args.crop_size, scale=args.scale,
            layout="global", prefetch=prefetch, num_workers=workers,
            degrade_on_host=degradation == "host")

    shape = f"batch {args.batch_size}, {args.crop_size}x{args.crop_size} HR, x{args.scale}"
    threaded = 0.0
    for degradation in args.degradation.split(","):
        sync = crops_per_second(make(0, 1, degradation), args.steps, threaded=False)
        print(f"LR made on the {degradation}, synchronous ({shape}): {sync:8.0f} crops/s")
        for workers in (int(n) for n in args.num_workers.split(",")):
            with make(args.prefetch, workers, degradation) as iterator:
                threaded = crops_per_second(iterator, args.steps, threaded=True)
            print(f"LR made on the {degradation}, prefetch {args.prefetch}, {workers} workers: "
                  f"{threaded:8.0f} crops/s", flush=True)

    if args.train_step:
        batch = make(0, 1, "host").batch(0)
        steps_per_s = train_steps_per_second(batch, args.train_steps)
        needed = steps_per_s * args.batch_size
        print(f"generator step (16 blocks, 64 ch, forward+backward): {steps_per_s:.3f} steps/s "
              f"= {needed:.1f} crops/s consumed; the pipeline is {threaded / needed:.0f}x faster")
    else:
        print(f"a train step consumes {args.batch_size} crops: the pipeline feeds "
              f"{threaded / args.batch_size:.0f} steps/s")


if __name__ == "__main__":
    main()
