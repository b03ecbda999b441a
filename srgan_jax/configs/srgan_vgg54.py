"""SRGAN-VGG54, the paper's SRGAN: SRResNet-MSE pre-training, then GAN with the phi_5_4 loss.

The same run as `default.py`, named after the paper's table.

    python -m srgan_jax.main --workdir=/tmp/srgan_vgg54 --config=srgan_jax/configs/srgan_vgg54.py

From an existing SRResNet-MSE run, skip the pre-training:

    python -m srgan_jax.main --workdir=/tmp/srgan_vgg54 --config=srgan_jax/configs/srgan_vgg54.py \
        --config.pretrain.steps=0 --config.gan.init_from=/tmp/srresnet_mse
"""

import ml_collections

from srgan_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.gan.content_loss = "vgg54"
    return config
