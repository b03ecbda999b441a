"""A built-in, download-free image set for the offline demo run and for tests.

Procedurally generated RGB textures with the structure super-resolution has to recover: sharp
edges (cells, shapes, rotated checkerboards), fine periodic detail up to near Nyquist (gratings, a
zone-plate chirp) and natural-image-like 1/f noise. Images are a pure function of (split, index), so
every machine sees the same set (numpy keeps its `Generator` streams stable in practice).

Train: 12 images of 192x192. Validation: 4 images of 128x128 from other seeds.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

SPLITS = {"train": (12, 192, 0), "validation": (4, 128, 1000)}  # count, size, first seed


def _coordinates(size: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64),
                       indexing="ij")


def _gratings(rng: np.random.Generator, size: int) -> np.ndarray:
    """Sum of coloured plane waves, 0.02 to 0.4 cycles per pixel."""
    y, x = _coordinates(size)
    image = np.zeros((size, size, 3))
    for _ in range(5):
        angle, frequency, phase = rng.uniform(0, np.pi), rng.uniform(0.02, 0.4), rng.uniform(0, 6.3)
        wave = np.cos(2 * np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle)) + phase)
        image += wave[..., None] * rng.uniform(-1, 1, 3)
    return image


def _zone_plate(rng: np.random.Generator, size: int) -> np.ndarray:
    """Chirp whose frequency grows linearly from a random centre up to about 0.45 cycles/pixel."""
    y, x = _coordinates(size)
    cy, cx = rng.uniform(0, size, 2)
    radius2 = (y - cy) ** 2 + (x - cx) ** 2
    wave = np.cos(np.pi * 0.45 / (1.5 * size) * radius2)
    return wave[..., None] * rng.uniform(0.3, 1, 3) + rng.uniform(-0.5, 0.5, 3)


def _cells(rng: np.random.Generator, size: int) -> np.ndarray:
    """Voronoi cells in flat random colours, with dark borders."""
    y, x = _coordinates(size)
    centres = rng.uniform(0, size, (40, 2))
    distances = np.hypot(y[..., None] - centres[:, 0], x[..., None] - centres[:, 1])
    nearest = np.sort(distances, axis=-1)
    image = rng.uniform(-1, 1, (40, 3))[np.argmin(distances, axis=-1)]
    return image * (nearest[..., 1] - nearest[..., 0] > 1.5)[..., None]


def _shapes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Overlapping rectangles and disks with hard edges."""
    y, x = _coordinates(size)
    image = np.broadcast_to(rng.uniform(-1, 1, 3), (size, size, 3)).copy()
    for _ in range(25):
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(3, size / 5, 2)
        if rng.random() < 0.5:
            mask = (np.abs(y - cy) < ry) & (np.abs(x - cx) < rx)
        else:
            mask = (y - cy) ** 2 + (x - cx) ** 2 < ry**2
        image[mask] = rng.uniform(-1, 1, 3)
    return image


def _pink_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Noise with a 1/f amplitude spectrum, like natural images, correlated across channels."""
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / size)
    base = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * amplitude).real
    tint = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size, 3)), axes=(0, 1))
                        * amplitude[..., None], axes=(0, 1)).real
    return base[..., None] + 0.5 * tint


def _checkerboard(rng: np.random.Generator, size: int) -> np.ndarray:
    """Two-colour checkerboard with a random period (3 to 12 pixels) and angle."""
    y, x = _coordinates(size)
    angle, period = rng.uniform(0, np.pi / 2), rng.uniform(3, 12)
    u = (x * np.cos(angle) + y * np.sin(angle)) / period
    v = (-x * np.sin(angle) + y * np.cos(angle)) / period
    parity = (np.floor(u) + np.floor(v)) % 2
    return np.where(parity[..., None] > 0, rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3))


TEXTURES: tuple[Callable[[np.random.Generator, int], np.ndarray], ...] = (
    _gratings, _zone_plate, _cells, _shapes, _pink_noise, _checkerboard)


def demo_image(seed: int, size: int) -> np.ndarray:
    """The uint8 (size, size, 3) texture of one seed; the seed also picks the kind of texture."""
    rng = np.random.default_rng(seed)
    image = TEXTURES[seed % len(TEXTURES)](rng, size)
    low, high = image.min(), image.max()
    scaled = (image - low) / max(high - low, 1e-12)
    return np.round(scaled * 255).astype(np.uint8)


@functools.cache
def demo_images(split: str = "train") -> tuple[np.ndarray, ...]:
    """The demo set of `split` ('train' or 'validation'), as read-only uint8 (H, W, 3) arrays."""
    if split not in SPLITS:
        raise ValueError(f"demo split must be one of {sorted(SPLITS)}, got {split!r}")
    count, size, first_seed = SPLITS[split]
    images = tuple(demo_image(first_seed + i, size) for i in range(count))
    for image in images:
        image.setflags(write=False)
    return images
