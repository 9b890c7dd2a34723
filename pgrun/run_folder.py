"""A run folder: the one place that knows what a run writes where.

    <run>/.hydra/config.yaml        the resolved config the run trained with
    <run>/.hydra/overrides.yaml     the command-line overrides that made it
    <run>/checkpoints/latest.msgpack, final.msgpack
    <run>/summary.json              how the run ended, final returns per member
    <run>/provenance.json           versions, git commit, command line (provenance-resume.json on resume)
    <run>/events.out.tfevents.*     TensorBoard, one seed; with several seeds in seed_<s>/ each
    <run>/<point>/...               each point of a vectorised sweep, laid out like a run of its own

The training driver writes through it, and pgrun-eval, pgrun-report and
``resume=`` read through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgrun.config import point_name

CONFIG = Path(".hydra") / "config.yaml"
OVERRIDES = Path(".hydra") / "overrides.yaml"
CHECKPOINTS = "checkpoints"
CHECKPOINT_NAMES = ("final", "latest")
SUMMARY = "summary.json"


@dataclass(frozen=True)
class RunFolder:
    """The files of one run (or of one point of a vectorised sweep)."""

    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def overrides_path(self) -> Path:
        return self.path / OVERRIDES

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    def checkpoint(self, name: str) -> Path:
        """``checkpoints/<name>.msgpack`` (``name`` is ``latest`` or ``final``)."""
        return self.checkpoints / f"{name}.msgpack"

    def provenance_path(self, resume: bool = False) -> Path:
        return self.path / ("provenance-resume.json" if resume else "provenance.json")

    def is_run(self) -> bool:
        """Whether a run wrote its config here (the mark of a run folder)."""
        return self.config_path.is_file()

    def has_checkpoint(self) -> bool:
        return self.checkpoints.exists()

    def load_config(self) -> Any:
        from omegaconf import OmegaConf

        return OmegaConf.load(self.config_path)

    def load_overrides(self) -> list[str]:
        from omegaconf import OmegaConf

        return [str(o) for o in OmegaConf.load(self.overrides_path)] if self.overrides_path.exists() else []

    def read_summary(self) -> dict[str, Any] | None:
        """The run's summary.json; None while there is none (running, or killed)."""
        return json.loads(self.summary_path.read_text()) if self.summary_path.exists() else None

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.summary_path, summary)

    def point(self, point: dict[str, float]) -> "RunFolder":
        """The sub-folder of one point of a vectorised sweep (this folder outside one)."""
        return RunFolder(self.path / point_name(point)) if point else self

    def seed_dirs(self, seeds: list[int]) -> list[Path]:
        """Where each seed's event files go: the folder itself for one seed."""
        return [self.path] if len(seeds) == 1 else [self.path / f"seed_{s}" for s in seeds]

    def member_dirs(self, points: list[dict[str, float]], seeds: list[int]) -> list[Path]:
        """Event-file folder of every member (point-major, then seed)."""
        return [d for point in points for d in self.point(point).seed_dirs(seeds)]


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temporary name and rename it into place: readers never see half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
