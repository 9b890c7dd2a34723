"""TensorBoard scalars, progress lines and ``summary.json``.

Turns the per-iteration metric arrays of one block (``[seeds, iterations]``)
into one TensorBoard point per seed and block, against environment steps.
Uses tensorboardX, which writes event files without TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Container
from pathlib import Path
from typing import Any

import numpy as np
import tensorboardX.summary
from tensorboardX import SummaryWriter



def seed_dirs(run_dir: Path, seeds: list[int]) -> list[Path]:
    """Where each seed's event files go: the run dir itself for one seed."""
    return [run_dir] if len(seeds) == 1 else [run_dir / f"seed_{s}" for s in seeds]


def point_dir(run_dir: Path, point: dict[str, float]) -> Path:
    """Where one point of a vectorised sweep keeps its runs: a sub-folder named
    by its values (the run dir itself outside a vectorised sweep)."""
    from pgrun.config import point_name

    return run_dir / point_name(point) if point else run_dir


def member_dirs(run_dir: Path, points: list[dict[str, float]], seeds: list[int]) -> list[Path]:
    """Event-file folder of every member (point-major, then seed): each point
    folder is laid out like a plain run, so tools that read runs read points."""
    return [d for point in points for d in seed_dirs(point_dir(run_dir, point), seeds)]


class BlockLogger:
    """Per-member TensorBoard writers plus the running record of episodic returns."""

    def __init__(self, dirs: list[Path], purge_step: int | None = None):
        self.writers = [SummaryWriter(logdir=str(d), flush_secs=10, purge_step=purge_step) for d in dirs]
        self.last_return = [math.nan] * len(dirs)
        self.last_length = [math.nan] * len(dirs)
        self.eval_return = [math.nan] * len(dirs)  # the latest evaluation's mean over its episodes
        self.eval_length = [math.nan] * len(dirs)
        self.stopped: Container[int] = ()  # members whose training failed: no further points

    def log_block(self, metrics: dict[str, np.ndarray], env_steps: int, seconds: float, steps_in_block: int) -> None:
        for i, writer in enumerate(self.writers):
            if i in self.stopped:
                continue
            count = float(np.sum(metrics["episode_count"][i]))
            writer.add_scalar("charts/episodes", count, env_steps)  # how many episodes the point above averages
            if count > 0:
                self.last_return[i] = float(np.sum(metrics["episode_return_sum"][i]) / count)
                self.last_length[i] = float(np.sum(metrics["episode_length_sum"][i]) / count)
            if not math.isnan(self.last_return[i]):
                writer.add_scalar("charts/episodic_return", self.last_return[i], env_steps)
                writer.add_scalar("charts/episodic_length", self.last_length[i], env_steps)
            writer.add_scalar("charts/sps", steps_in_block / max(seconds, 1e-9), env_steps)
            for tag, values in metrics.items():
                if "/" in tag and not tag.startswith("health/"):  # metrics are named by their tag
                    writer.add_scalar(tag, float(np.mean(values[i])), env_steps)

    def log_evaluation(self, returns: np.ndarray, lengths: np.ndarray, env_steps: int) -> None:
        """One evaluation (``[members, episodes]``): each member's mean over its episodes, as
        ``eval/episodic_return`` and ``eval/episodic_length`` -- apart from ``charts/``, whose returns
        come from the training episodes of a policy that changes while they run."""
        for i, writer in enumerate(self.writers):
            if i in self.stopped:
                continue
            self.eval_return[i] = float(np.mean(returns[i]))
            self.eval_length[i] = float(np.mean(lengths[i]))
            writer.add_scalar("eval/episodic_return", self.eval_return[i], env_steps)
            writer.add_scalar("eval/episodic_length", self.eval_length[i], env_steps)

    def mean_return(self) -> float:
        """Mean over members of the latest episodic return (NaN before any episode ended)."""
        finite = [r for i, r in enumerate(self.last_return) if not math.isnan(r) and i not in self.stopped]
        return float(np.mean(finite)) if finite else math.nan

    def write_hparams(self, hparams: list[dict[str, Any]], seeds: list[int]) -> None:
        """Record each member's hyperparameters with its final return for TensorBoard's
        HParams dashboard (in the member's own run, so the dashboard lists every run)."""
        for i, (writer, values, seed, final) in enumerate(zip(self.writers, hparams, seeds, self.last_return,
                                                             strict=True)):
            if math.isnan(final) or i in self.stopped:  # nothing to compare
                continue
            values = {**values, "seed": seed}
            metric = {"hparams/final_return": final}
            # TensorBoard takes the dashboard's columns from the first experiment summary
            # it reads, so every run declares the same columns -- every key any run can
            # have -- and runs with other keys (PPO beside TRPO) keep theirs.
            experiment, _, _ = tensorboardX.summary.hparams(hparam_columns(), metric)
            _, session_start, session_end = tensorboardX.summary.hparams(values, metric)
            for summary in (experiment, session_start, session_end):
                writer.file_writer.add_summary(summary)
            writer.add_scalar("hparams/final_return", final)

    def flush(self) -> None:
        for writer in self.writers:
            writer.flush()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def hparam_columns() -> dict[str, bool | float | str]:
    """Every key :func:`flat_hparams` can give any run (all algorithms, the env,
    the seed), each with a placeholder of its type: the HParams dashboard's columns."""
    from dataclasses import fields

    from pgrun.algos import registry
    from pgrun.config import EnvConfig

    placeholder = {"float": 0.0, "int": 0, "bool": False}
    columns: dict[str, bool | float | str] = {}
    for prefix, schema in [("algo", spec.config) for spec in registry().values()] + [("env", EnvConfig)]:
        for f in fields(schema):
            columns[f"{prefix}.{f.name}"] = placeholder.get(getattr(f.type, "__name__", str(f.type)), "")
    columns.update(total_timesteps=0, num_envs=0, seed=0)
    return columns


class Progress:
    """Progress output: a live line on a terminal, plain periodic lines otherwise
    (log files, CI, multirun), nothing when quiet."""

    def __init__(self, label: str, total_steps: int, quiet: bool, live: bool | None = None):
        self.label, self.total, self.quiet = label, total_steps, quiet
        self.live = sys.stdout.isatty() if live is None else live
        self.every = 0.25 if self.live else 5.0
        self.last_print = -math.inf

    def update(self, steps: int, mean_return: float, sps: float, force: bool = False) -> None:
        now = time.perf_counter()
        if self.quiet or (not force and now - self.last_print < self.every):
            return
        self.last_print = now
        eta = (self.total - steps) / sps if sps > 0 else math.inf
        ret = "n/a" if math.isnan(mean_return) else f"{mean_return:.1f}"
        line = (f"[{self.label}] {steps:>10,d}/{self.total:,d} steps ({100 * steps / self.total:5.1f}%)"
                f" | return {ret} | {sps:,.0f} steps/s | ETA {eta:.0f}s")
        if self.live:
            end = "\n" if steps >= self.total else ""
            print("\r\033[K" + line, end=end, flush=True)
        else:
            print(line, flush=True)


def flat_hparams(cfg: Any) -> dict[str, bool | int | float | str]:
    """The run's hyperparameters as flat ``key: scalar`` pairs (lists become strings)."""
    from omegaconf import OmegaConf

    flat: dict[str, bool | int | float | str] = {}

    def visit(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                visit(f"{prefix}{key}.", value)
        else:
            flat[prefix[:-1]] = node if isinstance(node, (bool, int, float, str)) else str(node)

    container = OmegaConf.to_container(cfg, resolve=True)
    for section in ("algo", "env"):
        visit(f"{section}.", container[section])
    for key in ("total_timesteps", "num_envs"):
        flat[key] = container[key]
    return flat


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
