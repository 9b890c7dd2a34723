"""Claims the README makes about configuration and the command line, checked as a user meets them:
conf/tuned/ entries applied under the command line, the Slurm launcher's defaults, ``pgrun --cfg job``,
and the compilation cache written by one process and read by the next."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import compose_config, run_cli
from pgrun.config import register_configs
from pgrun.paths import conf_dir

CONF = Path(__file__).resolve().parents[1] / "conf"


def tuned_values(name: str) -> dict:
    """A conf/tuned/ file's settings, its own defaults (shared MuJoCo files) merged in first, flattened to
    dotted keys, read with plain YAML."""
    text = yaml.safe_load((CONF / "tuned" / f"{name}.yaml").read_text()) or {}
    values = {}
    for included in text.pop("defaults", []):
        values.update(tuned_values(included))
    for key, value in text.items():
        if isinstance(value, dict):
            values.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            values[key] = value
    return values


@pytest.mark.parametrize("algo, env", [("ppo", "Pendulum-v1"), ("a2c", "Pendulum-v1"), ("ppo", "Hopper-v5"),
                                       ("trpo", "Hopper-v5")])
def test_a_tuned_file_adjusts_its_algorithm_on_its_environment_and_overrides_still_win(algo, env):
    """Every value of conf/tuned/<algo>_<env>.yaml (with the file it includes) is in the composed
    config; at least one of them differs from the algorithm's own default, so the file changed
    something; the same algorithm elsewhere keeps its default; and a command-line value beats it."""
    tuned = tuned_values(f"{algo}_{env}")
    assert tuned, "an empty tuned file"
    cfg = compose_config(f"algo={algo}", f"env={env}")
    plain = compose_config(f"algo={algo}", "env=CartPole-v1")
    for key, value in tuned.items():
        assert OmegaConf.select(cfg, key) == pytest.approx(value), key
    assert any(OmegaConf.select(plain, key) != pytest.approx(value) for key, value in tuned.items())
    key = next(k for k in tuned if k.startswith("algo.") and isinstance(tuned[k], float))
    overridden = compose_config(f"algo={algo}", f"env={env}", f"{key}={tuned[key] * 3}")
    assert OmegaConf.select(overridden, key) == pytest.approx(tuned[key] * 3)


def test_slurm_launcher_defaults_and_their_overrides():
    """hydra/launcher=slurm is submitit's Slurm launcher with pgrun's defaults (2 h, 4 CPUs, 8 GB), any of
    which an override changes; its CPUs are the XLA threads a job takes by default."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from pgrun.parallel import automatic_threads

    register_configs()
    with initialize_config_dir(str(conf_dir()), version_base=None):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
        changed = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=cpu",
                                               "hydra.launcher.cpus_per_task=16"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.timeout_min, launcher.cpus_per_task, launcher.mem_gb) == (120, 4, 8)
    assert launcher.partition is None and launcher.account is None
    assert (changed.hydra.launcher.partition, changed.hydra.launcher.cpus_per_task) == ("cpu", 16)
    assert changed.hydra.launcher.mem_gb == 8
    assert automatic_threads(OmegaConf.to_container(launcher), cores=64) == 4
    assert automatic_threads(OmegaConf.to_container(changed.hydra.launcher), cores=64) == 16


def test_cfg_job_prints_the_composed_config_and_runs_nothing(tmp_path):
    """`pgrun --cfg job` prints the config the run would use (tuned values and overrides included) as YAML
    and exits 0 without training or writing a run folder."""
    result = run_cli("--cfg", "job", "algo=ppo", "env=Pendulum-v1", "seed=7", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    want = OmegaConf.to_container(compose_config("algo=ppo", "env=Pendulum-v1", "seed=7"), resolve=False)
    assert printed["seed"] == 7 and printed["algo"]["name"] == "ppo" and printed["env"]["id"] == "Pendulum-v1"
    assert printed["algo"] == want["algo"] and printed["num_envs"] == want["num_envs"] == 8  # tuned: 8 envs
    assert not (tmp_path / "outputs").exists()


CACHE_PROBE = """
import sys
import jax.monitoring
hits = []
jax.monitoring.register_event_listener(
    lambda event, **kwargs: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None)
from pgrun.commands.train import main
sys.argv = ["pgrun", *sys.argv[1:]]
try:
    main()
finally:
    print("cache hits:", len(hits))
"""


def cached_run(cache: Path, run_dir: Path, cwd: Path) -> int:
    """A fresh process trains a tiny run with ``compile_cache_dir=cache``: the compilation cache hits it counted."""
    import subprocess
    import sys

    args = ["num_envs=2", "algo.num_steps=16", "total_timesteps=128", "log_interval=2", "eval.every=0",
            "quiet=true", f"compile_cache_dir={cache}", f"hydra.run.dir={run_dir}"]
    done = subprocess.run([sys.executable, "-c", CACHE_PROBE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1].split(":")[1])


def cache_entries(cache: Path) -> set[str]:
    """The files in the cache (JAX keeps each entry beside a file of its last access time)."""
    return {str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()}


def test_compile_cache_is_written_by_one_process_and_read_by_the_next(tmp_path):
    """compile_cache_dir: the first run finds nothing and writes its compiled programs there; a second
    process with the same shapes reads them (JAX counts cache hits) and writes nothing new."""
    cache = tmp_path / "xla"
    assert cached_run(cache, tmp_path / "first", tmp_path) == 0
    written = cache_entries(cache)
    assert written, "nothing was written to the compilation cache"
    assert cached_run(cache, tmp_path / "second", tmp_path) >= 2  # at least the initialisation and the block
    assert cache_entries(cache) == written
