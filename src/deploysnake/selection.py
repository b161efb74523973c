"""Selection: per model and device, the fastest format under the p99 latency budget, among formats
that passed correctness, from the offline and online perf results."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def best(
    perf_csvs: list[Path],
    p99_budget_us: float,
    excluded: set[tuple[str, str, str]] | None = None,
) -> list[dict[str, Any]]:
    """One row per (model, device): the winning format and the point it was measured at, or the
    closest point (lowest p99) with within_budget False when no stable point meets the budget.
    excluded: (model, format, device) that failed a served stage (deploysnake.failures): never
    chosen."""
    points: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for path in perf_csvs:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                throughput, p99 = (
                    _number(row.get("Inferences/Second")),
                    _number(row.get("p99 latency")),
                )
                if row.get("status") != "ok" or throughput is None or p99 is None:
                    continue
                if (row["model"], row["format"], row["device"]) in (excluded or set()):
                    continue
                points.setdefault((row["model"], row["device"]), []).append(
                    {
                        "model": row["model"],
                        "device": row["device"],
                        "format": row["format"],
                        "mode": row["mode"],
                        "batch": int(row["batch"]),
                        "concurrency": int(row["concurrency"]),
                        "throughput": throughput,
                        "p99_us": p99,
                        "input_shapes": row.get("input_shapes", ""),
                        # what the server used at that point (deploysnake.usage), when measured
                        "server_cpu": _number(row.get("server_cpu")),
                        "server_peak_rss_mb": _number(row.get("server_peak_rss_mb")),
                    }
                )
    chosen = []
    for key in sorted(points):
        within = [p for p in points[key] if p["p99_us"] <= p99_budget_us]
        if within:
            chosen.append(
                {
                    **max(within, key=lambda p: p["throughput"]),
                    "within_budget": True,
                    "budget_us": p99_budget_us,
                }
            )
        else:
            chosen.append(
                {
                    **min(points[key], key=lambda p: p["p99_us"]),
                    "within_budget": False,
                    "budget_us": p99_budget_us,
                }
            )
    return chosen
