"""Config composition, type checking and the exit-code contract for bad input."""

import pytest
from omegaconf import OmegaConf

from conftest import compose_config
from pgrun.config import ConfigError, validate


def test_default_config_composes_to_ppo_on_cartpole():
    cfg = compose_config()
    assert cfg.algo.name == "ppo" and cfg.env.id == "CartPole-v1"
    validate(cfg)


def test_algo_and_env_groups_compose_with_overrides():
    cfg = compose_config("algo=ppo", "env=Pendulum-v1", "algo.lr=1e-3", "num_envs=16", "seed=7")
    assert cfg.env.id == "Pendulum-v1" and cfg.algo.lr == pytest.approx(1e-3)
    assert cfg.num_envs == 16 and cfg.seed == 7
    assert isinstance(cfg.algo.lr, float)


def test_any_gymnasium_id_is_an_env_option():
    cfg = compose_config("env=FrozenLake-v1")
    assert cfg.env.id == "FrozenLake-v1" and cfg.env.backend == "auto"


def test_schema_rejects_unknown_key_and_wrong_type():
    with pytest.raises(Exception, match="foo"):
        compose_config("algo.foo=1")
    with pytest.raises(Exception, match="abc"):
        compose_config("algo.lr=abc")


@pytest.mark.parametrize("override,fragment", [
    ("algo.gamma=1.5", "algo.gamma"),
    ("algo.clip_eps=-0.1", "algo.clip_eps"),
    ("num_envs=0", "num_envs"),
    ("total_timesteps=-5", "total_timesteps"),
    ("algo.num_minibatches=3", "num_minibatches"),
])
def test_validate_rejects_out_of_range_values(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        validate(compose_config(override))


def test_resolved_config_round_trips_through_yaml():
    cfg = compose_config("env=Acrobot-v1", "seed=7", "total_timesteps=300000")
    again = OmegaConf.create(OmegaConf.to_yaml(cfg))
    assert again.seed == 7 and again.total_timesteps == 300000 and again.env.id == "Acrobot-v1"
