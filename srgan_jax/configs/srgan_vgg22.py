"""SRGAN-VGG22: SRResNet-MSE pre-training, then the GAN phase with the VGG19 phi_2_2 content loss.

python -m srgan_jax.main --workdir=/tmp/srgan_vgg22 --config=srgan_jax/configs/srgan_vgg22.py
"""

import ml_collections

from srgan_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.gan.content_loss = "vgg22"
    return config
