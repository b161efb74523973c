"""The report's capacity figures: data and charts for report.py's page (see capacity.py).

- `load`: the capacity results (results/capacity/{model}/{format}/{device}.json and .csv);
- `figures`: per (model, format, device) the capacity (requests/s), p50/p99 there (µs) and, with a
  price in cost.per_hour, the cost of a million inferences at the SLA, for the best-format table and
  the summary;
- `section`: per model, latency percentiles against offered rate with the budget line and the
  capacity marked, the latency breakdown at the capacity point, and every rate measured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl

from .capacity import cost_per_million, describe
from .contracts import BREAKDOWN, PERCENTILES, Header, Status

ID = ["model", "format", "device"]
CAPACITY = "capacity req/s"
COST = "cost per 1M inferences"


def load(paths: list[Path]) -> list[tuple[dict[str, Any], pl.DataFrame]]:
    """(result JSON, every rate's row) per searched model, format and device, in path order."""
    loaded = []
    for json_path in sorted(Path(p) for p in paths if Path(p).suffix == ".json"):
        result = json.loads(json_path.read_text())
        csv_path = json_path.with_suffix(".csv")
        rows = (
            pl.read_csv(csv_path, infer_schema_length=None)
            if csv_path.exists() and csv_path.stat().st_size
            else pl.DataFrame()
        )
        loaded.append((result, rows))
    return loaded


def failures(loaded: list[tuple[dict[str, Any], pl.DataFrame]]) -> pl.DataFrame:
    """The searches that failed (status "failed"), as failure records for report.served_failures:
    model, format, device, status, stage, reason, log_excerpt."""
    columns = ["model", "format", "device", "status", "stage", "reason", "log_excerpt"]
    return pl.DataFrame(
        [
            {c: str(r.get(c) or "") for c in columns}
            for r, _ in loaded
            if r["status"] == Status.FAILED
        ],
        schema=dict.fromkeys(columns, pl.String),
    )


def figures(
    loaded: list[tuple[dict[str, Any], pl.DataFrame]], per_hour: dict[str, float]
) -> pl.DataFrame:
    """One row per (model, format, device): capacity (requests/s; null when no rate meets the
    budget), its p99 (µs), the budget (ms) and the cost of a million inferences (null without a
    price for the device)."""
    rows = [
        {
            "model": r["model"],
            "format": r["format"],
            "device": r["device"],
            CAPACITY: r["capacity_rps"],
            "capacity p99 µs": r["p99_us"],
            "capacity budget ms": float(r["p99_budget_ms"]),
            COST: cost_per_million(r["capacity_infer_per_s"], per_hour, r["device"]),
            "capacity": describe(r),
        }
        for r, _ in loaded
    ]
    return pl.DataFrame(
        rows,
        schema={
            "model": pl.String,
            "format": pl.String,
            "device": pl.String,
            CAPACITY: pl.Int64,
            "capacity p99 µs": pl.Float64,
            "capacity budget ms": pl.Float64,
            COST: pl.Float64,
            "capacity": pl.String,
        },
    )


def latency_chart(result: dict[str, Any], rows: pl.DataFrame) -> alt.TopLevelMixin | None:
    """Latency percentiles (ms) against offered rate (requests/s) at every stable rate, the budget a
    dashed horizontal rule and the capacity a vertical rule; None without a stable rate."""
    if not rows.height or "status" not in rows.columns:
        return None
    present = [c for c in PERCENTILES if c in rows.columns]
    pts = (
        rows.filter(pl.col("status") == Status.OK)
        .select("request_rate", *present)
        .unpivot(on=present, index="request_rate", variable_name="percentile", value_name="us")
        .drop_nulls("us")
        .with_columns(
            pl.col("percentile").str.replace(" latency", ""),
            (pl.col("us").cast(pl.Float64) / 1000).alias("ms"),
            pl.col("request_rate").cast(pl.Float64),
        )
        .sort("request_rate")
    )
    if not pts.height:
        return None
    base = alt.Chart(alt.InlineData(values=pts.to_dicts())).encode(
        x=alt.X("request_rate:Q", title="offered rate (requests/s)"),
        y=alt.Y("ms:Q", title="latency (ms)"),
        color=alt.Color("percentile:N", sort=["p50", "p90", "p95", "p99"]),
        tooltip=[
            alt.Tooltip("request_rate:Q", title="requests/s"),
            "percentile:N",
            alt.Tooltip("ms:Q", format=",.2f"),
        ],
    )
    layers: list[Any] = [base.mark_line(), base.mark_point(filled=True, size=45)]
    layers.append(
        alt.Chart(alt.InlineData(values=[{"budget": float(result["p99_budget_ms"])}]))
        .mark_rule(strokeDash=[4, 4], color="red")
        .encode(y="budget:Q")
    )
    if result.get("capacity_rps") is not None:
        layers.append(
            alt.Chart(alt.InlineData(values=[{"capacity": float(result["capacity_rps"])}]))
            .mark_rule(color="green", strokeWidth=2)
            .encode(x="capacity:Q")
        )
    return alt.layer(*layers)


def breakdown_chart(result: dict[str, Any]) -> alt.TopLevelMixin | None:
    """perf_analyzer's latency breakdown (µs) at the capacity rate; None without a capacity."""
    parts = [
        {"component": c, "us": v, "order": i}
        for i, c in enumerate(BREAKDOWN)
        if (v := (result.get("breakdown_us") or {}).get(c)) is not None
    ]
    if result.get("capacity_rps") is None or not parts:
        return None
    chart: alt.Chart = (
        alt.Chart(alt.InlineData(values=parts))
        .mark_bar()
        .encode(
            x=alt.X("us:Q", title="average latency (µs)"),
            y=alt.Y("component:N", sort=BREAKDOWN, title=None),
            color=alt.Color("component:N", sort=BREAKDOWN, legend=None),
            tooltip=["component:N", alt.Tooltip("us:Q", format=",.0f")],
        )
    )
    return chart


TABLE_COLUMNS = [
    "step",
    "request_rate",
    "status",
    "within_budget",
    "achieved_rate",
    "send_rate",
    "delayed_percent",
    "kept_up",
    Header.THROUGHPUT,
    Header.P50,
    Header.P99,
    *BREAKDOWN,
]


def section(
    model: str,
    loaded: list[tuple[dict[str, Any], pl.DataFrame]],
    per_hour: dict[str, float],
    embed: Any,
    table: Any,
    escape: Any,
    anchor: str,
    width: int,
    height: int,
) -> str:
    """The model's capacity section (empty without a search): per format and device, the result
    line, the two charts and the table of rates in search order. embed(items) lays charts out
    (report._side_by_side), table(df, name) writes a table, escape escapes text; anchor is the
    section's id."""
    mine = [(r, rows) for r, rows in loaded if r["model"] == model]
    if not mine:
        return ""
    parts = [
        f'<section id="{anchor}"><h3>Capacity at a p99 SLA (open loop)</h3>'
        '<p class="note">perf_analyzer at fixed request rates, arrivals on a schedule whether '
        "or not "
        "the server keeps up; the capacity is the highest rate whose p99 stays within the budget "
        "(bracketing, then bisection); a rate whose client fell behind the schedule "
        "(client_behind) or whose latency did not settle (unstable) is not a result</p>"
    ]
    for result, rows in mine:
        label = f"{model} · {result['format']} · {result['device']}"
        cost = cost_per_million(result["capacity_infer_per_s"], per_hour, result["device"])
        line = escape(describe(result))
        if cost is not None:
            line += (
                f"; <b>{cost:,.4g}</b> per million inferences at "
                f"{per_hour[result['device']]:g} per hour (cost.per_hour)"
            )
        if result["status"] == Status.FAILED:  # its log excerpt is in the served failures' list
            parts.append(f'<h4>{escape(label)}</h4><p class="bad" data-capacity="">{line}</p>')
            continue
        cls = "bad" if result["capacity_rps"] is None else ""
        parts.append(
            f"<h4>{escape(label)}</h4>"
            f'<p class="{cls}" data-capacity="{escape(result["capacity_rps"] or "")}">{line}</p>'
            f'<p class="note">{result["measurements"]} rate(s), {escape(result["distribution"])} '
            f"arrivals, batch {result['batch']}, resolution {result['resolution']:g}</p>"
        )
        chart = latency_chart(result, rows)
        bars = breakdown_chart(result)
        parts.append(
            embed(
                (
                    chart.properties(width=width, height=height) if chart is not None else None,
                    f"{label}: latency vs offered rate (budget dashed, capacity solid)",
                ),
                (
                    bars.properties(width=width * 0.8, height=height) if bars is not None else None,
                    f"{label}: latency breakdown at the capacity",
                ),
            )
        )
        if rows.height:
            parts.append(table(rows.select([c for c in TABLE_COLUMNS if c in rows.columns])))
    parts.append("</section>")
    return "".join(parts)
