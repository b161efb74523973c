"""Selection: per model and device, the fastest format under the p99 latency budget, among formats
that passed correctness and fit the memory limit, from the offline and online perf results."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .contracts import Header, Status, number
from .spread import Spread, simplicity, within_noise


def over_memory(
    coldstart: Sequence[Mapping[str, Any]], max_memory_mb: float
) -> dict[tuple[str, str, str], str]:
    """(model, format, device) -> why it is not chosen, for each target whose server needs more than
    max_memory_mb MiB of resident memory net of an empty server's (the cold-start measurement's
    memory_net_mb, deploysnake.coldstart; selection.max_memory_mb). {} with max_memory_mb 0 (no
    limit); a target without the figure (not measured, failed) is never over."""
    if not max_memory_mb or max_memory_mb <= 0:
        return {}
    over = {}
    for row in coldstart:
        net = number(None if row.get("memory_net_mb") is None else str(row["memory_net_mb"]))
        if net is not None and net > max_memory_mb:
            over[(str(row["model"]), str(row["format"]), str(row["device"]))] = (
                f"{row['format']} not chosen: its server needs {net:,.0f} MiB net of an empty "
                f"server's, over selection.max_memory_mb {max_memory_mb:g}"
            )
    return over


def best(
    perf_csvs: list[Path],
    p99_budget_us: float,
    excluded: set[tuple[str, str, str]] | None = None,
    over_limit: Mapping[tuple[str, str, str], str] | None = None,
) -> list[dict[str, Any]]:
    """One row per (model, device): the winning format and the point it was measured at, or the
    closest point (lowest p99) with within_budget False when no stable point meets the budget.
    excluded: (model, format, device) that failed a served stage (deploysnake.failures): never
    chosen. over_limit: (model, format, device) over selection.max_memory_mb -> why (over_memory()):
    never chosen, and the row's `memory` names them ("" when none); a (model, device) whose every
    measured format is over the limit has no row (memory_left_out() says why)."""
    points: dict[tuple[str, str], list[dict[str, Any]]] = {}
    memory_notes: dict[tuple[str, str], list[str]] = {}
    limits = over_limit or {}
    for path in perf_csvs:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                throughput, p99 = (
                    number(row.get(Header.THROUGHPUT)),
                    number(row.get(Header.P99)),
                )
                if row.get("status") != Status.OK or throughput is None or p99 is None:
                    continue
                key3 = (row["model"], row["format"], row["device"])
                if key3 in (excluded or set()):
                    continue
                if key3 in limits:
                    notes = memory_notes.setdefault((row["model"], row["device"]), [])
                    if limits[key3] not in notes:
                        notes.append(limits[key3])
                    continue
                points.setdefault((row["model"], row["device"]), []).append(
                    {
                        # every column as written (the latency split, the spread, the counts:
                        # deploysnake.measuring.perf), then the typed figures
                        **row,
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
                        "server_cpu": number(row.get("server_cpu")),
                        "server_peak_rss_mb": number(row.get("server_peak_rss_mb")),
                        "instances": int(number(row.get("instances")) or 1),
                    }
                )
    chosen = []
    for key in sorted(points):
        memory = "; ".join(memory_notes.get(key, []))
        within = [p for p in points[key] if p["p99_us"] <= p99_budget_us]
        if within:
            chosen.append(
                {
                    **_not_ranked_within_noise(within),
                    "within_budget": True,
                    "budget_us": p99_budget_us,
                    "memory": memory,
                }
            )
        else:
            chosen.append(
                {
                    **min(points[key], key=lambda p: p["p99_us"]),
                    "within_budget": False,
                    "fastest": "",
                    "noise": "",
                    "budget_us": p99_budget_us,
                    "memory": memory,
                }
            )
    return chosen


def memory_left_out(
    over_limit: Mapping[tuple[str, str, str], str], chosen: list[dict[str, Any]]
) -> dict[tuple[str, str], str]:
    """(model, device) with no row in `chosen` (best()'s) and a format over the memory limit -> the
    reasons: every format it measured is over selection.max_memory_mb."""
    have = {(r["model"], r["device"]) for r in chosen}
    left: dict[tuple[str, str], list[str]] = {}
    for (model, _fmt, device), why in sorted(over_limit.items()):
        if (model, device) not in have:
            left.setdefault((model, device), []).append(why)
    return {key: "; ".join(whys) for key, whys in left.items()}


def _spread_of(point: dict[str, Any]) -> Spread:
    """The point's throughput interval from its CSV columns (infer_s_n, _low, _high); one sample
    (no interval) where the CSV has none."""
    n, low, high = (number(point.get(f"infer_s_{k}")) for k in ("n", "low", "high"))
    if n is None or low is None or high is None:
        t = point["throughput"]
        return Spread(1, t, None, t, t)
    return Spread(int(n), point["throughput"], None, low, high)


def _not_ranked_within_noise(within: list[dict[str, Any]]) -> dict[str, Any]:
    """The chosen point among those within the budget: the fastest format's best point, unless
    other formats' best points are within the noise of it (their 95 % throughput intervals
    overlap, deploysnake.spread.within_noise): then the simplest of those (spread.simplicity:
    full precision over reduced, then fewer instances), with `noise` saying so and why; `fastest`
    names the format that read fastest."""
    by_format: dict[str, dict[str, Any]] = {}
    for p in within:
        if p["format"] not in by_format or p["throughput"] > by_format[p["format"]]["throughput"]:
            by_format[p["format"]] = p
    fastest = max(by_format.values(), key=lambda p: p["throughput"])
    top = _spread_of(fastest)
    tied = [p for p in by_format.values() if p is fastest or within_noise(top, _spread_of(p))]
    pick = min(tied, key=lambda p: (simplicity(p["format"], p["instances"]), -p["throughput"]))
    noise = ""
    if pick is not fastest:
        why = (
            "full precision preferred over reduced (no accuracy traded)"
            if simplicity(pick["format"])[0] < simplicity(fastest["format"])[0]
            else "fewer instances preferred (less memory, fewer cores)"
            if pick["instances"] < fastest["instances"]
            else "the simpler format preferred"
        )
        noise = (
            f"within the noise: {fastest['format']} read {fastest['throughput']:,.0f} infer/s "
            f"(95 % interval {top.low:,.0f}-{top.high:,.0f}), {pick['format']} "
            f"{pick['throughput']:,.0f}; the intervals overlap, so {why}"
        )
    return {**pick, "fastest": fastest["format"], "noise": noise}
