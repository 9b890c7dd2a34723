"""Shared helpers: compose configs in-process and run the CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pgrun.config import register_configs
from pgrun.paths import conf_dir


def compose_config(*overrides: str):
    """The config ``pgrun <overrides>`` would run with."""
    register_configs()
    with initialize_config_dir(str(conf_dir()), version_base=None):
        return compose("config", overrides=list(overrides))


def run_cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "pgrun", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def gae_by_hand(rewards, values, next_values, terminated, dones, gamma, lam):
    """GAE(lambda) written out step by step, the reference the update's advantages are checked
    against: delta_t = r_t + gamma V(s'_t) [not terminated] - V(s_t); A_t = delta_t + gamma lambda A_{t+1} [not done]."""
    import numpy as np

    adv = np.zeros_like(rewards)
    running = np.zeros(rewards.shape[1])
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * (1 - terminated[t]) * next_values[t] - values[t]
        running = delta + gamma * lam * (1 - dones[t]) * running
        adv[t] = running
    return adv


@pytest.fixture
def compose_cfg():
    return compose_config


@pytest.fixture
def cli():
    return run_cli
