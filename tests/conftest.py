"""Test set-up: 8 fake CPU devices, so pmap/sharding code runs as on an 8-chip host, and one
persistent XLA compilation cache.

XLA reads the flag once, when jax is first imported, so it must be set here, before any test module
imports jax. The cache (`.pytest_cache/jax_compilation_cache`, beside pytest's own) serves every
test and the training subprocesses tests start (they inherit the environment): a program compiled
once, by any of them, is loaded rather than compiled again, in this run and the next.
"""
import os
import pathlib

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
REPO = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(REPO / ".pytest_cache" / "jax_compilation_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import pytest  # noqa: E402

SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """`../shared/data` beside the checkout; tests that need it skip cleanly where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA
