"""Training metrics on their way from the devices to the logs: fetched late, checked, averaged.

The loop hands over each call's device metrics (one step's, or K steps' stacked) and never waits
for them; only when a log step comes are they fetched together, checked for NaN/Inf (before any
checkpoint of the state after them is written) and averaged over the steps since the last log.
"""
from __future__ import annotations

import jax
import numpy as np


class NonFiniteLossError(FloatingPointError):
    """A training metric became NaN or Inf; the state after that step is never checkpointed."""


class MetricsLog:
    """Per-step device metrics, fetched together only when they are logged."""

    def __init__(self) -> None:
        self._pending: list[tuple[int, int, dict[str, jax.Array]]] = []
        self._unlogged: list[tuple[int, dict[str, float]]] = []  # fetched, for a later log step

    def append(self, first_step: int, count: int, step_metrics: dict[str, jax.Array]) -> None:
        """Metrics of steps `first_step` .. `first_step + count - 1` (stacked to [count] if > 1)."""
        self._pending.append((first_step, count, step_metrics))

    def fetch(self) -> list[tuple[int, dict[str, float]]]:
        """(step, metrics) of every step since the last fetch; raises on the first non-finite."""
        fetched, self._pending = jax.device_get(self._pending), []
        per_step = []
        for first, count, block in fetched:
            for i in range(count):
                values = {k: float(np.reshape(v, -1)[i]) for k, v in block.items()}
                per_step.append((first + i, values))
        for step, values in per_step:
            for name, value in values.items():
                if not np.isfinite(value):
                    raise NonFiniteLossError(
                        f"{name} is {value} at step {step}: training stopped; the last checkpoint "
                        "(if any) is from before this step and is intact"
                    )
        return per_step

    def check(self) -> None:
        """Fetches what is pending now (raising on a NaN/Inf) and keeps it for the next log: the
        loop calls it before validating or saving the state after those steps."""
        self._unlogged += self.fetch()

    def means_at(self, log_steps: list[int]) -> list[tuple[int, dict[str, float]]]:
        """(log step, mean metrics of the steps since the previous log step) for each of the
        sorted `log_steps` that has any; later steps wait for the next call, so runs of K-step
        calls log at exactly the steps a one-step run does."""
        pending = self._unlogged + self.fetch()
        logged = []
        for end in log_steps:
            chunk = [values for step, values in pending if step <= end]
            pending = [(step, values) for step, values in pending if step > end]
            if chunk:
                logged.append((end, {name: float(np.mean([v[name] for v in chunk]))
                                     for name in chunk[0]}))
        self._unlogged = pending
        return logged
