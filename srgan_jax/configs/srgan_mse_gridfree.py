"""SRGAN-MSE without the 4x4 grid: resize-conv upsampling and a spectrally normalised D.

The paper's adversarial phase grows a 4x4 grid over SR images within 100 updates; this recipe
stayed grid-free (4-pixel grid power at or below HR's own on Set14) for 1,300 updates on a CPU,
while NIQE fell from 6.62 to 5.39 at 1,000, and drew a faint diagonal hatching from 1,400
(experiments/benchmarks/RESULTS.md, "The grid experiment"; `grid_arms.py`'s
`resize_conv_spectral` arm). Not the paper's SRGAN: its generator
doubles twice by nearest-neighbour resize and a convolution (`model.upsampler`, Odena et al. 2016)
instead of pixel shuffle, and its D has spectral normalisation instead of BatchNorm (Miyato et al.
2018). The shipped SRResNet has pixel-shuffle layers, so the run starts from it with fresh
upsampling layers and fine-tunes them on the MSE for 500 updates before the GAN phase:

    python -m srgan_jax.main --workdir=/tmp/srgan_gridfree \
        --config=srgan_jax/configs/srgan_mse_gridfree.py

The shipped `srgan_mse_gridfree_x4` is this run with `--config.gan.steps=1000` on T91 + BSD200
(`--config.data.source=folder --config.data.train_dirs=...`).
"""

import ml_collections

from srgan_jax.configs import srgan_mse


def get_config() -> ml_collections.ConfigDict:
    config = srgan_mse.get_config()
    config.model.upsampler = "resize_conv"
    config.gan.discriminator_normalization = "spectral"
    config.pretrain.init_from = "srresnet_mse_x4"  # its body and head; fresh upsampling layers
    config.pretrain.reinit_upsampling = True
    config.pretrain.steps = 500
    return config
