"""What a learning benchmark records of a finished row, and how its tables print an estimate."""

from __future__ import annotations

import datetime


def row_result(env: str, algo: str, args: list[str], summary: dict) -> dict:
    """One finished row as a results line: the command and each seed's final and evaluation returns."""
    return {"env": env, "algo": algo, "command": "pgrun " + " ".join(args), "seeds": summary["seeds"],
            "returns": summary["returns_per_seed"], "eval_returns": summary.get("eval_returns_per_seed"),
            "env_steps": summary["env_steps"], "wall_seconds": summary["wall_seconds"],
            "date": datetime.date.today().isoformat()}


def interval(stats: dict, key: str) -> str:
    """``stats[key]`` with its 95% confidence interval, e.g. ``-84.8 [-86.8, -83.6]``."""
    ci = stats[f"{key}_ci"]
    return f"{stats[key]:.1f}" + ("" if ci is None else f" [{ci[0]:.1f}, {ci[1]:.1f}]")
