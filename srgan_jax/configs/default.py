"""The paper's SRGAN-VGG54 run (Ledig et al. 2017, Sec. 3.2), both phases in one run.

Phase 1 trains SRResNet with the pixel MSE for 10^6 updates at lr 1e-4; phase 2 initialises
SRGAN's generator with it and trains generator and discriminator for 2*10^5 updates with the VGG54
content loss plus 1e-3 * the adversarial loss, at lr 1e-4 and then 1e-5 after 10^5 updates. Adam
(beta1 0.9), batch 16 of 96x96 HR crops (24x24 LR), 4x. Training images: DIV2K through TFDS (the
paper used 350k ImageNet images), or image folders: `--config.data.source=folder
--config.data.train_dirs=/data/train --config.data.eval_dirs=/data/Set5` (repeat a flag for
several folders).

    python -m srgan_jax.main --workdir=/tmp/srgan_vgg54 --config=srgan_jax/configs/default.py

Steps are global: the GAN phase runs steps pretrain.steps .. pretrain.steps + gan.steps, while
each phase's `lr_boundaries` count from the start of its own phase (its optimizer's counter).
"""

import ml_collections
from ml_collections.config_dict import placeholder

from srgan_jax.data import input_pipeline
from srgan_jax.evaluation import evaluators


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dtype = "float32"  # compute dtype; 'bfloat16' on TPU/GPU (params, BN, losses stay f32)
    config.parallelism = "pmap"  # 'pmap' | 'jit' (Mesh + NamedSharding) | 'none' (one device)
    config.distributed = False  # True: jax.distributed.initialize() first (multi-host runs)
    # Where the processes meet; None: detected (Cloud TPU, SLURM, Open MPI, Kubernetes) or, for
    # the address, $JAX_COORDINATOR_ADDRESS. Set all three to run several processes on one machine.
    config.coordinator_address = placeholder(str)
    config.num_processes = placeholder(int)
    config.process_id = placeholder(int)

    config.model = ml_collections.ConfigDict()
    config.model.num_blocks = 16
    config.model.channels = 64
    config.model.scale = 4
    config.model.batch_norm = True  # False: a generator without BN (e.g. one folded below)
    # 'resize_conv': nearest-neighbour x2 then a convolution instead of the paper's sub-pixel
    # convolution (not in the paper; models.Generator).
    config.model.upsampler = "pixel_shuffle"

    config.crop_size = 96  # HR crop; also the discriminator's input size
    config.batch_size = 16  # global, over all devices and hosts
    # Update steps per compiled call (jax.lax.scan): >1 keeps a fast accelerator busy when one
    # step is shorter than launching it. Validation, samples and checkpoints stay exact.
    config.steps_per_call = 1

    config.optimizer_name = "adam"
    config.optim = ml_collections.ConfigDict()
    config.optim.b1 = 0.9
    config.optim.b2 = 0.999
    config.optim.eps = 1e-8
    config.optim.grad_clip_norm = placeholder(float)  # None: no clipping

    config.pretrain = ml_collections.ConfigDict()
    config.pretrain.steps = 1_000_000
    config.pretrain.content_loss = "mse"
    config.pretrain.learning_rate = 1e-4
    # Piecewise constant: learning_rate, then lr_values[k] from update lr_boundaries[k] of the
    # phase, e.g. --config.pretrain.lr_boundaries='(4000,)' --config.pretrain.lr_values='(1e-5,)'.
    config.pretrain.lr_boundaries = ()
    config.pretrain.lr_values = ()
    # The older single-switch form (one boundary); when set, it replaces lr_boundaries/lr_values.
    config.pretrain.lr_decay_step = placeholder(int)
    config.pretrain.decayed_learning_rate = 1e-5
    config.pretrain.tv_weight = 0.0  # total-variation regulariser (the paper's VGG22 uses 2e-8)
    # '' starts SRResNet from scratch; a workdir, model file or shipped name (e.g.
    # 'srresnet_mse_x4') trains that generator further, with a fresh optimizer.
    config.pretrain.init_from = ""
    # True: init_from's upsampling convolutions are replaced by fresh ones (ICNR for a sub-pixel
    # convolution), the rest kept: to change config.model.upsampler, or restart the sub-pixel
    # layers free of checkerboard, before a fine-tune.
    config.pretrain.reinit_upsampling = False

    config.gan = ml_collections.ConfigDict()
    config.gan.steps = 200_000
    config.gan.content_loss = "vgg54"
    config.gan.adversarial_weight = 1e-3
    config.gan.learning_rate = 1e-4
    config.gan.lr_boundaries = (100_000,)
    config.gan.lr_values = (1e-5,)
    config.gan.lr_decay_step = placeholder(int)
    config.gan.decayed_learning_rate = 1e-5
    config.gan.tv_weight = 0.0
    # Options against the 4x4 grid the adversarial phase grows over SR images, none in the paper
    # (experiments/README.md gives each one's evidence; the defaults are the paper's SRGAN):
    # True blurs ([1,2,1]^2/16) before each stride-2 convolution of D (models.Discriminator).
    config.gan.discriminator_antialias = False
    # 'spectral': spectral normalisation of D's layers instead of its BatchNorm (Miyato 2018).
    config.gan.discriminator_normalization = "batch"
    # s > 0: D sees each image cropped by s pixels at a random offset (0..s-1 per axis), so that
    # its stride lattice is not locked to the generator's sub-pixel lattice (training.steps).
    config.gan.discriminator_random_shift = 0
    config.gan.discriminator_lr_scale = 1.0  # D's learning rate = this x the phase's schedule
    # 'relativistic': ESRGAN's relativistic average losses for D and G instead of -log D(G(x)).
    config.gan.adversarial_loss = "standard"
    # True: G enters the GAN phase with each BatchNorm folded into the convolution before it (the
    # same images in inference mode) and trains without BN, as it is then used (models.py).
    config.gan.fold_batch_norm = False
    # '' continues from this run's pretrain phase; a path starts G from another run's checkpoint
    # (an SRResNet workdir, its checkpoints/ dir or one step dir), e.g. with pretrain.steps=0.
    config.gan.init_from = ""

    config.vgg = ml_collections.ConfigDict()
    config.vgg.weights_path = placeholder(str)  # None: $SRGAN_JAX_VGG19_WEIGHTS or the cache
    config.vgg.download = True
    config.vgg.random_weights = False  # True only for offline smoke runs: the loss is meaningless

    config.data = input_pipeline.default_config()
    config.data.source = "tfds"  # DIV2K's 800 HR images; needs tensorflow-datasets (the tfds extra)
    config.data.tfds_name = "div2k/bicubic_x4"

    config.log_every = 100
    config.eval_every = 10_000
    config.checkpoint_every = 10_000
    config.sample_every = 10_000
    config.keep_checkpoints = 3
    config.num_eval_images = 5
    # Validation metrics by evaluator name (srgan_jax.evaluation.evaluators), as big_vision's
    # config.evals: the published PSNR/SSIM protocol and its bicubic baseline.
    config.evals = evaluators.default_config()
    config.num_samples = 3
    return config
