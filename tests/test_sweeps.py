"""Sweeps end to end: multirun, parallel and cluster launchers, Optuna, and failing jobs.

Each sweep trains a handful of tiny jobs (2,048 env steps) through the real
command line, so launchers, the job ledger and the exit codes are exercised
exactly as a user meets them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run_cli
from pgrun import parallel, sweeps

TINY = ("total_timesteps=2048", "num_envs=2", "algo.num_steps=64", "log_interval=2", "quiet=true")


def needs(module: str):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{module} is not installed")


def sweep(tmp_path: Path, *args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, Path]:
    sweep_dir = tmp_path / "sweep"
    result = run_cli("-m", *args, *TINY, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, timeout=timeout)
    return result, sweep_dir


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("-")[0]))


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("pgrun: error:")]


# ---------------------------------------------------------------- small parts


def test_job_dirnames_stay_readable_and_short():
    assert sweeps.job_dirname("3-trpo-Pendulum-v1-algo.delta=0.02,seed=1") == "3-trpo-Pendulum-v1-algo.delta=0.02,seed=1"
    assert (sweeps.job_dirname("0-ppo-CartPole-v1-algo.clip_eps=0.2430378732744839,algo.lr=0.0006466422717414558")
            == "0-ppo-CartPole-v1-algo.clip_eps=0.243,algo.lr=0.0006466")
    long = sweeps.job_dirname("7-ppo-CartPole-v1-" + "algo.hidden_sizes=[64,64]," * 20)
    assert len(long.encode()) == sweeps.DIRNAME_LIMIT and long.startswith("7-ppo-") and long.endswith("...")


def test_automatic_threads_share_the_cores_among_parallel_jobs():
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert parallel.automatic_threads({"_target_": joblib, "n_jobs": 2}, cores=8) == 4
    assert parallel.automatic_threads({"_target_": joblib, "n_jobs": 3}, cores=2) == 1
    assert parallel.automatic_threads({"_target_": joblib, "n_jobs": 1}, cores=8) == 8
    slurm = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert parallel.automatic_threads({"_target_": slurm, "cpus_per_task": 4}, cores=64) == 4
    assert parallel.automatic_threads({"_target_": slurm, "cpus_per_task": None}, cores=64) is None
    ray = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert parallel.automatic_threads({"_target_": ray, "ray": {"remote": {}}}, cores=8) == 1
    assert parallel.automatic_threads({"_target_": ray, "ray": {"remote": {"num_cpus": 2}}}, cores=8) == 2
    basic = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    assert parallel.automatic_threads({"_target_": basic}, cores=8) is None  # one job at a time: all cores
    assert parallel.threads_for_job(3, {"_target_": joblib, "n_jobs": 2}) == 3  # an explicit value wins


XLA_POOL_PROBE = textwrap.dedent("""
    import os, sys
    from pgrun import parallel
    assert parallel.limit_threads(int(sys.argv[1])) is None
    import jax.numpy as jnp
    (jnp.ones((256, 256)) @ jnp.ones((256, 256))).block_until_ready()
    names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    print(names.count("tf_XLAEigen"), parallel.limit_threads(int(sys.argv[1]) + 1) or "")
""")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through /proc")
@pytest.mark.parametrize("threads", [1, 3])
def test_the_thread_knob_sizes_xla_cpu_pool(threads):
    """XLA's CPU pool has exactly the threads asked for, even more than the cores; too late, a warning."""
    out = subprocess.run([sys.executable, "-c", XLA_POOL_PROBE, str(threads)], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split(maxsplit=1)
    assert int(out[0]) == threads
    assert "cannot take effect" in out[1]


def test_objective_is_nan_without_a_return():
    from pgrun.commands.train import JobResult, _objective

    assert _objective(JobResult("completed", 0, final_return_mean=42.0)) == 42.0
    assert math.isnan(_objective(JobResult("failed", 1, "training failed: ...")))


# ---------------------------------------------------------------- sweeps end to end


def test_multirun_gives_every_job_its_own_run_dir_and_hparams(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    result, sweep_dir = sweep(tmp_path, "algo=ppo,a2c", "seed=0,1")
    assert result.returncode == 0, result.stderr
    assert "4 of 4 jobs completed" in result.stdout
    dirs = job_dirs(sweep_dir)
    assert [d.name.split("-", 2)[:2] for d in dirs] == [["0", "ppo"], ["1", "ppo"], ["2", "a2c"], ["3", "a2c"]]
    assert all(d.name.endswith(f"seed={seed}") or f"seed={seed}," in d.name for d, seed in zip(dirs, [0, 1, 0, 1]))
    for run_dir, (algo, seed) in zip(dirs, [("ppo", 0), ("ppo", 1), ("a2c", 0), ("a2c", 1)]):
        done = summary(run_dir)
        assert (done["status"], done["algo"], done["seeds"]) == ("completed", algo, [seed])
        events = EventAccumulator(str(run_dir))
        events.Reload()
        start = plugin_data_pb2.HParamsPluginData.FromString(
            events.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
        assert start.hparams["algo.name"].string_value == algo and start.hparams["seed"].number_value == seed
        experiment = plugin_data_pb2.HParamsPluginData.FromString(
            events.PluginTagToContent("hparams")["_hparams_/experiment"]).experiment
        assert [m.name.tag for m in experiment.metric_infos] == ["charts/episodic_return"]
        assert [h.name for h in experiment.hparam_infos][:3] == ["algo.name", "env.id", "seed"]
        assert events.Scalars("charts/episodic_return")[-1].value == pytest.approx(done["final_return_mean"])
        assert not [tag for tag in events.Tags()["scalars"] if tag.startswith("hparams/")]  # no stray chart
    ledger = sweeps.read(sweep_dir)
    assert [(o.job, o.status) for o in ledger] == [(i, "completed") for i in range(4)]


@needs("hydra_plugins.hydra_joblib_launcher")
def test_joblib_runs_jobs_in_parallel_and_reports_the_bad_one(tmp_path):
    """One combination is bad input: it is reported on one line, the other job keeps its results."""
    result, sweep_dir = sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "algo.num_minibatches=3,4")
    assert result.returncode == 2, result.stderr
    errors = error_lines(result)
    assert len(errors) == 1 and "job 0 (algo.num_minibatches=3" in errors[0] and "pick a divisor" in errors[0]
    assert "1 of 2 jobs completed" in result.stderr
    bad, good = job_dirs(sweep_dir)
    assert summary(good)["status"] == "completed" and (good / "checkpoints" / "final.msgpack").exists()
    assert summary(bad)["status"] == "invalid"  # kept, so reports over the sweep list it
    ledger = sweeps.read(sweep_dir)
    assert [o.status for o in ledger] == ["invalid", "completed"]
    # Each worker's XLA had its share of the cores, set before JAX started in that process.
    assert all(o.xla_cpu_threads == max(1, parallel.available_cores() // 2) for o in ledger)


def test_a_diverging_job_does_not_hide_the_others(tmp_path):
    result, sweep_dir = sweep(tmp_path, "algo.lr=1e30,3e-4")
    assert result.returncode == 1, result.stderr
    errors = error_lines(result)
    assert len(errors) == 1 and errors[0].startswith("pgrun: error: job 0 (algo.lr=1e+30") and "non-finite" in errors[0]
    diverged, good = job_dirs(sweep_dir)
    assert summary(diverged)["status"] == "failed" and summary(good)["status"] == "completed"


def test_a_sweep_refused_before_it_starts_leaves_nothing(tmp_path):
    result, sweep_dir = sweep(tmp_path, "algo.lr=abc,1e-3")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["pgrun: error: algo.lr=abc: algo.lr takes a number, e.g. "
                                                  "algo.lr=3e-4"]
    assert not sweep_dir.exists()


@needs("hydra_plugins.hydra_submitit_launcher")
def test_submitit_local(tmp_path):
    result, sweep_dir = sweep(tmp_path, "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1", "seed=0,1")
    assert result.returncode == 0, result.stderr
    assert [summary(d)["seeds"] for d in job_dirs(sweep_dir)] == [[0], [1]]
    assert [o.xla_cpu_threads for o in sweeps.read(sweep_dir)] == [1, 1]


@needs("hydra_plugins.hydra_ray_launcher")
def test_ray_local(tmp_path):
    result, sweep_dir = sweep(tmp_path, "hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2", "seed=0,1")
    assert result.returncode == 0, result.stderr
    assert [summary(d)["status"] for d in job_dirs(sweep_dir)] == ["completed", "completed"]
    assert [o.xla_cpu_threads for o in sweeps.read(sweep_dir)] == [1, 1]  # one CPU per Ray task


@needs("hydra_plugins.hydra_optuna_sweeper")
def test_optuna_tunes_for_final_return(tmp_path):
    result, sweep_dir = sweep(tmp_path, "hydra/sweeper=ppo_cartpole_optuna", "hydra.sweeper.n_trials=2",
                              "hydra.sweeper.n_jobs=1", "num_seeds=1")
    assert result.returncode == 0, result.stderr
    from omegaconf import OmegaConf

    best = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    returns = [summary(d)["final_return_mean"] for d in job_dirs(sweep_dir)]
    assert len(returns) == 2 and best.best_value == pytest.approx(max(returns))
    assert set(best.best_params) >= {"algo.lr", "algo.clip_eps", "algo.update_epochs"}


@needs("hydra_plugins.hydra_optuna_sweeper")
def test_optuna_counts_a_failed_trial_as_failed(tmp_path):
    """A diverging trial returns NaN, which Optuna records as a failed trial; with none completed the study
    has no best trial, and pgrun says so after the job's own error."""
    result, sweep_dir = sweep(tmp_path, "hydra/sweeper=ppo_cartpole_optuna", "hydra.sweeper.n_trials=1",
                              "hydra.sweeper.n_jobs=1", "num_seeds=1", "algo.lr=1e30")
    assert result.returncode == 1, result.stderr
    errors = error_lines(result)
    assert "non-finite" in errors[0] and errors[-1].startswith("pgrun: error: the sweep stopped: ValueError")
    assert "Traceback" in (sweep_dir / "sweep_error.txt").read_text()
    assert [o.status for o in sweeps.read(sweep_dir)] == ["failed"]
