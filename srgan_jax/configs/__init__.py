"""Training configs: Python files whose `get_config()` returns an `ml_collections.ConfigDict`.

`default.py` is the paper's SRGAN-VGG54 run; each variant imports it and overrides a few fields.
Pass one with `--config srgan_jax/configs/NAME.py` and override fields with `--config.a.b=value`.
"""
