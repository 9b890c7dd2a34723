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


@pytest.fixture
def compose_cfg():
    return compose_config


@pytest.fixture
def cli():
    return run_cli
