"""NIQE speed: the package's vectorised NIQE against the release's per-block loop, on BSD100.

Both compute the same numbers (tests/test_niqe.py holds them to 1e-9); this times them on the
100 HR images of BSD100 (481x321, 15 blocks each) and prints one Markdown row per
implementation with the mean NIQE as a check. The per-block loop is tests/niqe_reference.py,
written as the MATLAB release is (each block fitted alone, all 9,801 shape candidates scanned)
but with the candidates' gamma-function table computed once; the release (and BasicSR)
recompute that table in every fit, which the third row times on a few images.

    python experiments/benchmarks/niqe.py [--data_dir ../shared/data/benchmarks]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import time

import numpy as np

from srgan_jax.evaluation import niqe
from srgan_jax.evaluation.validation_set import list_dataset, read_hr

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
import niqe_reference  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", type=pathlib.Path,
                        default=REPO.parent / "shared" / "data" / "benchmarks")
    parser.add_argument("--release_images", type=int, default=5,
                        help="images the release-style loop (table per fit) measures")
    args = parser.parse_args()
    images = [read_hr(path) for path in list_dataset(args.data_dir / "BSD100")]
    planes = [niqe.luminance(image) for image in images]
    model = niqe.pristine_model()

    start = time.perf_counter()
    ours = [niqe.niqe(image) for image in images]
    vectorised = time.perf_counter() - start

    def loop(planes: list[np.ndarray]) -> tuple[list[float], float]:
        start = time.perf_counter()
        values = [niqe_reference.niqe(p, model.mean, model.covariance, model.window)
                  for p in planes]
        return values, time.perf_counter() - start

    per_block_values, per_block = loop(planes)
    fit_once = niqe_reference.aggd

    def fit_with_fresh_table(vec: np.ndarray) -> tuple[float, float, float]:
        a = niqe_reference.CANDIDATES
        gamma = niqe_reference._GAMMA
        niqe_reference.RHO = gamma(2 / a) ** 2 / (gamma(1 / a) * gamma(3 / a))
        return fit_once(vec)

    niqe_reference.aggd = fit_with_fresh_table
    release_values, release = loop(planes[: args.release_images])
    niqe_reference.aggd = fit_once
    count = len(release_values)
    print(f"BSD100 NIQE, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")
    print("| implementation | images | seconds | per image (ms) | mean NIQE |")
    print("|---|---|---|---|---|")
    print(f"| srgan_jax.evaluation.niqe (vectorised) | {len(ours)} | {vectorised:.2f} | "
          f"{1e3 * vectorised / len(ours):.0f} | {np.mean(ours):.4f} |")
    print(f"| per-block loop, gamma table once | {len(planes)} | {per_block:.2f} | "
          f"{1e3 * per_block / len(planes):.0f} | {np.mean(per_block_values):.4f} |")
    print(f"| per-block loop, gamma table per fit (the release) | {count} | {release:.2f} | "
          f"{1e3 * release / count:.0f} | {np.mean(release_values):.4f} (first {count}) |")
    print(f"largest difference between the implementations "
          f"{np.max(np.abs(np.subtract(ours, per_block_values))):.1e}")


if __name__ == "__main__":
    main()
