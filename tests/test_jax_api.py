"""The README's "Using the model from JAX" snippet, executed as written: the apply() contract.

`SNIPPET` is the README's code block; once the section is in README.md, read it from there
(`readme_snippet()`), so that the test runs exactly what users copy.
"""
import pathlib
import re

import numpy as np
from PIL import Image

import srgan_jax

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Using the model from JAX"

SNIPPET = '''\
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import srgan_jax

upscaler = srgan_jax.load_generator("srresnet_mse_x4")  # a name, a model file or a workdir
config, variables = upscaler.config, upscaler.variables  # variables: {'params', 'batch_stats'}
model = srgan_jax.Generator(num_blocks=config.num_blocks, channels=config.channels,
                            scale=config.scale)

@jax.jit
def super_resolve(variables, lr):                 # lr: float32 [N, H, W, 3] in [0, 1]
    return model.apply(variables, lr, train=False)  # [N, 4H, 4W, 3] in [-1, 1], not clipped

photos = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in ["a.png", "b.png"]])
lr = jnp.asarray(photos, jnp.float32) / 255.0                      # uint8 -> [0, 1]
sr = super_resolve(variables, lr)
sr_uint8 = np.asarray(jnp.round((jnp.clip(sr, -1.0, 1.0) + 1.0) * 127.5), np.uint8)  # -> uint8
'''


def readme_snippet() -> str | None:
    """The first ```python block of the README's section, or None while the section is missing."""
    text = README.read_text()
    if SECTION not in text:
        return None
    section = text.split(SECTION, 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.DOTALL).group(1)


def test_the_snippet_runs_and_agrees_with_upscale(tmp_path, monkeypatch):
    """Away from the border (where `upscale` mirrors the image, and a bare apply() sees zeros)
    the snippet's uint8 output is `srgan_jax.upscale`'s, to within one level of rounding."""
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (12, 12, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    photos = [smooth, smooth[::-1].copy()]
    for name, pixels in zip(["a.png", "b.png"], photos, strict=True):
        Image.fromarray(pixels).save(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_snippet() or SNIPPET, "README.md", "exec"), namespace)
    sr_uint8 = namespace["sr_uint8"]
    assert sr_uint8.shape == (2, 384, 384, 3) and sr_uint8.dtype == np.uint8
    margin = 4 * srgan_jax.load_generator().receptive_field  # 40 LR pixels of context
    for pixels, out in zip(photos, sr_uint8, strict=True):
        expected = srgan_jax.upscale(None, pixels)
        inner = (slice(margin, -margin), slice(margin, -margin))
        assert np.abs(out[inner].astype(int) - expected[inner]).max() <= 1
