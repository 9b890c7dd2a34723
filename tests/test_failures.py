"""A run that diverges stops with exit code 1, says where, and keeps its last good checkpoint."""

import json

import flax.serialization
import numpy as np

from conftest import run_cli


def test_non_finite_loss_stops_the_run(tmp_path):
    """From the command line: a learning rate of 1e30 diverges at once; exit 1 with one line naming the
    iteration, status failed, a finite kept checkpoint and no final one. (A failure after good blocks
    is the next test.)"""
    run_dir = tmp_path / "run"
    result = run_cli("algo.lr=1e30", "total_timesteps=20000", "log_interval=2", f"hydra.run.dir={run_dir}",
                     cwd=tmp_path, timeout=300)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "non-finite at iteration" in lines[0], result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "non-finite" in summary["error"]
    state = flax.serialization.msgpack_restore((run_dir / "checkpoints" / "latest.msgpack").read_bytes())
    leaves = [np.asarray(x) for x in _leaves(state["state"]["train"]["params"])]
    assert leaves and all(np.all(np.isfinite(x)) for x in leaves), "the kept checkpoint must be a good state"
    assert not (run_dir / "checkpoints" / "final.msgpack").exists()


def _leaves(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _leaves(value)
    else:
        yield tree


def test_a_failure_after_good_blocks_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """Blocks of 2 iterations, a checkpoint after every block, and parameters that turn NaN in
    iteration 7 (block 4): the run fails naming iteration 7, and latest.msgpack is the state after
    block 3 -- blocks_done 3 and exactly the parameters, statistics and keys of a run that stops
    there -- not the start-of-run checkpoint and not the diverged state."""
    import jax
    import jax.numpy as jnp
    import pytest

    from conftest import compose_config
    from pgrun import checkpoint, train
    from pgrun.errors import TrainingError
    from pgrun.run import run_training
    from pgrun.types import Algorithm

    poison_from = 6  # 0-based: the 7th iteration
    build_algorithm = train.algorithm_for

    def poisoned(cfg, policy, num_iterations):
        algorithm = build_algorithm(cfg, policy, num_iterations)

        def update(state, batch, key):
            new, metrics = algorithm.update(state, batch, key)
            bad = state.iteration >= poison_from
            return new.replace(params=jax.tree.map(lambda p: jnp.where(bad, jnp.nan, p), new.params)), metrics

        return Algorithm(algorithm.init_opt_state, update, algorithm.init_algo_state)

    monkeypatch.setattr(train, "algorithm_for", poisoned)
    tiny = ["num_envs=2", "algo.num_steps=16", "algo.num_minibatches=2", "algo.update_epochs=2", "log_interval=2",
            "checkpoint.every=2", "eval.every=0", "algo.anneal_lr=false", "env.normalize_obs=true", "quiet=true",
            f"compile_cache_dir={tmp_path / 'cache'}"]
    run_dir = tmp_path / "failing"
    with pytest.raises(TrainingError, match="non-finite at iteration 7"):
        run_training(compose_config(*tiny, "total_timesteps=320"), run_dir)  # 10 iterations
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "iteration 7" in summary["error"]
    kept = checkpoint.read(run_dir / checkpoint.DIRECTORY / checkpoint.LATEST)
    assert int(kept["meta"]["blocks_done"]) == 3
    assert not (run_dir / checkpoint.DIRECTORY / checkpoint.FINAL).exists()

    # The same program run for exactly 6 iterations (3 blocks) never reaches the poison.
    reference = tmp_path / "three_blocks"
    run_training(compose_config(*tiny, "total_timesteps=192"), reference)
    want = checkpoint.read(reference / checkpoint.DIRECTORY / checkpoint.FINAL)["state"]
    assert int(np.asarray(kept["state"]["train"]["iteration"])[0]) == 6
    got_leaves, want_leaves = jax.tree.leaves(kept["state"]), jax.tree.leaves(want)
    assert len(got_leaves) == len(want_leaves)
    for got, expected in zip(got_leaves, want_leaves):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
