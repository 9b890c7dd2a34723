"""``summary.json``: how a run ended and each member's final return, and the closing lines.

A vectorised sweep's points each get a summary of their own (in their
sub-folder, so reports read points like runs) and the shared run lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pgrun.record import RunRecord
from pgrun.run_folder import RunFolder


@dataclass(frozen=True)
class Timing:
    """Wall time of the whole run (resumed sessions included) and the time spent compiling."""

    wall_seconds: float
    compile_seconds: float


def sample_std(values: list[float]) -> float | None:
    """The spread of final returns across seeds: the sample standard deviation
    (n - 1), since the seeds are a sample; None below two values, which have none."""
    return float(np.std(values, ddof=1)) if len(values) >= 2 else None


def _per_member(values: list[float], record: RunRecord, indices: list[int]) -> list[float | None]:
    return [None if math.isnan(values[i]) or not record.active(i) else float(values[i]) for i in indices]


def members_summary(setup: Any, record: RunRecord, indices: list[int], timing: Timing, status: str,
                    resumed: bool, **extra: Any) -> dict[str, Any]:
    """The summary of the members at ``indices`` (all of a run, or one sweep point's)."""
    iterations_done = setup.schedule.iterations_done
    env_steps = iterations_done(record.blocks_done) * setup.steps_per_iteration
    returns = _per_member(record.last_return, record, indices)
    # where each member's final return was measured: below env_steps when no episode ended in the last block
    measured_at = [None if r is None else iterations_done(record.return_block[i]) * setup.steps_per_iteration
                   for r, i in zip(returns, indices)]
    evaluated = _per_member(record.eval_return, record, indices)
    finite = [r for r in returns if r is not None]
    evaluated_finite = [r for r in evaluated if r is not None]
    seconds = timing.wall_seconds
    return {
        "status": status,
        "algo": setup.cfg.algo.name,
        "env": setup.cfg.env.id,
        "backend": setup.backend,
        # the devices the run trained on and each one's share of its members (padding copies included)
        "devices": setup.placement.describe() if getattr(setup, "placement", None) else None,
        "seeds": [setup.members[i].seed for i in indices],
        "env_steps": env_steps,
        "iterations": iterations_done(record.blocks_done),
        "wall_seconds": seconds,
        "compile_seconds": timing.compile_seconds,
        "sps": env_steps * len(indices) / seconds,
        "sps_after_compile": env_steps * len(indices) / max(seconds - timing.compile_seconds, 1e-9),
        "final_return_mean": float(np.mean(finite)) if finite else None,
        "final_return_std": sample_std(finite),
        "returns_per_seed": returns,
        "returns_measured_at_steps": measured_at,
        # the last evaluation (eval.*): mean return of its episodes, per member
        "eval_returns_per_seed": evaluated,
        "eval_return_mean": float(np.mean(evaluated_finite)) if evaluated_finite else None,
        "resumed": resumed,
        **extra,
    }


def write_summaries(folder: RunFolder, setup: Any, record: RunRecord, timing: Timing, status: str, resumed: bool,
                    member_label: Any, write: bool = True, **extra: Any) -> dict[str, Any]:
    """Write the run's summary.json (and each sweep point's) and return the run's; with ``write``
    false, only return it (a process of a multi-process job other than the first)."""
    members = setup.members
    summary = members_summary(setup, record, list(range(len(members))), timing, status, resumed, **extra)
    if setup.points != [{}]:
        summary["points"] = [_write_point(folder, setup, record, timing, status, resumed, point, write)
                             for point in setup.points]
        if record.failures:
            summary["failed_members"] = [{"member": member_label(members[i]), "error": why}
                                         for i, why in sorted(record.failures.items())]
    if write:
        folder.write_summary(summary)
    return summary


def _write_point(folder: RunFolder, setup: Any, record: RunRecord, timing: Timing, status: str, resumed: bool,
                 point: dict[str, float], write: bool = True) -> dict[str, Any]:
    """One sweep point's summary.json; its entry in the shared run's ``points`` list."""
    indices = [i for i, m in enumerate(setup.members) if m.point == point]
    failed = [record.failures[i] for i in indices if i in record.failures]
    point_status = "failed" if len(failed) == len(indices) and status == "completed" else status
    point_folder = folder.point(point)
    extra: dict[str, Any] = {"sweep_point": point, "shared_run": str(folder.path)}
    if failed:
        extra["error"] = "; ".join(failed)
    # wall time is the shared run's; sps is this point's share of its throughput
    summary = members_summary(setup, record, indices, timing, point_status, resumed, **extra)
    if write:
        point_folder.write_summary(summary)
    return {"point": point, "dir": point_folder.path.name, "status": point_status,
            "final_return_mean": summary["final_return_mean"], "final_return_std": summary["final_return_std"],
            "returns_per_seed": summary["returns_per_seed"], "eval_return_mean": summary["eval_return_mean"]}


def report_done(label: str, summary: dict[str, Any], compile_seconds: float, num_seeds: int) -> None:
    """The closing lines: final return (per sweep point in a vectorised sweep) and speed;
    a ± spread only where two or more seeds have a return."""

    def shown(mean: float | None, std: float | None) -> str:
        if mean is None:
            return "n/a (no episode finished)"
        return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"

    for point in summary.get("points", []):
        print(f"[{label}] {point['dir']}: final mean return {shown(point['final_return_mean'], point['final_return_std'])}"
              f" over {num_seeds} seed(s){'' if point['status'] == 'completed' else ' (' + point['status'] + ')'}",
              flush=True)
    print(f"[{label}] done: final mean return {shown(summary['final_return_mean'], summary['final_return_std'])} "
          f"over {len(summary['seeds'])} {'member' if 'points' in summary else 'seed'}(s), "
          f"{summary['env_steps']:,d} steps/seed in {summary['wall_seconds']:.1f}s "
          f"(compile {compile_seconds:.1f}s, {summary['sps']:,.0f} steps/s)", flush=True)
