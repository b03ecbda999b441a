"""NIQE, the no-reference naturalness measure of perceptual SR papers, as the MATLAB release has it.

Mittal, Soundararajan and Bovik, "Making a Completely Blind Image Quality Analyzer", IEEE Signal
Processing Letters 2013. An image is cut into 96x96 blocks; each block's local contrast-normalised
luminance (MSCN coefficients) and the products of neighbouring coefficients are fitted with
(asymmetric) generalised Gaussians, at the image's scale and at half of it: 36 numbers per block.
A multivariate Gaussian fitted to the blocks is compared with one fitted to pristine natural
images (`niqe_model/`, the release's `modelparameters.mat`):

    NIQE = sqrt((mu_p - mu) pinv((cov_p + cov) / 2) (mu_p - mu)^T)

Lower is more natural; pristine photographs score about 3-5, blurred or blocky images more.

The steps are those of the release (`computequality.m`, `computefeature.m`,
`estimateaggdparam.m`), as PIRM 2018 and BasicSR run it: the BT.601 Y channel rounded to integers
(MATLAB's `rgb2ycbcr` on uint8), cropped to whole blocks; the release's 7x7 Gaussian window with
replicated borders; the shape parameter picked from the release's 9,801 candidates; the second
scale by MATLAB's bicubic `imresize(im, 0.5)` (`srgan_jax.imresize`); blocks whose fit is undefined
(constant blocks) are left out of the covariance but keep their defined features in the mean, as
`nanmean`/`nancov` do. All arithmetic is float64 and every block of an image is fitted at once
(the release loops over blocks and scans all candidates per fit): Set14 takes well under a second.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import pathlib

import numpy as np

from srgan_jax import metrics
from srgan_jax.imresize import imresize

BLOCK = 96  # the release's block side, the one its pristine model was fitted with
MODEL_FILE = pathlib.Path(__file__).with_name("niqe_model") / "pristine.npz"
SHAPE_CANDIDATES = 0.2 + 0.001 * np.arange(9801)  # MATLAB's 0.2:0.001:10
PAIR_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical and both diagonals
# |im - mu| below this (grey levels) is float rounding of an exact 0 (see `mscn`); real
# deviations of 0..255 images from a Gaussian-weighted mean are many orders larger.
ROUNDING_NOISE = 1e-9


@dataclasses.dataclass(frozen=True)
class PristineModel:
    """The release's multivariate Gaussian of pristine images and its smoothing window."""

    mean: np.ndarray  # [36]
    covariance: np.ndarray  # [36, 36]
    window: np.ndarray  # [7, 7], sums to 1


@functools.cache
def pristine_model(path: pathlib.Path = MODEL_FILE) -> PristineModel:
    """The pristine model shipped with the package (see niqe_model/README.md)."""
    with np.load(path) as data:
        return PristineModel(
            mean=np.asarray(data["mu_pris_param"], np.float64).reshape(-1),
            covariance=np.asarray(data["cov_pris_param"], np.float64),
            window=np.asarray(data["gaussian_window"], np.float64),
        )


@functools.cache
def _shape_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate shape a: rho(a) = G(2/a)^2 / (G(1/a) G(3/a)) (increasing in a), and
    sqrt(G(1/a) / G(3/a)) and G(2/a) / G(1/a), the factors of the scale and mean estimates."""
    gamma = np.vectorize(math.gamma)
    a = SHAPE_CANDIDATES
    rho = gamma(2 / a) ** 2 / (gamma(1 / a) * gamma(3 / a))
    return rho, np.sqrt(gamma(1 / a) / gamma(3 / a)), gamma(2 / a) / gamma(1 / a)


def _closest_candidate(target: np.ndarray) -> np.ndarray:
    """Index of the candidate minimising (rho - target)^2, the first one on ties, as MATLAB's
    `min` over all of them; 0 where the target is NaN (MATLAB's `min` of an all-NaN vector).

    rho increases with the index, so the minimum is one of the two neighbours of the target.
    """
    rho = _shape_tables()[0]
    upper = np.clip(np.searchsorted(rho, target), 1, rho.size - 1)
    lower = upper - 1
    pick_upper = (rho[upper] - target) ** 2 < (rho[lower] - target) ** 2
    return np.where(np.isnan(target), 0, np.where(pick_upper, upper, lower))


def _root_mean_square(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, sqrt of the mean of x^2 over `mask` (NaN where the mask is empty)."""
    count = mask.sum(axis=-1)
    total = np.where(mask, x * x, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(total / count)


def fit_aggd(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric generalised Gaussian fits of each row of `samples` [..., n] by the release's
    moment matching (`estimateaggdparam.m`): the index of the shape in `SHAPE_CANDIDATES`, and
    the left and right scales.

    A row without negative or without positive values has no fit: its scales are NaN and its
    shape is the first candidate, as in the release.
    """
    left_std = _root_mean_square(samples, samples < 0)
    right_std = _root_mean_square(samples, samples > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        gamma_hat = left_std / right_std
        r_hat = np.mean(np.abs(samples), axis=-1) ** 2 / np.mean(samples * samples, axis=-1)
        r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    index = _closest_candidate(r_hat_norm)
    scale_factor = _shape_tables()[1][index]
    return index, left_std * scale_factor, right_std * scale_factor


def block_features(mscn_blocks: np.ndarray) -> np.ndarray:
    """The 18 features of each block [B, h, w] of MSCN coefficients (`computefeature.m`):
    the GGD shape and scale of the coefficients, then shape, mean, left and right scale of the
    AGGD of their products with each of the four neighbours (the block wraps around)."""
    flat = mscn_blocks.reshape(len(mscn_blocks), -1)
    index, left, right = fit_aggd(flat)
    features = [SHAPE_CANDIDATES[index], (left + right) / 2]
    mean_factor = _shape_tables()[2]
    for shift in PAIR_SHIFTS:
        pairs = flat * np.roll(mscn_blocks, shift, axis=(1, 2)).reshape(len(flat), -1)
        index, left, right = fit_aggd(pairs)
        features += [SHAPE_CANDIDATES[index], (right - left) * mean_factor[index], left, right]
    return np.stack(features, axis=-1)


def _smooth(plane: np.ndarray, window: np.ndarray) -> np.ndarray:
    """MATLAB `imfilter(plane, window, 'replicate')` for a separable (outer product) window."""
    taps = window.sum(axis=1)
    radius = len(taps) // 2
    padded = np.pad(plane, radius, mode="edge")
    rows = np.lib.stride_tricks.sliding_window_view(padded, len(taps), axis=0) @ taps
    return np.lib.stride_tricks.sliding_window_view(rows, len(taps), axis=1) @ taps


def mscn(plane: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (im - mu) / (sigma + 1).

    Where a pixel equals its neighbourhood's weighted mean (a flat area, a linear ramp) the
    coefficient is exactly 0. Floating point leaves rounding noise (~1e-13) there instead, whose
    sign alone decides on which side of the AGGD fits the pixel counts: on images with smooth
    areas (Set5's bird) that noise moves the release's NIQE by about 1 %, in a way that depends
    on the order of its additions (MATLAB's, scipy's and a 2-D loop's differ).
    """
    mu = _smooth(plane, window)
    sigma = np.sqrt(np.abs(_smooth(plane * plane, window) - mu * mu))
    deviation = plane - mu
    deviation[np.abs(deviation) < ROUNDING_NOISE] = 0.0
    return deviation / (sigma + 1.0)


def _blocks(plane: np.ndarray, size: int) -> np.ndarray:
    """[rows * cols, size, size] non-overlapping blocks of a plane whose sides are multiples."""
    h, w = plane.shape
    return plane.reshape(h // size, size, w // size, size).swapaxes(1, 2).reshape(-1, size, size)


def luminance(image: np.ndarray, border: int = 0) -> np.ndarray:
    """The plane NIQE measures: BT.601 Y (or gray) of `image` on 0..255, rounded half away
    from zero to integers as MATLAB's uint8 `rgb2ycbcr` stores it; `border` pixels cropped."""
    return np.floor(metrics.y_plane(image, border) + 0.5)


def niqe_features(plane: np.ndarray, model: PristineModel | None = None) -> np.ndarray:
    """[blocks, 36] features of a 0..255 plane: 18 at full and 18 at half resolution."""
    model = pristine_model() if model is None else model
    rows, cols = plane.shape[0] // BLOCK, plane.shape[1] // BLOCK
    if rows == 0 or cols == 0:
        raise ValueError(f"NIQE needs at least {BLOCK}x{BLOCK} pixels, got "
                         f"{plane.shape[1]}x{plane.shape[0]}")
    plane = np.asarray(plane[: rows * BLOCK, : cols * BLOCK], np.float64)
    full = block_features(_blocks(mscn(plane, model.window), BLOCK))
    half = imresize(plane, scale=0.5)  # MATLAB imresize(im, 0.5), float64, unrounded
    half = block_features(_blocks(mscn(half, model.window), BLOCK // 2))
    return np.concatenate([full, half], axis=1)


def distance(features: np.ndarray, model: PristineModel | None = None) -> float:
    """NIQE of an image's block features: its Gaussian's distance from the pristine one.

    As the release's `nanmean`/`nancov`: the mean skips NaN entries column by column, the
    covariance uses the blocks without NaN (normalised by n - 1, or by 1 for a single block).
    """
    model = pristine_model() if model is None else model
    complete = features[~np.isnan(features).any(axis=1)]
    if len(complete) == 0:
        raise ValueError("NIQE is undefined: no 96x96 block has any contrast (a flat image)")
    mean = np.nanmean(features, axis=0)
    centred = complete - complete.mean(axis=0)
    covariance = centred.T @ centred / max(len(complete) - 1, 1)
    difference = model.mean - mean
    inverse = np.linalg.pinv((model.covariance + covariance) / 2)
    return float(np.sqrt(difference @ inverse @ difference))


def niqe(image: np.ndarray, border: int = 0) -> float:
    """NIQE of an image (uint8/uint16 or float in [0, 1]; RGB measured on its Y channel, gray
    on its gray values), `border` pixels cropped at each side first. Lower is more natural.

    Raises `ValueError` for an image with no whole 96x96 block after the border, or none with
    any contrast.
    """
    return distance(niqe_features(luminance(image, border)))
