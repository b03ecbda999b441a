"""SRResNet-MSE (the paper's PSNR-oriented model): 10^6 updates of pixel MSE, no GAN phase.

    python -m srgan_jax.main --workdir=/tmp/srresnet_mse --config=srgan_jax/configs/srresnet_mse.py

Its checkpoints initialise the SRGAN variants: `--config.pretrain.steps=0
--config.gan.init_from=/tmp/srresnet_mse`.
"""

import ml_collections

from srgan_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.pretrain.content_loss = "mse"
    config.gan.steps = 0
    return config
