"""DevicePrefetcher: batches in order, placed ahead, and a position that resumes exactly."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from srgan_jax.training.device_prefetch import DevicePrefetcher


class CountingIterator:
    """Host batches {'x': [step]} with TrainIterator's position API; records what it served."""

    def __init__(self) -> None:
        self.step = 0
        self.closed = False

    def __next__(self) -> dict[str, np.ndarray]:
        batch = {"x": np.array([self.step], np.int32)}
        self.step += 1
        return batch

    def get_state(self) -> dict[str, int]:
        return {"step": self.step}

    def set_state(self, state: dict[str, int]) -> None:
        self.step = state["step"]

    def close(self) -> None:
        self.closed = True


def served(batches: DevicePrefetcher, count: int) -> list[int]:
    return [int(next(batches)["x"][0]) for _ in range(count)]


@pytest.mark.parametrize("size", [0, 1, 3])
def test_batches_arrive_in_order_on_the_device(size):
    host = CountingIterator()
    batches = DevicePrefetcher(host, jax.device_put, size)
    first = next(batches)
    assert isinstance(first["x"], jax.Array)
    assert [int(first["x"][0]), *served(batches, 5)] == list(range(6))
    # `size` batches beyond the six handed out are already placed.
    assert host.step == 6 + size


@pytest.mark.parametrize("size", [0, 2])
def test_state_counts_only_batches_handed_out(size):
    host = CountingIterator()
    batches = DevicePrefetcher(host, jax.device_put, size)
    assert batches.get_state() == {"step": 0}
    served(batches, 4)
    assert batches.get_state() == {"step": 4}  # not the host's {"step": 4 + size}

    resumed = DevicePrefetcher(CountingIterator(), jax.device_put, size)
    resumed.set_state(batches.get_state())
    assert served(resumed, 3) == served(batches, 3) == [4, 5, 6]


def test_set_state_drops_placed_batches():
    batches = DevicePrefetcher(CountingIterator(), jax.device_put, 3)
    served(batches, 5)
    batches.set_state({"step": 1})
    assert served(batches, 2) == [1, 2]


def test_close_rewinds_the_host_to_the_consumed_position():
    host = CountingIterator()
    batches = DevicePrefetcher(host, jax.device_put, 2)
    served(batches, 3)
    batches.close()
    assert host.closed and host.get_state() == {"step": 3}
    assert served(batches, 1) == [3]  # restarts where training stopped


def test_negative_size_names_the_config_field():
    with pytest.raises(ValueError, match="config.data.device_prefetch"):
        DevicePrefetcher(CountingIterator(), jax.device_put, -1)
