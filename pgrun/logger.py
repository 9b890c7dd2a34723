"""What a user sees while a run trains: TensorBoard scalars and the progress line.

Turns the per-iteration metric arrays of one block (``[members, iterations]``)
into one TensorBoard point per member and block, against environment steps.
Uses tensorboardX, which writes event files without TensorFlow.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorboardX.summary
from tensorboardX import SummaryWriter

from pgrun.record import RunRecord
from pgrun.train import BlockDone



RETURN_TAG = "charts/episodic_return"


class TensorBoardLogger:
    """Per-member TensorBoard writers: one point per member and block, against environment
    steps. A trainer callback; members the record marks failed get no further points."""

    def __init__(self, dirs: list[Path], record: RunRecord, purge_step: int | None = None):
        self.writers = [SummaryWriter(logdir=str(d), flush_secs=10, purge_step=purge_step) for d in dirs]
        self.record = record

    def __call__(self, done: BlockDone) -> None:
        self.log_block(done.metrics, done.env_steps, done.seconds, done.steps_in_block)
        if done.evaluation is not None:
            self.log_evaluation(done.env_steps)

    def log_block(self, metrics: dict[str, np.ndarray], env_steps: int, seconds: float, steps_in_block: int) -> None:
        record = self.record
        for i, writer in enumerate(self.writers):
            if not record.active(i):
                continue
            count = float(np.sum(metrics["episode_count"][i]))
            writer.add_scalar("charts/episodes", count, env_steps)  # how many episodes the point above averages
            if not math.isnan(record.last_return[i]):
                writer.add_scalar(RETURN_TAG, record.last_return[i], env_steps)
                writer.add_scalar("charts/episodic_length", record.last_length[i], env_steps)
            writer.add_scalar("charts/sps", steps_in_block / max(seconds, 1e-9), env_steps)
            for tag, values in metrics.items():
                if "/" in tag and not tag.startswith("health/"):  # metrics are named by their tag
                    writer.add_scalar(tag, float(np.mean(values[i])), env_steps)

    def log_evaluation(self, env_steps: int) -> None:
        """The latest evaluation, each member's mean over its episodes, as ``eval/episodic_return`` and
        ``eval/episodic_length`` -- apart from ``charts/``, whose returns come from the training
        episodes of a policy that changes while they run."""
        for i, writer in enumerate(self.writers):
            if self.record.active(i):
                writer.add_scalar("eval/episodic_return", self.record.eval_return[i], env_steps)
                writer.add_scalar("eval/episodic_length", self.record.eval_length[i], env_steps)

    def write_hparams(self, hparams: list[dict[str, Any]], seeds: list[int]) -> None:
        """Record each member's hyperparameters with its final return for TensorBoard's
        HParams dashboard (in the member's own run, so the dashboard lists every run), under a
        readable trial name (:func:`trial_names`)."""
        record = self.record
        names = trial_names([writer.logdir for writer in self.writers], seeds)
        for i, (writer, values, seed, final) in enumerate(zip(self.writers, hparams, seeds, record.last_return,
                                                             strict=True)):
            if math.isnan(final) or not record.active(i):  # nothing to compare
                continue
            # the run's identity first, then the rest: the dashboard lists columns in this order
            values = {"algo.name": values.get("algo.name"), "env.id": values.get("env.id"), "seed": seed, **values}
            # The dashboard's metric is the last point of the run's own return curve, so no
            # extra chart is needed for it.
            metric = {RETURN_TAG: final}
            # TensorBoard takes the dashboard's columns from the first experiment summary
            # it reads, so every run declares the same columns -- every key any run can
            # have -- and runs with other keys (PPO beside TRPO) keep theirs.
            experiment, _, _ = tensorboardX.summary.hparams(hparam_columns(), metric)
            _, session_start, session_end = tensorboardX.summary.hparams(values, metric)
            for summary in (experiment, named_session(session_start, names[i]), session_end):
                writer.file_writer.add_summary(summary)

    def flush(self) -> None:
        for writer in self.writers:
            writer.flush()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def trial_names(member_dirs: list[str], seeds: list[int]) -> list[str]:
    """Each member's name in the HParams dashboard's Trial ID column: its run folder's name (a
    sweep's job folder names the values the sweep varies), its ``sweep.vmap`` point and seed,
    then where the run folder is, which keeps names of different runs apart:
    ``3-trpo-Pendulum-v1-algo.delta=0.02 seed 1 in /home/me/outputs/multirun/2026-11-22/12-00-00``.

    TensorBoard would otherwise show the session's run path, whose common start
    (``multirun/2026-11-22/...``) is all that fits in the column.
    """
    import os

    paths = [Path(d).resolve() for d in member_dirs]
    run = Path(os.path.commonpath(paths))  # the run folder: its members' event folders lie inside
    names = []
    for path, seed in zip(paths, seeds, strict=True):
        inside = [part for part in path.relative_to(run).parts if part != f"seed_{seed}"]
        names.append(" ".join([run.name, *inside, f"seed {seed}"]) + f" in {run.parent}")
    return names


def named_session(session_start: Any, name: str) -> Any:
    """tensorboardX's session-start summary with ``group_name`` set. TensorBoard's HParams
    dashboard shows a session group's name as the Trial ID, and a group without one is named
    after its session, the run path (``_add_session`` in tensorboard/plugins/hparams/
    list_session_groups.py); sessions that share a group name become one row, so names must
    differ between runs."""
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    plugin_data = session_start.value[0].metadata.plugin_data
    content = HParamsPluginData.FromString(plugin_data.content)
    content.session_start_info.group_name = name
    plugin_data.content = content.SerializeToString()
    return session_start


def hparam_columns() -> dict[str, bool | float | str]:
    """Every key :func:`flat_hparams` can give any run (all algorithms, the env,
    the seed), each with a placeholder of its type: the HParams dashboard's columns."""
    from dataclasses import fields

    from pgrun.algos import registry
    from pgrun.config import EnvConfig

    placeholder = {"float": 0.0, "int": 0, "bool": False}
    # the run's identity first (the dashboard keeps this order), then every other key
    columns: dict[str, bool | float | str] = {"algo.name": "", "env.id": "", "seed": 0}
    for prefix, schema in [("algo", spec.config) for spec in registry().values()] + [("env", EnvConfig)]:
        for f in fields(schema):
            columns[f"{prefix}.{f.name}"] = placeholder.get(getattr(f.type, "__name__", str(f.type)), "")
    columns.update(total_timesteps=0, num_envs=0)
    return columns


class Progress:
    """Progress output: a live line on a terminal, plain lines otherwise (log files, CI,
    multirun) every few seconds and at every tenth of the run, nothing when quiet."""

    def __init__(self, label: str, total_steps: int, quiet: bool, live: bool | None = None, members: int = 1):
        """``total_steps`` and the steps of :meth:`update` are per member; its ``sps`` is all members' together."""
        self.label, self.total, self.quiet, self.members = label, total_steps, quiet, members
        self.live = sys.stdout.isatty() if live is None else live
        self.every = 0.25 if self.live else 5.0
        self.last_print = -math.inf
        self.last_tenth = 0  # plain lines: the tenths of the run already reported

    def update(self, steps: int, mean_return: float, sps: float, force: bool = False) -> None:
        now = time.perf_counter()
        tenth = 10 * steps // max(self.total, 1)
        new_tenth = not self.live and tenth > self.last_tenth
        if self.quiet or (not force and not new_tenth and now - self.last_print < self.every):
            return
        self.last_print, self.last_tenth = now, max(self.last_tenth, tenth)
        eta = (self.total - steps) * self.members / sps if sps > 0 else math.inf
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
