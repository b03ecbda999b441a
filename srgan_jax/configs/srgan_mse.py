"""SRGAN-MSE: SRResNet-MSE pre-training, then the GAN phase with the pixel MSE content loss.

python -m srgan_jax.main --workdir=/tmp/srgan_mse --config=srgan_jax/configs/srgan_mse.py
"""

import ml_collections

from srgan_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.gan.content_loss = "mse"
    return config
