"""Checkpoints: the training state of every seed, written atomically.

A checkpoint file holds ``{"state": ..., "meta": ...}`` serialised with
flax: ``state`` is what the training loop needs to continue (parameters,
optimiser state, observation statistics, episode counters, algorithm state
such as PPO's KL beta, RNG keys, and on the JAX path the environments
themselves); ``meta`` holds progress counters. ``state["train"]`` is always
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
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    tmp = path.with_suffix(".tmp")
    payload = {"state": jax.device_get(state), "meta": {k: np.asarray(v) for k, v in meta.items()}}
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


def load_run(run_dir: Path, name: str = FINAL):
    """``(cfg, setup, train_state)`` of a finished or interrupted run, for evaluation.

    ``train_state`` is stacked over members (seeds, and sweep points). Raises ``FileNotFoundError`` when
    the run directory has no such checkpoint or no saved config.
    """
    from omegaconf import OmegaConf

    from pgrun.config import check_saved_config
    from pgrun.train import build, init_train_state, over_members

    config_path = run_dir / ".hydra" / "config.yaml"
    path = run_dir / DIRECTORY / name
    for required in (config_path, path):
        if not required.exists():
            raise FileNotFoundError(required)
    cfg = OmegaConf.load(config_path)
    check_saved_config(cfg, run_dir)
    setup = build(cfg)
    seeds = np.asarray(setup.seeds, np.uint32)
    init = over_members(lambda s, hp: init_train_state(setup, jax.random.PRNGKey(s), hp), len(seeds))
    template = jax.eval_shape(init, seeds, setup.member_hparams())
    return cfg, setup, restore_into(template, read(path)["state"]["train"])
