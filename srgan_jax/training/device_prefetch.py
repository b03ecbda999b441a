"""Keeps the next training batches already on the devices while the current step runs.

The host pipeline (`input_pipeline.TrainIterator`) prepares numpy batches ahead in threads; this
wrapper goes one stage further and places the next `size` of them on the accelerators with
`put` (`Parallel.put_batch`), so a step never waits for its host-to-device copy. The copies are
asynchronous: issuing them ahead lets them overlap the step that is running.

Resumption stays exact. Batches waiting on the devices have not been trained on yet, so
`get_state()` reports the host position just after the last batch handed out, not the host
iterator's own (further ahead) position.
"""
from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import Any, Protocol


class StatefulIterator(Protocol):
    """What `input_pipeline.TrainIterator` offers: batches, a position and `close()`."""

    def __next__(self) -> Any: ...
    def get_state(self) -> dict[str, Any]: ...
    def set_state(self, state: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class DevicePrefetcher(Iterator[Any]):
    """`put(batch)` of the host iterator's batches, `size` of them issued ahead (0: none)."""

    def __init__(self, host: StatefulIterator, put: Callable[[Any], Any], size: int):
        if size < 0:
            raise ValueError(f"config.data.device_prefetch must be >= 0, got {size}")
        self._host, self._put, self._size = host, put, size
        # (host position after the batch, the batch on the devices), oldest first.
        self._queue: collections.deque[tuple[dict[str, Any], Any]] = collections.deque()
        self._position = host.get_state()

    def _issue_one(self) -> None:
        batch = self._put(next(self._host))
        self._queue.append((self._host.get_state(), batch))

    def __next__(self) -> Any:
        if not self._queue:
            self._issue_one()
        self._position, batch = self._queue.popleft()
        while len(self._queue) < self._size:
            self._issue_one()
        return batch

    def get_state(self) -> dict[str, Any]:
        """The position of the next batch `next()` returns (what a checkpoint must store)."""
        return dict(self._position)

    def set_state(self, state: dict[str, Any]) -> None:
        """Continues from `state`, dropping the batches already placed on the devices."""
        self._queue.clear()
        self._host.set_state(state)
        self._position = self._host.get_state()

    def close(self) -> None:
        """Drops the placed batches and stops the host iterator at the consumed position."""
        self.set_state(self._position)
        self._host.close()
