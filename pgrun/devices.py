"""Which local devices a run's members train on, and how the member axis is split over them.

A run's members (seeds x vectorised sweep points) never exchange data, so the
compiled programs split the leading member axis over a one-axis
:class:`jax.sharding.Mesh` of local devices: ``shard_map`` gives each device the
same vmapped program over its share of the members, and no device waits on another.

The top-level key ``devices`` is ``all`` (the default) or a positive count, as a
string (``devices=2`` and ``devices=all`` both parse). A run uses
``min(requested, members)`` devices, so a single member trains on one device,
on the unsharded program of a one-device machine. When the member count does not
divide by the device count, the member axis is padded up to the next multiple
with copies of the last member: they train beside the others and are never
logged, checkpointed, evaluated in the record or summarised.

Environments stepped on the host (the Gymnasium backend) train on one device:
``devices=all`` quietly means one there, an explicit count above one is refused.

In a multi-process job (:mod:`pgrun.distributed`) the mesh holds the devices of every
process -- ``devices`` then counts each process's own, all of them by default -- and
the members are padded to a multiple of that global count. Every process initialises
its devices' share from the same host arrays (:meth:`Placement.put`) and gathers every
member's results back (:meth:`Placement.fetch`); the blocks themselves still exchange
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import jax
import numpy as np

from pgrun.distributed import host_refusal
from pgrun.errors import ConfigError

ALL = "all"
MEMBER_AXIS = "members"


def requested_devices(setting: Any) -> int | None:
    """The device count ``devices=<setting>`` asks for; None for ``all``. ConfigError otherwise."""
    text = str(setting).strip().lower()
    if text == ALL:
        return None
    if text.lstrip("+").isdigit() and int(text) >= 1:
        return int(text)
    raise ConfigError(f"devices={setting} is not valid: use devices=all (every local device) or a positive count")


@dataclass(frozen=True)
class Placement:
    """The devices of a run and each one's share of the (padded) member axis."""

    devices: tuple[Any, ...]
    members: int  # the run's own members
    padded: int  # members including the padding copies: a multiple of len(devices)

    @classmethod
    def single(cls, members: int) -> Placement:
        """Every member on the default device, unsharded."""
        return cls((jax.devices()[0],), members, members)

    @property
    def sharded(self) -> bool:
        return len(self.devices) > 1

    @property
    def processes(self) -> int:
        """How many processes own the devices (above one in a multi-process job)."""
        return len({d.process_index for d in self.devices})

    @property
    def per_device(self) -> int:
        return self.padded // len(self.devices)

    @property
    def padding(self) -> int:
        return self.padded - self.members

    @cached_property
    def mesh(self) -> jax.sharding.Mesh:
        return jax.sharding.Mesh(np.asarray(self.devices), (MEMBER_AXIS,))

    @cached_property
    def sharding(self) -> jax.sharding.NamedSharding:
        """The leading (member) axis split over the devices, every other axis whole."""
        return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(MEMBER_AXIS))

    def spread(self, members_fn: Callable) -> Callable:
        """``members_fn`` (a program over one device's members) as a jitted program over all of them."""
        if not self.sharded:
            return members_fn
        spec = jax.sharding.PartitionSpec(MEMBER_AXIS)
        # check_vma off: the programs are written per member, unaware of the mesh (constants that
        # start a scan's carry would otherwise have to be marked as varying over it)
        if hasattr(jax, "shard_map"):
            return jax.shard_map(members_fn, mesh=self.mesh, in_specs=spec, out_specs=spec, check_vma=False)
        from jax.experimental.shard_map import shard_map  # JAX before 0.6

        return shard_map(members_fn, mesh=self.mesh, in_specs=spec, out_specs=spec, check_rep=False)

    def jit(self, members_fn: Callable, **options: Any) -> Callable:
        """``jax.jit`` of :meth:`spread`, its inputs and outputs split over the devices when sharded."""
        if self.sharded:
            options.update(in_shardings=self.sharding, out_shardings=self.sharding)
        return jax.jit(self.spread(members_fn), **options)

    def pad(self, tree: Any) -> Any:
        """Host arrays of the run's members with the padding copies of the last one appended."""
        if not self.padding:
            return tree
        return jax.tree.map(lambda x: np.concatenate([np.asarray(x)] + [np.asarray(x)[-1:]] * self.padding), tree)

    def unpad(self, tree: Any) -> Any:
        """The run's own members of a tree over the padded member axis."""
        if not self.padding:
            return tree
        return jax.tree.map(lambda x: x[: self.members], tree)

    def put(self, tree: Any) -> Any:
        """Host arrays over the padded member axis, split over the devices (as they are on one device).
        In a multi-process job every process holds the whole arrays and places its devices' share."""
        if not self.sharded:
            return tree
        if self.processes == 1:
            return jax.device_put(tree, self.sharding)

        def global_array(x: Any) -> jax.Array:
            x = np.asarray(x)
            return jax.make_array_from_callback(x.shape, self.sharding, lambda index: x[index])

        return jax.tree.map(global_array, tree)

    def fetch(self, tree: Any) -> Any:
        """Whole host arrays of a tree over the member axis, in every process: gathered from every
        process in a multi-process job (a collective: every process must call it)."""
        if self.processes == 1:
            return jax.device_get(tree)
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)

    def describe(self) -> dict[str, Any]:
        """What summary.json and provenance.json record (``processes`` only in a multi-process job)."""
        described = {"platform": self.devices[0].platform, "count": len(self.devices),
                     "ids": [d.id for d in self.devices], "kinds": sorted({d.device_kind for d in self.devices}),
                     "members_per_device": self.per_device, "padding_members": self.padding}
        return described | ({"processes": self.processes} if self.processes > 1 else {})

    def label(self) -> str:
        """The run's first line's account of its devices."""
        padding = f" (+{self.padding} padding)" if self.padding else ""
        platform, count = self.devices[0].platform, len(self.devices)
        processes = f" processes={self.processes}" if self.processes > 1 else ""
        return f"device={platform} devices={count}{processes} members/device={self.per_device}{padding}"


def place_members(setting: Any, members: int, in_jit: bool, env_label: str) -> Placement:
    """The placement for ``devices=<setting>`` and ``members`` members; ConfigError for a count this
    machine does not have, or above one for a host environment (``env_label`` names it). In a
    multi-process job, over every process's devices."""
    requested = requested_devices(setting)
    local = jax.local_devices()
    if requested is not None and requested > len(local):
        raise ConfigError(f"devices={requested} but this machine has {len(local)} {local[0].platform} device(s): "
                          f"use devices=all or a count from 1 to {len(local)}")
    if not in_jit:
        if jax.process_count() > 1:
            raise ConfigError(host_refusal(env_label, f"process {jax.process_index()} of {jax.process_count()}"))
        if requested is not None and requested > 1:
            raise ConfigError(f"devices={requested}: {env_label} steps on the host, and host environments train "
                              "on one device; use devices=1 (or all), or a JAX port with env.backend=jax")
        return Placement.single(members)
    if jax.process_count() > 1:
        return _over_processes(requested or len(local), members)
    count = min(requested or len(local), members)
    if count == 1:
        return Placement.single(members)
    return Placement(tuple(local[:count]), members, -(-members // count) * count)


def _over_processes(per_process: int, members: int) -> Placement:
    """``per_process`` devices of every process (fewer when there are not enough members to give
    each one some), in the same order in every process: by process, then by id."""
    processes = jax.process_count()
    per_process = min(per_process, -(-members // processes))
    ordered = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    devices = tuple(d for p in range(processes) for d in [d for d in ordered if d.process_index == p][:per_process])
    return Placement(devices, members, -(-members // len(devices)) * len(devices))
