"""A small SRGAN run that finishes on a laptop CPU in a few minutes, offline.

Both phases of the paper's recipe, shrunk: an SRResNet with 4 residual blocks of 32 channels is
pre-trained with the pixel MSE, then trained as SRGAN against the discriminator on 32x32 HR crops
(briefly: on a CPU a GAN step costs about 20 pre-training steps), all on the built-in procedural
demo images (`srgan_jax.data.demo_data`, no download). The GAN phase uses the MSE content loss
(SRGAN-MSE): a VGG loss needs the ImageNet VGG19 weights, which an offline machine does not have
(`--config.gan.content_loss=vgg54 --config.vgg.random_weights=True` runs that code path with
random VGG weights, as a smoke test only).

    python -m srgan_jax.main --workdir=/tmp/srgan_demo --config=srgan_jax/configs/demo.py

Checkpoints, TensorBoard events (`tensorboard --logdir /tmp/srgan_demo`) and sample strips
(`/tmp/srgan_demo/samples/*.png`: LR bicubic | SR | HR) land in the workdir.

It shows the mechanics, not SR quality: on a 2-core CPU shared with other jobs it took 6:15 (3:04
of CPU time), and the validation PSNR rose from 18.7 dB (step 200) to 19.8 dB, still under
bicubic's 20.7 dB (logged as val/bicubic_psnr) at this size and length, while SSIM passed
bicubic's (0.336 vs 0.302). The paper's configs train a much larger model 1000 times longer.
"""

import ml_collections

from srgan_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model.num_blocks = 4
    config.model.channels = 32
    config.crop_size = 32
    config.batch_size = 16

    config.pretrain.steps = 1000
    config.pretrain.content_loss = "mse"
    config.pretrain.learning_rate = 1e-3
    config.pretrain.lr_boundaries = (800,)
    config.pretrain.lr_values = (1e-4,)
    config.gan.steps = 60
    config.gan.content_loss = "mse"
    config.gan.learning_rate = 1e-4
    config.gan.lr_boundaries = config.gan.lr_values = ()

    config.data.source = "demo"
    config.log_every = 50
    config.eval_every = 200
    config.checkpoint_every = 200
    config.sample_every = 500
    config.num_eval_images = 4
    return config
