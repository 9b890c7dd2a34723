"""``pgrun --help``: pgrun's own page (algorithms, environments, main keys, examples), not Hydra's;
and the console scripts point at the command modules."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import pytest
from conftest import compose_config, run_cli

from pgrun.algos import registry
from pgrun.commands.help import help_page

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.fixture(scope="module")
def page() -> str:
    return help_page([])


def test_page_names_every_algorithm_with_its_paper(page):
    for name, spec in registry().items():
        assert re.search(rf"^  {re.escape(name)} +\S", page, re.M), name
        assert not spec.paper or spec.paper.split()[0] in page, spec.paper


def test_page_is_not_hydras(page):
    assert "powered by Hydra" not in page and "_schema" not in page
    assert "--hydra-help" in page and "--cfg job" in page


def test_defaults_come_from_the_composed_config(page):
    cfg = compose_config()
    for key in ("seed", "num_seeds", "total_timesteps", "num_envs", "log_interval"):
        assert f"  {key}={cfg[key]} " in page, key
    assert f"env.normalize_obs={str(cfg.env.normalize_obs).lower()} " in page
    assert f"eval.every={cfg.eval.every} " in page and f"checkpoint.every={cfg.checkpoint.every} " in page
    assert "sweep.vmap=null " in page and f"algo={cfg.algo.name} " in page and f"env={cfg.env.id} " in page


def test_page_lists_ports_and_examples(page):
    assert "CartPole-v1" in page and "Pendulum-v1" in page and "pgrun[mujoco]" in page
    for example in ("pgrun -m ", "num_seeds=", "sweep.vmap=", "resume=RUN_DIR", "pgrun-eval RUN_DIR",
                    "pgrun-report DIR", "tensorboard --logdir outputs"):
        assert example in page, example


def test_overrides_beside_help_set_the_defaults_and_list_the_algorithms_keys():
    page = help_page(["-m", "algo=trpo", "env=Pendulum-v1", "seed=0,1", "hydra/launcher=joblib", "--help"])
    assert "algo=trpo " in page and "env=Pendulum-v1 " in page and "seed=0 " in page
    assert "Keys of algo=trpo" in page and "algo.delta=" in page


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_cli_help_exits_0_and_writes_nothing(tmp_path, flag):
    result = run_cli(flag, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pgrun: ") and "powered by Hydra" not in result.stdout
    for name in registry():
        assert re.search(rf"^  {re.escape(name)} ", result.stdout, re.M), name
    assert not (tmp_path / "outputs").exists()


def test_hydra_help_is_still_hydras(tmp_path):
    result = run_cli("--hydra-help", cwd=tmp_path, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("Hydra"), result.stderr


def test_console_scripts_point_at_the_command_modules():
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert set(scripts) == {"pgrun", "pgrun-eval", "pgrun-report"}
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert module.startswith("pgrun.commands.")
        assert callable(getattr(importlib.import_module(module), function))
