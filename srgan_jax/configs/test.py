"""A tiny two-phase run for tests: seconds on a CPU, on the built-in demo images.

python -m srgan_jax.main --workdir=/tmp/srgan_test --config=srgan_jax/configs/test.py
"""

import ml_collections

from srgan_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model.num_blocks = 1
    config.model.channels = 8
    config.model.scale = 2
    config.crop_size = 16  # the smallest discriminator input
    config.batch_size = 8

    config.pretrain.steps = 60
    config.pretrain.learning_rate = 3e-3
    config.gan.steps = 4
    config.gan.content_loss = "mse"
    config.gan.learning_rate = 1e-4
    config.gan.lr_boundaries = config.gan.lr_values = ()

    config.data.source = "demo"
    config.data.prefetch = 1
    config.data.num_workers = 1
    config.log_every = 10
    config.eval_every = 20
    config.checkpoint_every = 20
    config.sample_every = 30
    config.keep_checkpoints = 2
    config.num_eval_images = 2
    config.num_samples = 1
    return config
