"""The offline demo: the adversarial phase on real photographs, in a few minutes on a laptop CPU.

SRGAN-MSE (the paper's generator, its discriminator with a blur before each stride-2
convolution as the shipped `srgan_mse_x4` was trained, the pixel-MSE content loss plus 1e-3 x the
adversarial loss) starts from the shipped SRResNet (`srresnet_mse_x4`), as the paper's SRGAN starts
from its trained SRResNet, and trains briefly on 96x96 crops of three public-domain/CC0 photographs
shipped in the package (`srgan_jax/data/photos/train`). Validation and sample strips use two other
photographs (`photos/validation`), scored by the published protocol next to bicubic. No download:
the VGG losses need the ImageNet VGG19 weights, which an offline machine does not have.

    python -m srgan_jax.main --workdir=workdir/demo --config=srgan_jax/configs/demo.py

Checkpoints, TensorBoard events (`tensorboard --logdir workdir/demo`) and sample strips
(`workdir/demo/samples/*.png`: LR bicubic | SR | HR) land in the workdir. Forty updates show the
mechanics (D learning, G's losses), not a trained SRGAN: the paper trains 10^5 of them.
"""

import os

import ml_collections

from srgan_jax.configs import default

PHOTOS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "photos")


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.batch_size = 8

    config.pretrain.steps = 0
    config.gan.init_from = "srresnet_mse_x4"  # the shipped SRResNet-MSE
    config.gan.steps = 40
    config.gan.content_loss = "mse"
    config.gan.learning_rate = 1e-4
    config.gan.lr_boundaries = config.gan.lr_values = ()
    config.gan.discriminator_antialias = True  # as the shipped SRGAN was trained

    config.data.source = "folder"
    config.data.train_dirs = [os.path.join(PHOTOS, "train")]
    config.data.eval_dirs = [os.path.join(PHOTOS, "validation")]
    config.log_every = 5
    config.eval_every = 20
    config.checkpoint_every = 20
    config.sample_every = 20
    config.num_eval_images = 2
    config.num_samples = 2
    return config
