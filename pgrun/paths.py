"""Where the packaged Hydra configuration lives.

``conf/`` at the repository root is installed as the ``pgrun.conf`` package, so
``pgrun`` finds its configs from any working directory and from a
non-editable install.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def conf_dir() -> Path:
    """The installed ``conf/`` directory (the ``pgrun.conf`` package)."""
    return Path(str(importlib.resources.files("pgrun.conf")))
