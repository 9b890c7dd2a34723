"""Every registered algorithm is complete: a YAML that composes onto its schema, defaults
that validate, a short run that trains, checkpoints and loads, and its keys everywhere the
registry feeds (config schemas, sweeps, HParams columns). New algorithms are covered here
without a line added."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import jax
import numpy as np
import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_config
from pgrun import checkpoint
from pgrun.algos import algorithm_names, get_algorithm, registry
from pgrun.config import ConfigError, sweepable_keys, validate
from pgrun.logger import hparam_columns
from pgrun.paths import conf_dir
from pgrun.run import run_training
from pgrun.run_folder import RunFolder
from pgrun.trained import load_trained
from pgrun.types import AlgoConfig
from test_learning import logged

NAMES = algorithm_names()
README_TAGS = (Path(__file__).resolve().parents[1] / "README.md").read_text().split(
    "<!-- algorithm-tags:start -->", 1)[1].split("<!-- algorithm-tags:end -->", 1)[0]


def test_the_registry_finds_the_algorithms_and_refuses_unknown_names():
    assert {"reinforce", "a2c", "npg", "trpo", "ppo"} <= set(NAMES)
    with pytest.raises(ConfigError, match="unknown algorithm 'ppx': choose one of"):
        get_algorithm("ppx")


@pytest.mark.parametrize("name", NAMES)
def test_each_algorithm_describes_itself(name):
    spec = registry()[name]
    assert spec.name == name and issubclass(spec.config, AlgoConfig)
    assert spec.summary and "\n" not in spec.summary and len(spec.summary) < 110, spec.summary
    assert spec.paper, name
    schema_defaults = {f.name: f.default for f in fields(spec.config)}
    assert schema_defaults["name"] == name


@pytest.mark.parametrize("name", NAMES)
def test_each_yaml_composes_onto_its_schema(name):
    yaml = OmegaConf.load(conf_dir() / "algo" / f"{name}.yaml")
    assert f"_{name}_schema" in list(yaml.defaults), f"conf/algo/{name}.yaml must start from _{name}_schema"
    cfg = compose_config(f"algo={name}")
    assert cfg.algo.name == name
    assert set(cfg.algo) == {f.name for f in fields(registry()[name].config)}
    validate(cfg)
    with pytest.raises(Exception, match="algo.lr"):  # typed: the schema rejects a string where a float belongs
        compose_config(f"algo={name}", "algo.lr=fast")


@pytest.mark.parametrize("name", NAMES)
def test_each_algorithm_keys_reach_sweeps_and_hparams(name):
    float_keys = [f"algo.{f.name}" for f in fields(registry()[name].config) if f.type in (float, "float")]
    assert sweepable_keys(name) == float_keys and "algo.lr" in float_keys
    columns = hparam_columns()
    assert all(f"algo.{f.name}" in columns for f in fields(registry()[name].config))


@pytest.mark.parametrize("name", NAMES)
def test_each_algorithm_trains_checkpoints_and_loads(tmp_path, name):
    cfg = compose_config(f"algo={name}", "env=CartPole-v1", "num_envs=2", "algo.num_steps=64", "total_timesteps=512",
                         "log_interval=2", "num_seeds=2", "quiet=true", "eval.every=0", "algo.hidden_sizes=[16]")
    validate(cfg)
    RunFolder(tmp_path).config_path.parent.mkdir(parents=True)
    OmegaConf.save(cfg, RunFolder(tmp_path).config_path)  # what the command line's Hydra writes
    summary = run_training(cfg, tmp_path)
    assert summary["status"] == "completed" and summary["iterations"] == 4
    for seed_dir in ("seed_0", "seed_1"):
        losses = [tag for tag in ("losses/entropy", "charts/learning_rate") if logged(tmp_path / seed_dir, tag)]
        assert losses, f"{name} logged neither losses/entropy nor charts/learning_rate"
        assert all(math.isfinite(v) for _, v in logged(tmp_path / seed_dir, losses[0]))
    assert json.loads((tmp_path / "summary.json").read_text())["algo"] == name
    events = EventAccumulator(str(tmp_path / "seed_0"))
    events.Reload()
    own = sorted(tag for tag in events.Tags()["scalars"] if not tag.startswith(("charts/", "eval/")))
    documented = README_TAGS.split(f"| `{name}` | ", 1)[1].split(" |", 1)[0]
    assert documented == ", ".join(f"`{tag}`" for tag in own), (
        "README's tag table is stale: python scripts/write_algorithm_table.py --write")
    trained = load_trained(RunFolder(tmp_path))
    params, _ = trained.member(1)
    saved = checkpoint.read(RunFolder(tmp_path).checkpoint("final"))["state"]["train"]["params"]
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(saved), strict=True):
        np.testing.assert_array_equal(got, np.asarray(want)[1])
    actions = trained.policy.dist(params["actor"], np.zeros((3, 4), np.float32)).mode()
    assert actions.shape == (3,)


def test_the_readme_lists_every_registered_algorithm():
    """README's table is written by scripts/write_algorithm_table.py from the registry."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from write_algorithm_table import README, algorithm_table

    readme = README.read_text()
    block = readme.split("<!-- algorithm-table:start -->\n", 1)[1].split("\n<!-- algorithm-table:end -->", 1)[0]
    assert block == algorithm_table(), "README's algorithm table is stale: python scripts/write_algorithm_table.py --write"
    for name in NAMES:
        assert f"| `{name}` |" in block
