"""Checkpoints: the training state of every seed, written atomically.

A checkpoint file holds ``{"state": ..., "meta": ...}`` serialised with
flax: ``state`` is what the training loop needs to continue (parameters,
optimiser state, observation statistics, episode counters, algorithm state
such as PPO's KL beta, RNG keys, and on the JAX path the environments
themselves); ``meta`` holds the run's record (:class:`~pgrun.record.RunRecord`):
progress counters, latest returns and failures, as msgpack's own numbers,
lists and strings. ``state["train"]`` is always
the learner's :class:`~pgrun.algos.common.TrainState`, stacked over seeds.
Files are written to a temporary name and renamed into place, so a kill
mid-write never leaves a corrupt ``latest`` checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np

DIRECTORY = "checkpoints"
LATEST = "latest.msgpack"
FINAL = "final.msgpack"


def save(directory: Path, name: str, state: Any, meta: dict[str, Any]) -> Path:
    """Write ``{state, meta}`` to ``directory/name`` atomically (temporary file, fsync, rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    tmp = path.with_suffix(".tmp")
    payload = {"state": jax.device_get(state), "meta": meta}  # meta: numbers, arrays and strings
    with open(tmp, "wb") as f:
        f.write(flax.serialization.to_bytes(payload))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read(path: Path) -> dict[str, Any]:
    """The raw payload: nested dicts of arrays (restore with :func:`restore_into`)."""
    return flax.serialization.msgpack_restore(path.read_bytes())


def restore_into(target: Any, raw: Any) -> Any:
    """``raw`` (from :func:`read`) in the structure of ``target``.

    Raises ``ValueError`` unless every array fits ``target``'s structure, shapes and dtypes
    (flax restores whatever it finds under a key, so a checkpoint of another layout would
    otherwise surface later as an obscure error inside the compiled program).
    """
    restored = flax.serialization.from_state_dict(target, raw)
    expected, found = jax.tree.structure(target), jax.tree.structure(restored)
    if expected != found:
        raise ValueError(f"{found.num_leaves} arrays where {expected.num_leaves} were expected, or a different nesting")
    for (path, want), got in zip(jax.tree_util.tree_leaves_with_path(target), jax.tree.leaves(restored)):
        if _layout(want) != _layout(got):
            raise ValueError(f"{jax.tree_util.keystr(path)} is {_layout(got)}, expected {_layout(want)}")
    return restored


def _layout(leaf: Any) -> str:
    """dtype and shape of an array, or of a ``jax.ShapeDtypeStruct`` standing for one."""
    dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
    return f"{np.dtype(dtype).name}{list(np.shape(leaf))}"
