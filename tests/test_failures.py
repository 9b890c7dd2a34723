"""A run that diverges stops with exit code 1, says where, and keeps its last good checkpoint."""

import json

import flax.serialization
import numpy as np

from conftest import run_cli


def test_non_finite_loss_stops_the_run(tmp_path):
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
