"""Which steps run together in one compiled call (`config.steps_per_call`), and their batches.

With `steps_per_call = K > 1` the loop runs K update steps per call (`steps.multi_step`), except
where the states are needed in between: a block never crosses a step at which the run validates,
writes samples or checkpoints, nor a phase's end; the steps before such a point that do not fill
a whole block run one by one. Only two programs are compiled per phase (K steps and one step), and
the blocks depend only on the step they start at, so a run resumed at any checkpoint splits the
remaining steps exactly as an uninterrupted run does.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from srgan_jax.training.device_prefetch import StatefulIterator


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """Block sizes of a run.

    Attributes:
      steps_per_call: K, the size of a full block.
      phase_ends: the global step at which each phase ends.
      cadences: every `n` such that the states are needed at the multiples of `n`
        (validation, samples, checkpoints).
    """

    steps_per_call: int
    phase_ends: Sequence[int]
    cadences: Sequence[int]

    def size(self, step: int) -> int:
        """How many steps the call starting at global step `step` runs: K, or 1."""
        if self.steps_per_call == 1:
            return 1
        stops = [(step // n + 1) * n for n in self.cadences]
        stops += [end for end in self.phase_ends if end > step]
        return self.steps_per_call if min(stops) - step >= self.steps_per_call else 1


class BlockIterator:
    """Host batches grouped into blocks: K batches stacked by `stack`, or one batch as it is.

    Its position is the host iterator's (the global step of the next batch), so checkpoints store
    and restore it as before; `plan.size(position)` decides the next block.
    """

    def __init__(self, host: StatefulIterator, plan: BlockPlan,
                 stack: Callable[[list[Any]], Any]):
        self._host, self._plan, self._stack = host, plan, stack

    def __iter__(self) -> BlockIterator:
        return self

    def __next__(self) -> Any:
        size = self._plan.size(self.get_state()["step"])
        if size == 1:
            return next(self._host)
        return self._stack([next(self._host) for _ in range(size)])

    def get_state(self) -> dict[str, Any]:
        return self._host.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self._host.set_state(state)

    def close(self) -> None:
        self._host.close()
