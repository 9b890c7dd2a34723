"""Names a user tells runs apart by. A sweep's job folders (TensorBoard's run names) keep only
what the sweep varies: ``pgrun -m algo=ppo,a2c seed=0`` gives ``0-ppo-CartPole-v1`` and
``1-a2c-CartPole-v1``. The HParams dashboard's Trial ID column names each member the same way,
not by the run path that every row starts alike."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import run_cli
from pgrun import sweeps
from pgrun.logger import TensorBoardLogger
from pgrun.paths import conf_dir
from pgrun.record import RunRecord

# Overrides every job shares, none of which may appear in a job's name.
SHARED = ("seed=0", "total_timesteps=256", "num_envs=2", "algo.num_steps=16", "eval.every=0", "quiet=true")


def sweep_names(tmp_path: Path, *args: str) -> list[str]:
    sweep_dir = tmp_path / "sweep"
    result = run_cli("-m", *args, *SHARED, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    return sorted(p.name for p in sweep_dir.iterdir() if (p / ".hydra").is_dir())


def trial_name(run_dir: Path) -> str:
    """The HParams session group name written to the event file in ``run_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(run_dir))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    return plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.group_name


def hydra_config(task: list[str], params: dict | None = None):
    """The parts of a multirun's config that :func:`sweeps.swept_keys` reads."""
    return OmegaConf.create({"hydra": {"overrides": {"task": task}, "sweeper": {"params": params}}})


# ---------------------------------------------------------------- small parts


def test_swept_keys_are_the_overrides_with_several_values():
    config = hydra_config(["algo=ppo,trpo", "seed=0", "total_timesteps=50000", "algo.lr=1e-3,3e-4",
                           "+algo.extra=1", "algo.hidden_sizes=[64,64]"])
    assert sweeps.swept_keys(config) == ["algo", "algo.lr"]


def test_optuna_search_space_is_swept_and_its_fixed_params_are_not():
    params = OmegaConf.load(conf_dir() / "hydra" / "sweeper" / "ppo_cartpole_optuna.yaml").params
    swept = sweeps.swept_keys(hydra_config(["num_seeds=1", "algo.lr=1e-3"], params))
    # algo.lr is fixed on the command line, which wins over the search space
    assert swept == ["algo.clip_eps", "algo.ent_coef", "algo.gae_lambda", "algo.num_minibatches",
                     "algo.update_epochs"]


def test_names_drop_the_overrides_every_job_shares(tmp_path):
    sweeps.write_swept_keys(tmp_path, ["algo", "algo.hidden_sizes", "algo.lr"])
    name = sweeps.job_dirname("2-ppo-CartPole-v1", "algo.hidden_sizes=[64,64],algo.lr=0.001,seed=0,"
                              "total_timesteps=50000", str(tmp_path))
    assert name == "2-ppo-CartPole-v1-algo.hidden_sizes=[64,64],algo.lr=0.001"
    assert sweeps.job_dirname("0-ppo-CartPole-v1", "seed=0,total_timesteps=50000", str(tmp_path)) == "0-ppo-CartPole-v1"
    assert sweeps.job_dirname("0-ppo-CartPole-v1", "", str(tmp_path)) == "0-ppo-CartPole-v1"


def test_optuna_names_keep_every_sampled_value_rounded_in_one_order(tmp_path):
    sweeps.write_swept_keys(tmp_path, ["algo.clip_eps", "algo.lr"])
    name = sweeps.job_dirname("0-ppo-CartPole-v1", "algo.clip_eps=0.2430378732744839,algo.lr=0.0006466422717414558,"
                              "num_seeds=3,total_timesteps=100000", str(tmp_path))
    assert name == "0-ppo-CartPole-v1-algo.clip_eps=0.243,algo.lr=0.0006466"


def test_without_the_swept_keys_a_name_keeps_every_override(tmp_path):
    """A sweep that recorded nothing (older pgrun, an unwritable directory): today's names."""
    overrides = "algo.lr=0.001,seed=0"
    assert sweeps.job_dirname("1-ppo-CartPole-v1", overrides, str(tmp_path)) == "1-ppo-CartPole-v1-algo.lr=0.001,seed=0"
    assert sweeps.job_dirname("1-ppo-CartPole-v1", overrides) == "1-ppo-CartPole-v1-algo.lr=0.001,seed=0"
    assert sweeps.job_dirname("1-ppo-CartPole-v1-algo.lr=0.001,seed=0") == "1-ppo-CartPole-v1-algo.lr=0.001,seed=0"


def write_hparams(member_dirs: list[Path], seeds: list[int]) -> None:
    logger = TensorBoardLogger(member_dirs, RunRecord(len(member_dirs), last_return=[10.0] * len(member_dirs)))
    logger.write_hparams([{"algo.name": "trpo", "env.id": "Pendulum-v1", "algo.delta": 0.02}] * len(member_dirs),
                         seeds)
    logger.close()


def test_trial_names_are_the_job_point_and_seed_then_where_the_run_is(tmp_path):
    job = tmp_path / "sweep" / "3-trpo-Pendulum-v1-algo.delta=0.02"
    members = [job / point / f"seed_{seed}" for point in ("algo.gamma=0.95", "algo.gamma=0.99") for seed in (1, 2)]
    write_hparams(members, [1, 2, 1, 2])
    assert [trial_name(d) for d in members] == [
        f"3-trpo-Pendulum-v1-algo.delta=0.02 {point} seed {seed} in {tmp_path / 'sweep'}"
        for point in ("algo.gamma=0.95", "algo.gamma=0.99") for seed in (1, 2)]


def test_a_run_of_one_seed_is_named_after_its_folder(tmp_path):
    run = tmp_path / "2026-11-22" / "12-00-00-trpo-Pendulum-v1"
    write_hparams([run], [7])
    assert trial_name(run) == f"12-00-00-trpo-Pendulum-v1 seed 7 in {tmp_path / '2026-11-22'}"


# ---------------------------------------------------------------- sweeps end to end


def test_a_sweep_names_its_jobs_by_what_varies(tmp_path):
    names = sweep_names(tmp_path, "algo=ppo,a2c")
    assert names == ["0-ppo-CartPole-v1", "1-a2c-CartPole-v1"]
    assert sweeps.read_swept_keys(tmp_path / "sweep") == {"algo"}
    sweep_dir = (tmp_path / "sweep").resolve()
    assert [trial_name(sweep_dir / name) for name in names] == [f"{name} seed 0 in {sweep_dir}" for name in names]


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
                    reason="hydra-joblib-launcher is not installed")
def test_joblib_workers_read_the_swept_keys_too(tmp_path):
    names = sweep_names(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "algo.lr=1e-3,3e-4")
    assert names == ["0-ppo-CartPole-v1-algo.lr=0.001", "1-ppo-CartPole-v1-algo.lr=0.0003"]
