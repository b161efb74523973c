"""What a search knows between rounds: every trial measured so far, read back from the trial files,
and the best of them within the constraints. The strategies (one module each) read a SearchState
and propose the next round's trials."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..contracts import Status
from .space import DIMENSIONS, parse_trial

# One measured point of a configuration (a trial's CSV and the side by side's rows alike).
POINT_COLUMNS = [
    "mode",
    "batch",
    "concurrency",
    "status",
    "throughput",
    "p99_us",
    "foreign_cpu",
    "server_cpu",
    "client_cpu",
]
TRIAL_COLUMNS = ["trial", *DIMENSIONS, *POINT_COLUMNS, "round"]


def read_trials(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Rows of trial CSVs (tuning.TRIAL_COLUMNS); throughput (infer/s) and p99_us (µs) as floats, None
    where the trial has no number (unstable, failed)."""
    rows = []
    for path in paths:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                row["throughput"] = float(row["throughput"]) if row.get("throughput") else None
                row["p99_us"] = float(row["p99_us"]) if row.get("p99_us") else None
                rows.append(row)
    return rows


def ranked(
    rows: list[dict[str, Any]], budget_us: float, min_throughput: float = 0.0
) -> list[dict[str, Any]]:
    """Stable trials, best first: those within the p99 budget and above the minimum throughput by
    throughput (ties: lower p99), then the others by p99 (the closest to the budget first)."""
    measured = [
        r
        for r in rows
        if r.get("status") == Status.OK and r["throughput"] is not None and r["p99_us"] is not None
    ]
    feasible = [
        r for r in measured if r["p99_us"] <= budget_us and r["throughput"] >= min_throughput
    ]
    others = [
        r for r in measured if not (r["p99_us"] <= budget_us and r["throughput"] >= min_throughput)
    ]
    return sorted(feasible, key=lambda r: (-r["throughput"], r["p99_us"])) + sorted(
        others, key=lambda r: r["p99_us"]
    )


def incumbent(
    rows: list[dict[str, Any]], budget_us: float, min_throughput: float = 0.0
) -> tuple[dict[str, Any] | None, bool]:
    """(best trial, whether it meets the constraints): the highest throughput among stable trials
    with p99 within the budget and throughput above the minimum; else the closest (lowest p99)."""
    order = ranked(rows, budget_us, min_throughput)
    if not order:
        return None, False
    best = order[0]
    return best, best["p99_us"] <= budget_us and best["throughput"] >= min_throughput


@dataclass
class SearchState:
    """One round's view: the space (every dimension, tuning.space.full_space), the untuned start,
    the format (its runtime's knobs, space.canonical), every trial measured before (rows as
    read_trials gives them), the round number and the constraints (p99 budget in µs, minimum
    throughput in infer/s)."""

    space: dict[str, list[Any]]
    start: dict[str, Any]
    rows: list[dict[str, Any]]
    round_no: int
    budget_us: float
    min_throughput: float = 0.0
    fmt: str | None = None
    by_id: dict[str, dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {r["trial"]: r for r in self.rows}

    @property
    def done(self) -> set[str]:
        return set(self.by_id)

    def best(self, among: set[str] | None = None) -> dict[str, Any] | None:
        """The incumbent trial (parsed) among all measured trials, or among the ids given."""
        rows = self.rows if among is None else [self.by_id[t] for t in among if t in self.by_id]
        row, _ = incumbent(rows, self.budget_us, self.min_throughput)
        return parse_trial(row["trial"]) if row else None
