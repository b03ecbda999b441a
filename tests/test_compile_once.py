"""The training loop compiles its steps once, and bfloat16 compute keeps float32 state.

Compile-once: XLA compilations are counted (jax.monitoring's backend-compile event, or its hit in
the persistent cache) during a real `trainer.train_and_evaluate` run of both phases, under the pmap
driver (8 fake devices) and the jit driver, with metrics fetched every step. Each compilation is
attributed to the last step the loop had finished; after a phase's first step nothing may compile
until the phase's last step (whose end-of-phase evaluation compiles the inference function once).

bfloat16: with `config.dtype='bfloat16'` the steps must really convolve in bfloat16 (checked in
the compiled program's jaxpr) while every parameter, BatchNorm statistic, optimizer moment and
metric stays float32, for the generator, the discriminator and the VGG content loss.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax import vgg
from srgan_jax.configs import test as test_config
from srgan_jax.training import metrics_log, parallel, train_state, trainer
from srgan_jax.training import steps as train

# An XLA compilation, or its executable loaded from the persistent cache (tests/conftest.py) in its
# place: either means the loop asked for a program it did not have.
COMPILE_EVENTS = ("/jax/core/compile/backend_compile_duration",
                  "/jax/compilation_cache/cache_retrieval_time_sec")
PRETRAIN_STEPS, GAN_STEPS = 5, 3


def _config(parallelism: str, **overrides):
    config = test_config.get_config()
    config.parallelism = parallelism
    config.pretrain.steps, config.gan.steps = PRETRAIN_STEPS, GAN_STEPS
    config.log_every = 1  # fetch the metrics after every step: fetching must not compile either
    far = PRETRAIN_STEPS + GAN_STEPS + 1  # evaluate, sample and save only at the phase ends
    config.eval_every = config.sample_every = config.checkpoint_every = far
    for name, value in overrides.items():
        config[name] = value
    return config


@pytest.mark.parametrize("parallelism", ["pmap", "jit"])
def test_training_loop_compiles_each_step_once(parallelism, tmp_path, monkeypatch):
    last_step = [0]  # the last step the loop finished when a compilation happens
    compiled_after = []

    def on_event(event: str, duration: float, **kwargs) -> None:
        if event in COMPILE_EVENTS:
            compiled_after.append(last_step[0])

    original_append = metrics_log.MetricsLog.append

    def append(self, first_step, count, step_metrics):
        last_step[0] = first_step + count - 1
        original_append(self, first_step, count, step_metrics)

    monkeypatch.setattr(metrics_log.MetricsLog, "append", append)
    jax.monitoring.register_event_duration_secs_listener(on_event)
    try:
        states = trainer.train_and_evaluate(_config(parallelism), str(tmp_path))
    finally:
        jax.monitoring.unregister_event_duration_listener(on_event)
    end = PRETRAIN_STEPS + GAN_STEPS
    assert states.step == end
    # A phase's first step compiles, right after the previous phase's last one (or at the start).
    allowed = {0, 1, PRETRAIN_STEPS, PRETRAIN_STEPS + 1, end}
    recompiled = sorted(step for step in compiled_after if step not in allowed)
    assert not recompiled, f"compilations after steps {recompiled} ({parallelism})"
    # The count is informative, not a guess: the first steps did compile.
    assert compiled_after.count(0) >= 1 and compiled_after.count(PRETRAIN_STEPS) >= 1


def _conv_dtypes(fn, *args) -> set[jnp.dtype]:
    """Operand dtypes of every convolution in `fn`'s jaxpr, nested calls included."""
    dtypes = set()

    def visit(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                dtypes.update(v.aval.dtype for v in eqn.invars)
            for param in eqn.params.values():
                for value in param if isinstance(param, tuple | list) else (param,):
                    inner = getattr(value, "jaxpr", value)  # ClosedJaxpr -> Jaxpr
                    if hasattr(inner, "eqns"):
                        visit(inner)

    visit(jax.make_jaxpr(fn)(*args).jaxpr)
    return dtypes


def _float_dtypes(tree) -> set[jnp.dtype]:
    leaves = jax.tree.leaves(tree)
    dtypes = {jnp.asarray(x).dtype for x in leaves}
    return {d for d in dtypes if jnp.issubdtype(d, jnp.floating)}


@pytest.fixture(scope="module")
def bf16_setup():
    config = _config("none", dtype="bfloat16", crop_size=32, batch_size=4)
    config.gan.content_loss = "vgg22"
    rng = jax.random.key(0)
    g_state = train_state.create_generator_state(config, rng, "gan")
    d_state = train_state.create_discriminator_state(config, rng)
    vgg_params = vgg.random_vgg19_params(rng, "phi_2_2")
    data = np.random.default_rng(0)
    batch = {
        "lr": jnp.asarray(data.random((4, 16, 16, 3)), jnp.float32),
        "hr": jnp.asarray(data.random((4, 32, 32, 3)) * 2 - 1, jnp.float32),
    }
    return config, g_state, d_state, vgg_params, batch


def test_bfloat16_steps_convolve_in_bfloat16_and_keep_float32_state(bf16_setup):
    config, g_state, d_state, vgg_params, batch = bf16_setup
    assert _float_dtypes((g_state, d_state)) == {jnp.dtype(jnp.float32)}
    key = jax.random.key_data(jax.random.key(1))
    # The models convolve in bf16; the VGG19 of the content loss always runs in float32.
    for content_loss, expected in (("mse", {jnp.bfloat16}), ("vgg22", {jnp.bfloat16, jnp.float32})):
        gan_step = functools.partial(train.gan_step, content_loss=content_loss,
                                     adversarial_weight=1e-3)
        pretrain_step = functools.partial(train.pretrain_step, content_loss=content_loss)
        expected = {jnp.dtype(d) for d in expected}
        args = (g_state, d_state, batch, key, vgg_params)
        assert _conv_dtypes(gan_step, *args) == expected, content_loss
        assert _conv_dtypes(pretrain_step, g_state, batch, key, vgg_params) == expected

    par = parallel.Parallel.create(config.parallelism, config.batch_size)
    step = par.compile(
        train.gan_step, donate_states=2, content_loss="vgg22", adversarial_weight=1e-3
    )
    new_g, new_d, metrics = step(
        par.put_state(g_state), par.put_state(d_state), par.put_batch(batch),
        par.put_state(key), par.put_state(vgg_params),
    )
    # Parameters, BN statistics and Adam moments of both networks: float32 after a bf16 update.
    assert _float_dtypes((new_g, new_d)) == {jnp.dtype(jnp.float32)}
    assert _float_dtypes(new_g.opt_state) == {jnp.dtype(jnp.float32)}
    assert all(v.dtype == jnp.float32 and np.isfinite(v) for v in metrics.values())
    # The update did happen (and BN statistics moved) despite bf16 activations.
    moved = jax.tree.map(
        lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
        (g_state.params, g_state.batch_stats, d_state.params),
        (new_g.params, new_g.batch_stats, new_d.params),
    )
    assert all(jax.tree.leaves(moved))


def test_float32_config_convolves_in_float32(bf16_setup):
    config, g_state, _, vgg_params, batch = bf16_setup
    f32_config = _config("none", crop_size=32, batch_size=4)
    g32 = train_state.create_generator_state(f32_config, jax.random.key(0), "pretrain")
    step = functools.partial(train.pretrain_step, content_loss="vgg22")
    key = jax.random.key_data(jax.random.key(1))
    assert _conv_dtypes(step, g32, batch, key, vgg_params) == {jnp.dtype(jnp.float32)}
