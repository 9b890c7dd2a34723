"""Same config and seed on the same machine: identical results."""

import json

import jax
import numpy as np

from conftest import compose_config
from pgrun import checkpoint
from pgrun.run import run_training


def test_same_seed_gives_identical_summary_and_parameters(tmp_path):
    cfg = compose_config("total_timesteps=20480", "num_seeds=2", "seed=3", "quiet=true")
    first, second = tmp_path / "a", tmp_path / "b"
    run_training(cfg, first)
    run_training(cfg, second)
    a = json.loads((first / "summary.json").read_text())
    b = json.loads((second / "summary.json").read_text())
    assert a["returns_per_seed"] == b["returns_per_seed"] and a["seeds"] == b["seeds"] == [3, 4]
    leaves_a = jax.tree.leaves(checkpoint.read(first / "checkpoints" / "final.msgpack")["state"])
    leaves_b = jax.tree.leaves(checkpoint.read(second / "checkpoints" / "final.msgpack")["state"])
    assert all(np.array_equal(x, y) for x, y in zip(leaves_a, leaves_b, strict=True))


def test_different_seeds_differ(tmp_path):
    runs = []
    for seed in (0, 1):
        cfg = compose_config("total_timesteps=10240", f"seed={seed}", "quiet=true")
        run_training(cfg, tmp_path / str(seed))
        runs.append(checkpoint.read(tmp_path / str(seed) / "checkpoints" / "final.msgpack")["state"])
    kernels = [r["train"]["params"]["actor"]["params"]["MLP_0"]["Dense_0"]["kernel"] for r in runs]
    assert not np.array_equal(kernels[0], kernels[1])
