"""What produced a run: package versions, the JAX backend and devices, the
project's git commit, and the command line. Written to ``provenance.json``."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax

from pgrun.parallel import effective_threads

PACKAGES = ("pgrun", "jax", "jaxlib", "flax", "optax", "gymnasium", "hydra-core", "omegaconf", "numpy",
            "tensorboardX", "mujoco", "envpool", "brax", "mujoco-mjx")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on (None where absent)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(source: Path | None = None) -> dict[str, Any] | None:
    """Commit and dirty flag of the checkout the package runs from, if it is one."""
    source = source or Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def collect(devices_used: dict[str, Any] | None = None, env_backend: str | None = None) -> dict[str, Any]:
    """Everything provenance.json records: versions, platform, git commit and the command line,
    ``devices_used`` (the devices the run trained on and each one's share of the members) and
    ``env_backend`` (what simulated the environment: jax, gymnasium, envpool, ...)."""
    return {
        "command": sys.argv,
        "env_backend": env_backend,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": package_versions(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "devices_used": devices_used,
        "xla_cpu_threads": effective_threads(),
        "git": git_commit(),
    }
