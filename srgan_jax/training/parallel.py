"""Runs the pure steps of `srgan_jax.training.steps` data-parallel, as `config.parallelism` says.

* 'pmap' (default, the design card's choice): `jax.pmap` over this host's devices. States are
  replicated with a leading device axis, batches are `[local_devices, per_device, ...]`, and the
  models average BatchNorm statistics over the pmap axis (`bn_axis_name`), the steps their
  gradients and metrics, so one update equals an update on the whole global batch.
* 'jit': `jax.jit` over a `Mesh` of all devices with `NamedSharding`: global batches sharded on
  the 'data' axis, states replicated. The batch is one global array, so BatchNorm statistics are
  already global and the models get no axis name; XLA inserts the collectives.
* 'none': the same jit path on a one-device mesh (this host's first device).

In every mode the compiled step donates the state buffers, takes arrays placed by `put_state` /
`put_batch`, and returns metrics as replicated scalars. Multi-host: call
`maybe_initialize_distributed(config)` first; each host feeds `local_batch_size` examples of every
global batch (its share, in the layout above) and gets full, unreplicated states from `get_state`.

`shard_map` is deliberately not used: there, `grad` of replicated (unmapped) parameters already
sums the per-device gradients, and the usual `pmean` on top would count them `devices` times.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Literal

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

PMAP_AXIS = "batch"  # the pmap axis, also the models' BatchNorm axis name
DATA_AXIS = "data"  # the mesh axis the 'jit' mode shards batches over
PARALLELISMS = ("pmap", "jit", "none")


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> None:
    """Starts multi-host JAX (`jax.distributed.initialize`) if `config.distributed` is set.

    Must run before anything touches the devices. `config.coordinator_address`, `num_processes`
    and `process_id` default to what JAX detects on Cloud TPU, SLURM, Open MPI and Kubernetes.
    CPU processes exchange their collectives through gloo (JAX's CPU default has none across
    processes), which is how a multi-host run is tested on one machine.
    """
    if config.get("distributed", False):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=config.get("coordinator_address"),
            num_processes=config.get("num_processes"),
            process_id=config.get("process_id"),
        )
        logging.info("JAX distributed: process %d of %d", jax.process_index(), jax.process_count())


@dataclasses.dataclass(frozen=True)
class Parallel:
    """One data-parallel mode: where states and batches live and how steps are compiled.

    Attributes:
      mode: 'pmap', 'jit' or 'none' (see the module docstring).
      mesh: pmap: this host's devices on `PMAP_AXIS`; jit: all devices on `DATA_AXIS`; none:
        one device.
      batch_size: the global batch size (all devices and hosts).
    """

    mode: Literal["pmap", "jit", "none"]
    mesh: Mesh
    batch_size: int

    @classmethod
    def create(cls, mode: str, batch_size: int) -> Parallel:
        """The `mode` (`config.parallelism`) for global batches of `batch_size`, which must
        divide over the devices."""
        if mode not in PARALLELISMS:
            raise ValueError(f"config.parallelism must be one of {PARALLELISMS}, got {mode!r}")
        if mode == "pmap":
            mesh = Mesh(np.array(jax.local_devices()), (PMAP_AXIS,))
        elif mode == "jit":
            mesh = Mesh(np.array(jax.devices()), (DATA_AXIS,))
        else:
            if jax.process_count() > 1:
                raise ValueError("config.parallelism='none' is one device; it cannot be multi-host")
            mesh = Mesh(np.array(jax.local_devices()[:1]), (DATA_AXIS,))
        devices = jax.device_count() if mode != "none" else 1
        if batch_size < 1 or batch_size % devices:
            raise ValueError(
                f"config.batch_size must be a positive multiple of the number of devices "
                f"({devices}) for config.parallelism={mode!r}, got {batch_size}"
            )
        return cls(mode=mode, mesh=mesh, batch_size=batch_size)

    @property
    def bn_axis_name(self) -> str | None:
        """The BatchNorm axis name the models must be built with for this mode."""
        return PMAP_AXIS if self.mode == "pmap" else None

    @property
    def layout(self) -> Literal["pmap", "global"]:
        """`put_batch`'s layout: 'pmap' [local_devices, per_device, ...], 'global' [batch, ...]."""
        return "pmap" if self.mode == "pmap" else "global"

    @property
    def num_local_devices(self) -> int:
        """This host's devices in the mesh: the leading batch axis of the 'pmap' layout."""
        return len(self.mesh.local_devices)

    @property
    def local_batch_size(self) -> int:
        """How many examples of each global batch this host feeds."""
        return self.batch_size // (jax.process_count() if self.mode != "none" else 1)

    def put_state(self, tree: Any) -> Any:
        """Host or device arrays (states, VGG params, keys) -> replicated device arrays."""
        if self.mode == "pmap":
            sharding = NamedSharding(self.mesh, P(PMAP_AXIS))
            n = self.num_local_devices
            return jax.tree.map(
                lambda x: jax.device_put(np.broadcast_to(x, (n, *np.shape(x))), sharding), tree
            )
        return jax.device_put(jax.tree.map(np.asarray, tree), NamedSharding(self.mesh, P()))

    def get_state(self, tree: Any) -> Any:
        """Replicated device arrays -> one host (numpy) copy, e.g. for a checkpoint."""

        def unreplicate(x: jax.Array) -> np.ndarray:
            local = np.asarray(x.addressable_data(0))
            return local[0, ...] if self.mode == "pmap" else local

        return jax.tree.map(unreplicate, tree)

    def stack(self, batches: list[Any]) -> Any:
        """K host batches (in `layout`) as one block for `steps.multi_step`: the step axis goes
        after the device axis for 'pmap' ([devices, K, per_device, ...]), first for 'global'."""
        axis = 1 if self.mode == "pmap" else 0
        return jax.tree.map(lambda *xs: np.stack(xs, axis=axis), *batches)

    def put_batch(self, batch: Any) -> Any:
        """This host's share of a global batch or block (numpy, in `layout`) -> device arrays.

        A block from `stack` is recognised by the extra axis of its 'hr' images and sharded along
        its batch axis, as are the per-example leaves beside them (e.g. 'transform').
        """
        per_device = self.local_batch_size // self.num_local_devices
        image_ndim = 5 if self.mode == "pmap" else 4  # [devices,] batch, H, W, C
        stacked = np.ndim(batch["hr"]) == image_ndim + 1
        if self.mode == "pmap":
            sharding = NamedSharding(self.mesh, P(PMAP_AXIS))
            place = functools.partial(_put_pmap_batch, sharding=sharding, stacked=stacked,
                                      devices=self.num_local_devices, per_device=per_device)
            return jax.tree.map(place, batch)
        sharding = NamedSharding(self.mesh, P(None, DATA_AXIS) if stacked else P(DATA_AXIS))
        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)

    def compile(
        self, step_fn: Callable[..., Any], *, donate_states: int, **static: Any
    ) -> Callable[..., Any]:
        """`step_fn(*args, axis_name=..., **static)` compiled for this mode.

        The first `donate_states` positional arguments are train states that the step returns
        updated, in order, followed by its metrics dict; their buffers are donated (do not use
        the inputs afterwards). With `donate_states=0` the step returns only metrics (evaluation).
        Every array argument must be placed by `put_state` (states, params, keys) or `put_batch`.
        The metrics come back as replicated scalars.
        """
        donate = tuple(range(donate_states))
        if self.mode == "pmap":
            step = functools.partial(step_fn, axis_name=PMAP_AXIS, **static)
            out_axes = (*(0,) * donate_states, None) if donate_states else None
            return jax.pmap(step, axis_name=PMAP_AXIS, donate_argnums=donate, out_axes=out_axes)
        step = functools.partial(step_fn, axis_name=None, **static)
        return jax.jit(step, donate_argnums=donate, out_shardings=NamedSharding(self.mesh, P()))


def _put_pmap_batch(x: Any, *, sharding: NamedSharding, stacked: bool, devices: int,
                    per_device: int) -> jax.Array:
    x = np.asarray(x)  # [devices, (K,) per_device, ...]
    if x.shape[0] != devices or x.shape[1 + stacked] != per_device:
        raise ValueError(
            f"pmap batches must be shaped [local_devices, per_device, ...] = [{devices}, "
            f"{per_device}, ...] (config.batch_size / hosts / devices), or [{devices}, K, "
            f"{per_device}, ...] for a block of K steps; got {x.shape}"
        )
    return jax.device_put(x, sharding)
