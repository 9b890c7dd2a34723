"""What a run has done so far, per member: the bookkeeping a checkpoint carries.

The trainer updates it after every block; the logger, the progress line and
the summary read it; checkpoints save it (as plain numbers and strings in the
checkpoint's metadata) so a resumed run continues the same record.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _floats(values: Any) -> list[float]:
    """Floats saved as a list, an array, or a flax state dict of a list (``{"0": .., "1": ..}``)."""
    if isinstance(values, dict):
        values = [values[key] for key in sorted(values, key=int)]
    return [float(v) for v in np.asarray(values, np.float64).reshape(-1)]


@dataclass
class RunRecord:
    """Progress counters and each member's latest returns (NaN until there is one)."""

    num_members: int
    blocks_done: int = 0
    earlier_seconds: float = 0.0  # wall time of the sessions before a resume
    last_return: list[float] = field(default_factory=list)  # mean return of the episodes of the last block with any
    last_length: list[float] = field(default_factory=list)
    # the block (1-based) whose episodes gave last_return; 0 before any episode ended. Below
    # blocks_done when no episode ended in the latest blocks: the return is older than the run.
    return_block: list[int] = field(default_factory=list)
    eval_return: list[float] = field(default_factory=list)  # the latest evaluation's mean over its episodes
    eval_length: list[float] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)  # member index -> why its training failed

    def __post_init__(self) -> None:
        for name in ("last_return", "last_length", "eval_return", "eval_length"):
            if not getattr(self, name):
                setattr(self, name, [math.nan] * self.num_members)
        if not self.return_block:
            self.return_block = [0] * self.num_members

    def active(self, member: int) -> bool:
        """Whether the member still trains (it has not failed)."""
        return member not in self.failures

    def absorb_block(self, metrics: dict[str, np.ndarray]) -> None:
        """Take each active member's episode returns from a block's metrics ``[members, iterations]``;
        a member with no episode ending in the block keeps its previous value."""
        for i in range(self.num_members):
            count = float(np.sum(metrics["episode_count"][i]))
            if count > 0 and self.active(i):
                self.last_return[i] = float(np.sum(metrics["episode_return_sum"][i]) / count)
                self.last_length[i] = float(np.sum(metrics["episode_length_sum"][i]) / count)
                self.return_block[i] = self.blocks_done

    def absorb_evaluation(self, returns: np.ndarray, lengths: np.ndarray) -> None:
        """One evaluation (``[members, episodes]``): each active member's mean over its episodes."""
        for i in range(self.num_members):
            if self.active(i):
                self.eval_return[i] = float(np.mean(returns[i]))
                self.eval_length[i] = float(np.mean(lengths[i]))

    def mean_return(self) -> float:
        """Mean over active members of the latest episodic return (NaN before any episode ended)."""
        finite = [r for i, r in enumerate(self.last_return) if not math.isnan(r) and self.active(i)]
        return float(np.mean(finite)) if finite else math.nan

    def to_meta(self, wall_seconds: float) -> dict[str, Any]:
        """The record as checkpoint metadata: numbers, float64 arrays and strings."""
        per_member = {name: np.asarray(getattr(self, name), np.float64)
                      for name in ("last_return", "last_length", "eval_return", "eval_length")}
        return {"blocks_done": self.blocks_done, "wall_seconds": wall_seconds, **per_member,
                "return_block": np.asarray(self.return_block, np.int64),
                "failures": {str(i): why for i, why in self.failures.items()}}

    @classmethod
    def from_meta(cls, meta: dict[str, Any], num_members: int) -> "RunRecord":
        """The record a checkpoint saved (also of versions that stored arrays and had no evaluation)."""
        record = cls(num_members, int(np.asarray(meta["blocks_done"])), float(np.asarray(meta["wall_seconds"])),
                     _floats(meta["last_return"]), _floats(meta["last_length"]))
        for name in ("eval_return", "eval_length"):
            if name in meta:
                setattr(record, name, _floats(meta[name]))
        # checkpoints from before return_block: a saved return counts as the latest block's
        saved = _floats(meta["return_block"]) if "return_block" in meta else [
            record.blocks_done if not math.isnan(r) else 0 for r in record.last_return]
        record.return_block = [int(b) for b in saved]
        failures = meta.get("failures", {})
        if not isinstance(failures, dict):  # older checkpoints: UTF-8 JSON in a uint8 array
            failures = json.loads(bytes(np.asarray(failures, np.uint8)))
        record.failures = {int(i): str(why) for i, why in failures.items()}
        return record
