"""SRResNet-VGG22: SRResNet trained on the VGG19 phi_2_2 content loss (plus the paper's total
variation term, weight 2e-8), no GAN phase.

    python -m srgan_jax.main --workdir=/tmp/srresnet_vgg22 \
        --config=srgan_jax/configs/srresnet_vgg22.py
"""

import ml_collections

from srgan_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.pretrain.content_loss = "vgg22"
    config.pretrain.tv_weight = 2e-8  # the paper adds total variation to this variant only
    config.gan.steps = 0
    return config
