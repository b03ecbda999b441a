"""srgan-jax: SRGAN and SRResNet (Ledig et al., CVPR 2017) in JAX/Flax.

`import srgan_jax` is light: the public names below load their modules on first use, and nothing
here ever imports TensorFlow.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Generator": "srgan_jax.models",
    "Discriminator": "srgan_jax.models",
    "upscale": "srgan_jax.upscaling.inference",
    "load_generator": "srgan_jax.upscaling.inference",
    "Upscaler": "srgan_jax.upscaling.inference",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'srgan_jax' has no attribute {name!r}")
