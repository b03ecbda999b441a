"""An independent float64 NIQE, written as the MATLAB release is: one block at a time, the shape
found by scanning all 9,801 candidates, the 7x7 window applied as a 2-D correlation.

Used by tests/test_niqe.py (the package's vectorised NIQE must agree with it) and by
experiments/benchmarks/niqe.py (the per-block loop the vectorised one is timed against).
"""
from __future__ import annotations

import math

import numpy as np

from srgan_jax.imresize import imresize

CANDIDATES = np.arange(9801) * 0.001 + 0.2
_GAMMA = np.vectorize(math.gamma)
RHO = _GAMMA(2 / CANDIDATES) ** 2 / (_GAMMA(1 / CANDIDATES) * _GAMMA(3 / CANDIDATES))


def aggd(vec: np.ndarray) -> tuple[float, float, float]:
    """estimateaggdparam.m: (alpha, beta_left, beta_right)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        left = vec[vec < 0]
        right = vec[vec > 0]
        left_std = math.sqrt(np.mean(left**2)) if left.size else math.nan
        right_std = math.sqrt(np.mean(right**2)) if right.size else math.nan
        gamma_hat = left_std / right_std
        r_hat = np.mean(np.abs(vec)) ** 2 / np.mean(vec**2)
        r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    squared = (RHO - r_hat_norm) ** 2
    position = 0 if np.isnan(squared).all() else int(np.nanargmin(squared))
    alpha = CANDIDATES[position]
    factor = math.sqrt(math.gamma(1 / alpha) / math.gamma(3 / alpha))
    return alpha, left_std * factor, right_std * factor


def compute_feature(block: np.ndarray) -> list[float]:
    """computefeature.m: 18 numbers (MATLAB's circshift offsets, [-1 1] for the anti-diagonal)."""
    alpha, left, right = aggd(block.ravel())
    feature = [alpha, (left + right) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (-1, 1)):
        pair = (block * np.roll(block, shift, axis=(0, 1))).ravel()
        alpha, left, right = aggd(pair)
        mean = (right - left) * math.gamma(2 / alpha) / math.gamma(1 / alpha)
        feature += [alpha, mean, left, right]
    return feature


def imfilter_replicate(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    radius = window.shape[0] // 2
    padded = np.pad(image, radius, mode="edge")
    out = np.zeros_like(image)
    for i in range(window.shape[0]):
        for j in range(window.shape[1]):
            out += window[i, j] * padded[i:i + image.shape[0], j:j + image.shape[1]]
    return out


def features(plane: np.ndarray, window: np.ndarray, block: int = 96) -> np.ndarray:
    """computequality.m up to the MVG fit: [blocks, 36]."""
    rows, cols = plane.shape[0] // block, plane.shape[1] // block
    image = plane[:rows * block, :cols * block].astype(np.float64)
    per_scale = []
    for scale in (1, 2):
        mu = imfilter_replicate(image, window)
        sigma = np.sqrt(np.abs(imfilter_replicate(image * image, window) - mu * mu))
        deviation = image - mu
        deviation[np.abs(deviation) < 1e-9] = 0.0  # exactly 0, not rounding noise (niqe.mscn)
        structdis = deviation / (sigma + 1)
        size = block // scale
        per_scale.append(np.array([
            compute_feature(structdis[r * size:(r + 1) * size, c * size:(c + 1) * size])
            for c in range(cols) for r in range(rows)
        ]))
        image = imresize(image, scale=0.5)
    return np.concatenate(per_scale, axis=1)


def niqe(plane: np.ndarray, mu_pristine: np.ndarray, cov_pristine: np.ndarray,
         window: np.ndarray) -> float:
    """NIQE of a 0..255 plane with the release's nanmean / nancov / pinv."""
    feats = features(plane, window)
    mu = np.nanmean(feats, axis=0)
    complete = feats[~np.isnan(feats).any(axis=1)]
    cov = np.cov(complete, rowvar=False) if len(complete) > 1 else np.zeros((36, 36))
    diff = mu_pristine.ravel() - mu
    return float(np.sqrt(diff @ np.linalg.pinv((cov_pristine + cov) / 2) @ diff))
