"""The report's first table: per model and device the fastest format within the p99 budget
(deploysnake.selection), with what it costs in CPU and memory, its spread and what limits it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from ..contracts import BREAKDOWN, Status
from .load import ID
from .text import fmt, num

SPREAD_CELLS = ("infer/s 95 %", "p99 95 % µs", "p99 requests", "served/native 95 %")


def native_by_point(native: pl.DataFrame | None, column: str) -> dict[tuple[Any, ...], float]:
    """(model, format, device, batch) -> the native rows' `column` where their status is ok."""
    if native is None or column not in native.columns or native.height == 0:
        return {}
    ok = native.filter(pl.col("status").fill_null(Status.OK) == Status.OK).drop_nulls(column)
    return {
        (r["model"], r["format"], r["device"], int(r["batch"])): r[column]
        for r in ok.iter_rows(named=True)
    }


def spread_cells(
    r: dict[str, Any],
    native_infer_s: float | None,
    native_n: float | None = None,
    native_cv: float | None = None,
) -> dict[str, str]:
    """The best point's spread as the best table's text cells (deploysnake.spread; perf.py's
    columns): infer/s's interval with n, CV and its source, p99's interval (repeated runs only),
    the requests behind the p99 against MLPerf's minimum, served/native's 95 % interval
    (deploysnake.spread.ratio: the served windows or runs against the in-process run's
    sub-windows, native_n and native_cv; a single in-process reading counts as exact)."""
    from ..spread import percentile_support, ratio_text

    n, low, high, cv = (num(r.get(f"infer_s_{k}")) for k in ("n", "low", "high", "cv"))
    cells = dict.fromkeys(SPREAD_CELLS, "")
    if n and low is not None and high is not None:
        about = [f"n {int(n)}", str(r.get("infer_s_from") or "")]
        if cv is not None:
            about.append(f"CV {100 * cv:.1f} %")
        cells["infer/s 95 %"] = f"{fmt(low)}-{fmt(high)} ({', '.join(a for a in about if a)})"
    if native_infer_s and r.get("throughput") and r["throughput"] <= native_infer_s:
        cells["served/native 95 %"] = ratio_text(
            r["throughput"], n, cv, native_infer_s, native_n, native_cv
        )
    p_n, p_low, p_high = (num(r.get(f"p99_{k}")) for k in ("n", "low", "high"))
    if p_n and p_low is not None and p_high is not None:
        cells["p99 95 % µs"] = f"{fmt(p_low)}-{fmt(p_high)} (n {int(p_n)} runs)"
    requests = num(r.get("requests"))
    if requests:
        s = percentile_support(int(requests), 99.0)
        # n: the requests behind it; needs: MLPerf's minimum for a p99; supports: the highest
        # percentile whose minimum n meets; pA-pB: where the stated p99 lies at 99 % confidence
        cells["p99 requests"] = (
            f"n={int(requests):,} (p99 needs {s.minimum:,}: enough)"
            if s.enough
            else f"n={int(requests):,} (p99 needs {s.minimum:,}; supports p{s.supported:.0f}; "
            f"p99 is p{99 - s.margin:.2f}-p{min(100.0, 99 + s.margin):.2f})"
        )
    return cells


def floor_latencies(floor: pl.DataFrame | None) -> dict[tuple[Any, ...], float]:
    """(model, format, device, concurrency) -> the serving floor's latency (µs, the sum of its
    split) at that online point, from the floor's sweeps (load.floor)."""
    if floor is None or not floor.height:
        return {}
    found = {}
    for r in floor.filter(pl.col("status") == Status.OK).iter_rows(named=True):
        parts = [v for v in (num(r.get(c)) for c in BREAKDOWN) if v is not None]
        if len(parts) == len(BREAKDOWN):
            found[(r["model"], r["format"], r["device"], int(r["concurrency"]))] = sum(parts)
    return found


def diagnosis(r: dict[str, Any], floors: dict[tuple[Any, ...], float]) -> str:
    """One line on what limits the best point (deploysnake.spread.diagnose) from its split."""
    from ..spread import diagnose

    split = {c: num(r.get(c)) for c in BREAKDOWN}
    if any(v is None for v in split.values()):
        return ""
    floor = (
        floors.get((r["model"], r["format"], r["device"], int(r["concurrency"])))
        if r["mode"] == "online"
        else None
    )
    server, client = num(r.get("server_cpu")), num(r.get("client_cpu"))
    cores = os.cpu_count() or 1
    return diagnose(
        r["mode"],
        {k: float(v) for k, v in split.items() if v is not None},
        floor,
        client,
        max(0.0, cores - (server or 0.0)) if client is not None else None,
    )


def best_table(
    perf_csvs: list[Path],
    budget_ms: float,
    native: pl.DataFrame | None = None,
    capacity: pl.DataFrame | None = None,
    excluded: set[tuple[str, str, str]] | None = None,
    expected: set[tuple[str, str]] | None = None,
    measured: set[tuple[str, str]] | None = None,
    floor: pl.DataFrame | None = None,
    over_limit: Mapping[tuple[str, str, str], str] | None = None,
) -> pl.DataFrame:
    """Per model and device, the fastest format within the p99 budget (ms), among formats with no
    failure in a served stage (`excluded`: (model, format, device)), with infer/s per server core,
    the serving overhead (server CPU ms per 1,000 inferences over the runtime's in-process CPU ms
    per 1,000 at the same batch), the server's peak memory, its spread and limit, and its capacity
    at the SLA where searched (`capacity`: frames.capacity_figures' CAPACITY and COST); each
    (model, device) of `expected` (those with no format left) has a row that says so, and so has
    each of `measured` (those with perf rows) where no point is stable: a model never drops out of
    the table without a word. `floor`: the serving floor's sweeps (load.floor), for the limit of
    an online point; `over_limit`: (model, format, device) over selection.max_memory_mb -> why
    (never chosen; a model left with none says so)."""
    from ..selection import best, memory_left_out

    rows = best(
        [Path(p) for p in perf_csvs if Path(p).exists()], budget_ms * 1000.0, excluded, over_limit
    )
    in_process = native_by_point(native, "native_cpu_ms_per_1k")
    native_rate = native_by_point(native, "throughput_infer_per_s")
    native_n, native_cv = (native_by_point(native, f"infer_s_{k}") for k in ("n", "cv"))
    floors = floor_latencies(floor)

    def native_of(r: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
        if r["mode"] != "offline":
            return None, None, None
        key = (r["model"], r["format"], r["device"], int(r["batch"]))
        return native_rate.get(key), native_n.get(key), native_cv.get(key)

    def per_core(r: dict[str, Any]) -> float | None:
        cores = num(r.get("server_cpu"))
        return r["throughput"] / cores if cores else None

    def overhead(r: dict[str, Any]) -> float | None:
        cores = num(r.get("server_cpu"))
        base = in_process.get((r["model"], r["format"], r["device"], int(r["batch"])))
        if not cores or not base or not r["throughput"]:
            return None
        return float(cores / r["throughput"] * 1e6 / base)

    table = pl.DataFrame(
        [
            {
                "model": r["model"],
                "device": r["device"],
                "best format": r["format"]
                if r["within_budget"]
                else f"none within budget (closest: {r['format']})",
                "mode": r["mode"],
                "batch": r["batch"],
                "concurrency": r["concurrency"],
                "infer/s": r["throughput"],
                "p99 µs": r["p99_us"],
                "infer/s per server core": per_core(r),
                "serving overhead": overhead(r),
                "server peak MiB": num(r.get("server_peak_rss_mb")),
                "input per sample": r.get("input_shapes") or "",
                **spread_cells(r, *native_of(r)),
                "server batch": num(r.get("server_batch")),
                "limited by": diagnosis(r, floors),
                "choice": "; ".join(c for c in (r.get("noise"), r.get("memory")) if c),
            }
            for r in rows
        ],
        schema={
            "model": pl.String,
            "device": pl.String,
            "best format": pl.String,
            "mode": pl.String,
            "batch": pl.Int64,
            "concurrency": pl.Int64,
            "infer/s": pl.Float64,
            "p99 µs": pl.Float64,
            "infer/s per server core": pl.Float64,
            "serving overhead": pl.Float64,
            "server peak MiB": pl.Float64,
            "input per sample": pl.String,
            **dict.fromkeys(SPREAD_CELLS, pl.String),
            "server batch": pl.Float64,
            "limited by": pl.String,
            "choice": pl.String,
        },
    )
    if capacity is not None and capacity.height:
        table = (
            table.with_columns(pl.Series("format", [r["format"] for r in rows], pl.String))
            .join(capacity, on=ID, how="left", maintain_order="left")
            .drop("format")
        )
    chosen = {(r["model"], r["device"]) for r in rows}
    left = sorted((expected or set()) - chosen)
    nothing = "no format left (every format failed; see the model's section)"
    unstable = (
        "no stable point (every point unstable, disturbed or left out; see the model's section)"
    )
    memory = memory_left_out(over_limit or {}, rows)
    notes = [(m, d, nothing) for m, d in left] + [
        (m, d, memory.get((m, d)) or unstable)
        for m, d in sorted((measured or set()) - chosen - set(left))
    ]
    if notes:
        table = pl.concat(
            [
                table,
                pl.DataFrame(
                    [{"model": m, "device": d, "best format": why} for m, d, why in notes],
                    schema={"model": pl.String, "device": pl.String, "best format": pl.String},
                ),
            ],
            how="diagonal",
        ).sort("model", "device")
    return table
