"""Training-state checkpoints, written atomically.

A checkpoint is the whole per-seed training state (parameters, optimiser
state, observation statistics, episode counters) serialised with flax. It is
written to a temporary file and renamed into place, so a kill mid-write never
leaves a corrupt ``latest`` checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import flax.serialization
import jax

LATEST = "latest.msgpack"
FINAL = "final.msgpack"


def save(directory: Path, name: str, state: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(flax.serialization.to_bytes(jax.device_get(state)))
    os.replace(tmp, path)
    return path


def load(path: Path, target: Any) -> Any:
    """Restore into the structure of ``target`` (a freshly initialised state)."""
    return flax.serialization.from_bytes(target, path.read_bytes())
