"""Stand-ins for trained generators in tests: random weights with non-trivial BN statistics."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from srgan_jax.models import ModelConfig

TINY = ModelConfig(num_blocks=2, channels=16, scale=4)


def random_variables(config: ModelConfig, seed: int = 0) -> dict:
    """Randomly initialised generator variables with random (not unit) BN statistics, as float32
    numpy arrays: the identity statistics of a fresh `init` would hide whether inference
    normalises with them."""
    key_init, key_stats = jax.random.split(jax.random.key(seed))
    variables = config.generator().init(key_init, jnp.zeros((1, 8, 8, 3), jnp.float32))
    stats = traverse_util.flatten_dict(variables["batch_stats"])
    for key, (path, value) in zip(jax.random.split(key_stats, len(stats)), stats.items(),
                                  strict=True):
        noise = jax.random.uniform(key, value.shape, minval=-0.5, maxval=0.5)
        stats[path] = value + noise if path[-1] == "mean" else value * (1.0 + noise)
    batch_stats = traverse_util.unflatten_dict(stats)
    return jax.tree.map(np.asarray, {"params": variables["params"], "batch_stats": batch_stats})


def reference_sr(config: ModelConfig, variables: dict, rgb: np.ndarray) -> np.ndarray:
    """float64 SR in [0, 1] of one [0, 1] RGB image straight from the Flax module, computed the
    way inference promises: the image mirrored (edge pixel repeated) on each side by the receptive
    field (`receptive_field_radius`, checked against the model in test_tiling), the module applied
    untiled, the padding's output cropped away."""
    from srgan_jax.upscaling.tiling import receptive_field_radius

    m, s = receptive_field_radius(config.num_blocks, config.scale), config.scale
    padded = np.pad(rgb, ((m, m), (m, m), (0, 0)), mode="symmetric")
    sr = config.generator().apply(variables, jnp.asarray(padded[None], jnp.float32), train=False)
    (lo, hi), (h, w) = config.sr_range, rgb.shape[:2]
    unit = (np.asarray(sr[0], np.float64) - lo) / (hi - lo)
    return np.clip(unit[m * s : (m + h) * s, m * s : (m + w) * s], 0.0, 1.0)
