"""The member axis split over several devices: four virtual CPU devices stand in for GPUs.

XLA's CPU backend makes ``--xla_force_host_platform_device_count`` devices only
when it starts, so everything that needs four devices runs in a fresh
process: one that trains the runs below (sharing a compilation cache, so each
program compiles once) and a few command-line runs of bad input.

The shared run is a vectorised sweep of two learning rates x three seeds: six
members, on four devices two each (two of them padding copies), or all six on
one. A member's numbers on four devices match those on one within
``RTOL``/``ATOL``: the per-device program is the same vmapped program over fewer
members, which XLA may vectorise differently, so equality is not promised to
the last bit (measured: identical returns, parameters within ~1e-6).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import compose_config
from pgrun import checkpoint
from pgrun.config import validate
from pgrun.errors import ConfigError
from pgrun.train import build

ROOT = Path(__file__).resolve().parents[1]
FOUR_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "PYTHONWARNINGS": "ignore"}
RTOL, ATOL = 1e-4, 1e-5
TINY = ["num_envs=2", "algo.num_steps=16", "algo.update_epochs=1", "algo.num_minibatches=1",
        "algo.hidden_sizes=[16]", "log_interval=2", "total_timesteps=256", "checkpoint.every=2", "eval.every=2",
        "eval.episodes=2"]
SWEEP = [*TINY, "num_seeds=3", "sweep.vmap={algo.lr: [0.001, 0.003]}"]

# Trains, in one process with four devices: the sweep on 4 devices and on 1 (each uninterrupted), and
# twice stopped by SIGTERM after two of its four blocks and resumed on the other device count.
TRAINER = textwrap.dedent("""
    import contextlib, io, json, os, signal, sys
    from pathlib import Path
    sys.path.insert(0, "tests")
    from conftest import compose_config
    from pgrun.errors import TrainingInterrupted
    from pgrun.run import enable_compile_cache, run_training
    from pgrun.train import JaxLoop, build

    out, overrides = Path(sys.argv[1]), json.loads(sys.argv[2])
    enable_compile_cache(str(out / "cache"))
    config = lambda devices, quiet="true": compose_config(*overrides, f"devices={devices}", f"quiet={quiet}",
                                                          f"compile_cache_dir={out / 'cache'}")
    first_lines = {}
    for devices in (4, 1):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            run_training(config(devices, "false"), out / f"whole{devices}")
        first_lines[devices] = printed.getvalue().splitlines()[0]

    run_block = JaxLoop.run_block
    def stop_after_two(loop, runner, iterations=None):
        runner, metrics = run_block(loop, runner, iterations)
        if int(runner.train.iteration[0]) == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return runner, metrics
    for first, then in ((4, 1), (1, 4)):
        JaxLoop.run_block = stop_after_two
        try:
            run_training(config(first), out / f"resumed{first}to{then}")
        except TrainingInterrupted:
            pass
        JaxLoop.run_block = run_block
        run_training(config(then), out / f"resumed{first}to{then}", resume=True)

    loop = JaxLoop(build(config(4)))
    loop.start()
    program = loop._compiled.as_text()
    collectives = [op for op in ("all-gather", "all-reduce", "collective-permute", "all-to-all") if op in program]
    print(json.dumps({"first_lines": first_lines, "collectives": collectives}))
""")


def four_devices(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=dict(os.environ, **FOUR_DEVICES),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("devices")
    done = four_devices("-c", TRAINER, str(out), json.dumps(SWEEP))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return out, json.loads(done.stdout.strip().splitlines()[-1])


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def final_state(run_dir: Path) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(checkpoint.read(run_dir / "checkpoints" / "final.msgpack")["state"])]


def assert_same_members(one: Path, other: Path) -> None:
    for a, b in zip(final_state(one), final_state(other), strict=True):
        assert a.shape == b.shape
        if np.issubdtype(a.dtype, np.floating):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
        else:
            np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(summary(one)["returns_per_seed"], summary(other)["returns_per_seed"], rtol=RTOL)


def test_sharded_sweep_trains_and_says_where(trained):
    out, report = trained
    four, one = summary(out / "whole4"), summary(out / "whole1")
    assert four["status"] == one["status"] == "completed"
    assert four["devices"] == {"platform": "cpu", "count": 4, "ids": [0, 1, 2, 3], "kinds": ["cpu"],
                               "members_per_device": 2, "padding_members": 2}
    assert one["devices"]["count"] == 1 and one["devices"]["members_per_device"] == 6
    assert "devices=4 members/device=2 (+2 padding)" in report["first_lines"]["4"]
    assert "devices=1 members/device=6" in report["first_lines"]["1"]
    provenance = json.loads((out / "whole4" / "provenance.json").read_text())
    assert provenance["devices_used"] == four["devices"]
    # every sweep point has its own summary, with its three seeds and none of the padding copies
    assert [len(p["returns_per_seed"]) for p in four["points"]] == [3, 3]
    assert len(four["returns_per_seed"]) == 6 and all(r is not None for r in four["returns_per_seed"])
    assert report["collectives"] == [], "the devices should never exchange data"


def test_four_devices_train_like_one(trained):
    out, _ = trained
    assert_same_members(out / "whole4", out / "whole1")


def test_checkpoints_hold_whole_arrays_of_the_real_members(trained):
    out, _ = trained
    params = checkpoint.read(out / "whole4" / "checkpoints" / "final.msgpack")["state"]["train"]["params"]
    assert {np.asarray(x).shape[0] for x in jax.tree.leaves(params)} == {6}


@pytest.mark.parametrize("run", ["resumed4to1", "resumed1to4"])
def test_resume_on_another_device_count(trained, run):
    out, _ = trained
    assert summary(out / run)["resumed"] is True
    assert_same_members(out / run, out / "whole4")


@pytest.mark.parametrize("overrides,expected", [
    (["devices=9"], "devices=9 but this machine has 4 cpu device(s): use devices=all or a count from 1 to 4"),
    (["env.backend=gymnasium", "devices=2"], "host environments train on one device"),
])
def test_impossible_device_counts_are_bad_input(tmp_path, overrides, expected):
    run_dir = tmp_path / "run"
    done = four_devices("-m", "pgrun", *TINY, *overrides, f"hydra.run.dir={run_dir}", "compile_cache_dir=")
    assert done.returncode == 2, done.stderr[-2000:]
    assert expected in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not run_dir.exists()


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_malformed_device_settings_are_bad_input(value):
    with pytest.raises(ConfigError, match=f"devices={value} is not valid: use devices=all"):
        validate(compose_config(*TINY, f"devices={value}"))


def test_one_device_and_host_environments_stay_unsharded():
    assert not build(compose_config(*TINY, "num_seeds=3")).placement.sharded  # this process has one device
    host = build(compose_config(*TINY, "env.backend=gymnasium", "devices=all", "num_seeds=2"))
    assert not host.placement.sharded and host.placement.per_device == 2
