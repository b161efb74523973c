"""Report stage: one self-contained HTML file with correctness, accuracy and Triton performance
per model, format and device.

The page must open anywhere, offline, years later: the Vega/Vega-Lite/vega-embed bundle is inlined once and every
chart spec carries its data inline. Every string that comes from config, CSV or JSON is untrusted (a model name is
free text) and goes through html.escape() or, inside <script>, through _script_json().
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import altair as alt
import jinja2
import polars as pl
import yaml
from markupsafe import Markup

from . import report_capacity, report_coldstart, report_gate
from .contracts import BREAKDOWN, PERCENTILES, Header, Status

log = logging.getLogger(__name__)

MISSING = "—"
WITHIN_SPREAD = "≈ 1, within the spread"  # served/native above 1 by less than the spread
# A row with one of these statuses shows the status instead of its figures (CSS class beside it).
MARKED = {
    Status.UNSTABLE: "unstable",
    Status.DISTURBED: "disturbed",
    Status.BASELINE_SUSPECT: "suspect",
    WITHIN_SPREAD: "spread",
    Status.LEFT_OUT: "unstable",
}
# What a measured window used (deploysnake.usage): shown for every point, disturbed ones included.
USAGE = [
    "foreign_cpu",
    "server_cpu",
    "client_cpu",
    "job_cpu",
    "server_peak_rss_mb",
    "window_s",
    "gpu_utilization",
    "gpu_memory_used_mb",
    "foreign_gpu_processes",
]
NO_STABLE = "no stable points"

ID = ["model", "format", "device"]
# A failure record's columns (deploysnake.failures): status "failed", stage, reason, log excerpt.
FAILURE_TEXT = ["status", "stage", "reason", "log_excerpt"]
# Provenance columns (config_hash, code_version, packages, hardware) are text; shown in their own table.
PROVENANCE = ["config_hash", "code_version", "packages", "hardware"]
PERF_TEXT = [
    "model",
    "format",
    "device",
    "mode",
    *FAILURE_TEXT,
    *PROVENANCE,
]  # every other perf column is a number
PERF_NUMBERS = [
    "batch",
    "concurrency",
    Header.CONCURRENCY,
    Header.THROUGHPUT,
    *BREAKDOWN,
    *PERCENTILES,
]
ACCURACY_TEXT = ["model", "format", "device", "metric", *FAILURE_TEXT, *PROVENANCE]
ACCURACY_NUMBERS = [
    "source",
    "exported",
    "served",
    "served_minus_source",
    "samples",
    "max_abs_diff_served_vs_exported",
]
NATIVE_TEXT = ["model", "format", "device", *FAILURE_TEXT, *PROVENANCE]
NATIVE_NUMBERS = [
    "batch",
    "throughput_infer_per_s",
    "p50_latency_us",
    "p99_latency_us",
    "iterations",
]

# A report of at most this many models shows every model's section open; with more, each section
# opens on a click and draws its charts then (templates/report.js).
OPEN_MODELS = 3
# Closed model sections whose HTML together exceeds this many bytes are stored packed (gzip, then
# base64) and unpacked by report.js when a section opens: a report of 1,002 variants shrinks from
# about 24.6 MB to about 5.4 MB and its parser builds no closed section at load. Below it (up to
# about 30 models) the sections stay plain HTML, which the browser's find searches and which reads
# without JavaScript. The browser needs DecompressionStream (Chrome 80, Firefox 113, Safari 16.4).
PACK_ABOVE_BYTES = 4_000_000
EMBED_OPTIONS = {"renderer": "svg", "actions": False}  # svg so a DOM dump shows the marks
CHART_WIDTH = 340
CHART_HEIGHT = 210
# Dashes tell offline concurrencies apart (1: one request at a time; 2: transfer overlaps compute).
CONCURRENCY_DASH = alt.StrokeDash("concurrency:N", title="concurrency")


# ---------------------------------------------------------------- formatting and escaping


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    """3-4 significant digits; large numbers without exponent so throughputs read naturally."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return MISSING
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        mag = abs(value)
        if mag >= 1e15:
            return f"{value:.4g}"
        if mag >= 1000:
            return f"{value:,.0f}"
        if value == int(value):
            return str(int(value))
        return f"{value:.4g}" if mag >= 1e-3 else f"{value:.3g}"
    text = str(value)
    return text if text else MISSING


def _script_json(obj: Any) -> str:
    """JSON that is safe inside <script>: no '</script', '<!--' or '-->' can survive, whatever a config string holds.

    '<' and '>' become \\u003c / \\u003e (valid in JSON and JS, the way Jinja's tojson does it), a stronger form of
    escaping '</' as '<\\/'; '&' and U+2028/2029 likewise, so the text is inert in any HTML or JS context.
    """
    text = json.dumps(obj, ensure_ascii=True, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _anchor(*parts: str) -> str:
    """A safe, unique id: a readable slug plus a hash, since model names may hold any character."""
    joined = "\x00".join(parts)
    slug = re.sub(r"[^a-z0-9]+", "-", joined.lower()).strip("-")[:40] or "x"
    return f"s-{slug}-{hashlib.sha1(joined.encode()).hexdigest()[:8]}"


def _plain(obj: Any) -> Any:
    """Config as plain YAML-able data (snakemake may hand over Path or other objects)."""
    return json.loads(json.dumps(obj, default=str))


# ---------------------------------------------------------------- loading


def _existing(paths: Iterable[Path | str]) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if p.is_file() and p.stat().st_size > 0:
            out.append(p)
        else:
            log.warning("report: skipping missing or empty input %s", p)
    return out


def _read_csvs(
    paths: Iterable[Path | str], text: Sequence[str], numbers: Sequence[str]
) -> pl.DataFrame:
    """All CSVs as one frame; read as text first, so all-empty (unstable) columns never get a wrong inferred type."""
    frames = []
    for p in _existing(paths):
        try:
            frames.append(pl.read_csv(p, infer_schema=False))
        except pl.exceptions.NoDataError:
            log.warning("report: %s has no rows", p)
    df = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    df = df.with_columns(
        pl.lit(None, pl.String).alias(c) for c in (*text, *numbers) if c not in df.columns
    )
    casts = []
    for col in df.columns:
        if col in text:
            continue
        as_number = pl.col(col).cast(pl.Float64, strict=False)
        # Unknown (extra perf_analyzer) columns become numbers only when no non-empty value would be lost.
        lost = df.select(
            (as_number.is_null() & pl.col(col).is_not_null() & (pl.col(col) != "")).sum()
        ).item()
        if col in numbers or lost == 0:
            casts.append(as_number.fill_nan(None).alias(col))
    return df.with_columns(casts)


def _load_correctness(paths: Iterable[Path | str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(one row per checked output, one row per model/format with passed and reason)."""
    outputs: list[dict[str, Any]] = []
    formats: list[dict[str, Any]] = []
    for p in _existing(paths):
        doc = json.loads(p.read_text())
        # Path is results/correctness/<model>/<format>.json: the fallback when the JSON lacks the names.
        model, fmt = str(doc.get("model") or p.parent.name), str(doc.get("format") or p.stem)
        passed = bool(doc.get("passed", False))
        reason = str(doc.get("reason") or "")
        formats.append(
            {
                "model": model,
                "format": fmt,
                "passed": passed,
                "reason": reason,
                "samples": doc.get("samples"),
                "log_excerpt": str(doc.get("log_excerpt") or ""),
                "build s": _num(doc.get("build_seconds")),
            }
        )
        checks: Mapping[str, Any] = doc.get("outputs") or {}
        if not checks:  # e.g. the artifact failed to load: still one visible row
            checks = {MISSING: {"passed": passed}}
        for name, res in checks.items():
            ok = bool(res.get("passed", passed))
            status = "passed" if ok else f"FAILED: {reason}" if reason else "FAILED"
            outputs.append(
                {
                    "model": model,
                    "format": fmt,
                    "output": str(name),
                    "samples": _num(doc.get("samples")),
                    "atol": _num(res.get("atol")),
                    "rtol": _num(res.get("rtol")),
                    "max abs err": _num(res.get("max_abs_err")),
                    "max rel err": _num(res.get("max_rel_err")),
                    "status": status,
                }
            )
    out_schema = {
        "model": pl.String,
        "format": pl.String,
        "output": pl.String,
        "samples": pl.Float64,
        "atol": pl.Float64,
        "rtol": pl.Float64,
        "max abs err": pl.Float64,
        "max rel err": pl.Float64,
        "status": pl.String,
    }
    fmt_schema = {
        "model": pl.String,
        "format": pl.String,
        "passed": pl.Boolean,
        "reason": pl.String,
        "samples": pl.Float64,
        "log_excerpt": pl.String,
        "build s": pl.Float64,
    }
    per_output = pl.DataFrame(outputs, schema=out_schema).sort("model", "format", "output")
    per_format = pl.DataFrame(
        [{**f, "samples": _num(f["samples"])} for f in formats], schema=fmt_schema
    ).sort("model", "format")
    return per_output, per_format


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


# ---------------------------------------------------------------- HTML pieces


def _table(
    df: pl.DataFrame,
    name: str,
    *,
    mask: Sequence[str] = (),
    status: str = "status",
    links: Mapping[str, Callable[[Any], str]] | None = None,
    masks: Sequence[tuple[str, Sequence[str]]] = (),
) -> str:
    """An escaped HTML table; in rows whose status is "unstable", "disturbed" or "baseline suspect"
    (MARKED) the columns in `mask` read that status instead of a figure; `masks` adds more (status
    column, columns) pairs; a column in `links` links each cell to the anchor its function gives."""
    if df.height == 0:
        return '<p class="note">no data</p>'
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    rows = []
    pairs = [(status, mask), *masks]
    for row in df.iter_rows(named=True):
        marked = {col: row[by] for by, cols in pairs for col in cols if row.get(by) in MARKED}
        cells = []
        for col in df.columns:
            value = row[col]
            if col in marked:
                cells.append(f'<td class="{MARKED[marked[col]]}">{_e(marked[col])}</td>')
                continue
            text = _fmt(value)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            cls = "num" if numeric else "bad" if text.startswith("FAILED") else ""
            text_html = (
                f'<a href="{_e(links[col](value))}">{_e(text)}</a>'
                if links and col in links
                else _e(text)
            )
            cells.append(f'<td class="{cls}">{text_html}</td>' if cls else f"<td>{text_html}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="table-wrap"><table class="data" data-table="{_e(name)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


class _Charts:
    """Hands out unique div ids; each chart is a div plus its spec (and data) inline as inert JSON."""

    def __init__(self) -> None:
        self.count = 0

    def embed(
        self, chart: alt.TopLevelMixin | None, title: str, empty_note: str = NO_STABLE
    ) -> str:
        if chart is None:
            return f'<div class="chart-missing"><h4>{_e(title)}</h4><p class="note">{_e(empty_note)}</p></div>'
        self.count += 1
        div = f"chart-{self.count}"
        # Our own specs, drawn by the browser tests: validating each against the Vega-Lite schema
        # took about 40 % of a many-model report's build time (cProfile), for no finding.
        spec = chart.to_dict(validate=False)
        # The spec is data, not code: the browser only tokenizes it while it loads the page (running
        # a script per chart made loading a 1,002-variant page about 20 % slower). templates/report.js
        # parses and draws it when its section is open, and leaves a failed embed's error on the div,
        # so a DOM dump (and a reader) sees why.
        return (
            f'<div class="chart-box"><h4>{_e(title)}</h4><div class="chart" id="{div}" '
            f'data-title="{_e(title)}"></div>\n'
            f'<script type="application/json" class="chart-spec" data-chart="{div}">'
            f"{_script_json(spec)}</script></div>"
        )


def _vega_bundle() -> tuple[str, str]:
    """(Vega-Lite version, vega-embed JS bundle) matching altair's schema, as altair's own "inline" HTML does."""
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    # vl_convert's stub marks snippet required; at run time it defaults to the global-window snippet.
    javascript_bundle = cast(Callable[..., str], vlc.javascript_bundle)
    bundle = javascript_bundle(vl_version=vl_version_for_vl_convert())
    # The bundle holds no '</script' today; make sure a future one cannot end our <script> early.
    return alt.SCHEMA_VERSION, re.sub(r"</(script)", r"<\\/\1", bundle, flags=re.IGNORECASE)


# ---------------------------------------------------------------- charts


def _records(df: pl.DataFrame) -> alt.Data:
    """Inline chart data; inf/NaN become null (JSON has no such numbers and vega-lite skips nulls)."""
    floats = [c for c, t in df.schema.items() if t.is_float()]
    clean = df.with_columns(
        pl.when(pl.col(c).is_finite()).then(pl.col(c)).otherwise(None).alias(c) for c in floats
    )
    return alt.InlineData(values=clean.to_dicts())


def _points(df: pl.DataFrame, cols: Sequence[str]) -> pl.DataFrame:
    """Only status "ok" rows are charted: unstable/error points have no trustworthy numbers."""
    ok = df.filter(pl.col("status") == Status.OK)
    return ok.drop_nulls(list(cols)) if cols else ok


def _line_points(
    data: pl.DataFrame, x: alt.X, y: alt.Y, color: str, tooltip: list[Any], **extra: Any
) -> alt.LayerChart:
    base = alt.Chart(_records(data)).encode(
        x=x, y=y, color=alt.Color(color), tooltip=tooltip, **extra
    )
    return alt.LayerChart(layer=[base.mark_line(), base.mark_point(filled=True, size=45)])


def _offline_charts(charts: _Charts, df: pl.DataFrame, label: str) -> str:
    tput = _points(df, ["batch", Header.THROUGHPUT]).select(
        "format", "batch", "concurrency", pl.col(Header.THROUGHPUT).alias("throughput")
    )
    chart1 = None
    if tput.height:
        chart1 = _line_points(
            tput,
            alt.X("batch:O", title="batch"),
            alt.Y("throughput:Q", title="inferences/s"),
            "format:N",
            ["format:N", "batch:Q", "concurrency:Q", alt.Tooltip("throughput:Q", format=",.1f")],
            strokeDash=CONCURRENCY_DASH,
        ).properties(width=CHART_WIDTH, height=CHART_HEIGHT)
    lat = (
        _points(df, ["batch"])
        .unpivot(
            on=PERCENTILES,
            index=["format", "batch", "concurrency"],
            variable_name="percentile",
            value_name="us",
        )
        .drop_nulls("us")
        .with_columns(
            pl.col("percentile").str.replace(" latency", ""), (pl.col("us") / 1000).alias("ms")
        )
    )
    chart2 = None
    if lat.height:
        layered = _line_points(
            lat,
            alt.X("batch:O", title="batch"),
            alt.Y("ms:Q", title="latency (ms)"),
            "percentile:N",
            [
                "format:N",
                "batch:Q",
                "concurrency:Q",
                "percentile:N",
                alt.Tooltip("ms:Q", format=",.3f"),
            ],
            strokeDash=CONCURRENCY_DASH,
        )
        chart2 = layered.properties(width=CHART_WIDTH * 0.8, height=CHART_HEIGHT).facet(
            column=alt.Column("format:N", title=None)
        )
    return _side_by_side(
        charts,
        (chart1, f"{label}: offline throughput vs batch"),
        (chart2, f"{label}: offline latency percentiles vs batch"),
    )


def _side_by_side(charts: _Charts, *items: tuple[Any, str]) -> str:
    """Charts in one flex row; a missing chart (None) becomes a "no stable points" note."""
    return (
        '<div class="charts">'
        + "".join(charts.embed(chart, title) for chart, title in items)
        + "</div>"
    )


def _online_charts(
    charts: _Charts, df: pl.DataFrame, label: str, floor: pl.DataFrame | None = None
) -> str:
    """The online sweep's throughput against p99 (one line per format, and where the serving floor
    was measured, its line dashed beside it: "<format> floor") and its latency breakdown."""

    def sweep(frame: pl.DataFrame, suffix: str) -> pl.DataFrame:
        return _points(frame, [Header.THROUGHPUT, Header.P99]).select(
            (pl.col("format") + suffix).alias("series"),
            pl.lit(bool(suffix)).alias("floor"),
            pl.coalesce("concurrency", Header.CONCURRENCY).alias("concurrency"),
            pl.col(Header.THROUGHPUT).alias("throughput"),
            (pl.col(Header.P99) / 1000).alias("p99_ms"),
        )

    pts = sweep(df, "")
    if pts.height and floor is not None and floor.height:
        pts = pl.concat([pts, sweep(floor, " floor")], how="vertical_relaxed")
    chart1 = None
    if pts.height:
        base = alt.Chart(_records(pts)).encode(
            x=alt.X("p99_ms:Q", title="p99 latency (ms)", scale=alt.Scale(zero=False)),
            y=alt.Y("throughput:Q", title="inferences/s"),
            color=alt.Color("series:N", title="format"),
            strokeDash=alt.StrokeDash(
                "floor:N",
                legend=None,
                scale=alt.Scale(domain=[False, True], range=[[1, 0], [5, 3]]),
            ),
            tooltip=[
                "series:N",
                "concurrency:Q",
                alt.Tooltip("throughput:Q", format=",.1f"),
                alt.Tooltip("p99_ms:Q", format=",.3f"),
            ],
        )
        chart1 = alt.layer(
            base.mark_line().encode(order="concurrency:Q"),
            base.mark_point(filled=True, size=45),
            base.mark_text(align="left", dx=6, dy=-6, fontSize=10).encode(
                text="concurrency:Q"
            ),  # concurrency labels
        ).properties(width=CHART_WIDTH, height=CHART_HEIGHT)
    parts = [c for c in BREAKDOWN if c in df.columns]
    stack = (
        _points(df, [])
        .with_columns(pl.coalesce("concurrency", Header.CONCURRENCY).alias("conc"))
        .unpivot(on=parts, index=["format", "conc"], variable_name="component", value_name="us")
        .drop_nulls(["us", "conc"])
        .with_columns(
            pl.col("component")
            .replace_strict(parts, list(range(len(parts))), return_dtype=pl.Int64)
            .alias("order")
        )
    )
    chart2 = None
    if stack.height:
        chart2 = (
            alt.Chart(_records(stack))
            .mark_bar()
            .encode(
                x=alt.X("conc:O", title="concurrency"),
                y=alt.Y("us:Q", title="latency (µs)", stack="zero"),
                color=alt.Color("component:N", sort=parts, title="component"),
                order=alt.Order("order:Q"),
                tooltip=["format:N", "conc:Q", "component:N", alt.Tooltip("us:Q", format=",.0f")],
            )
            .properties(width=CHART_WIDTH * 0.8, height=CHART_HEIGHT)
            .facet(column=alt.Column("format:N", title=None))
        )
    return _side_by_side(
        charts,
        (
            chart1,
            f"{label}: online throughput vs p99 latency (labels: concurrency; dashed: the serving "
            "floor, a model that computes nothing served the same way)",
        ),
        (chart2, f"{label}: online latency breakdown per concurrency"),
    )


def _native_charts(charts: _Charts, df: pl.DataFrame, label: str) -> str:
    both = pl.concat(
        [
            df.filter(pl.col("served status") == Status.OK).select(
                "format",
                "batch",
                pl.format("served (Triton, concurrency {})", "concurrency").alias("run"),
                pl.col("served infer/s").alias("throughput"),
            ),
            df.filter(pl.col("native status") == Status.OK).select(
                "format",
                "batch",
                pl.lit("native (in-process)").alias("run"),
                pl.col("native infer/s").alias("throughput"),
            ),
        ]
    ).drop_nulls(["batch", "throughput"])
    chart1 = None
    if both.height:
        chart1 = _line_points(
            both,
            alt.X("batch:O", title="batch"),
            alt.Y("throughput:Q", title="inferences/s"),
            "format:N",
            ["format:N", "run:N", "batch:Q", alt.Tooltip("throughput:Q", format=",.1f")],
            strokeDash=alt.StrokeDash("run:N", title="run"),
        ).properties(width=CHART_WIDTH, height=CHART_HEIGHT)
    ratio = df.drop_nulls(["batch", "served/native"]).select(
        "format", "batch", "concurrency", pl.col("served/native").alias("ratio")
    )
    chart2 = None
    if ratio.height:
        one = (
            alt.Chart(alt.InlineData(values=[{"one": 1}]))
            .mark_rule(strokeDash=[4, 3], color="#888")
            .encode(y=alt.Y("one:Q", title="served / native throughput"))
        )
        chart2 = alt.layer(
            _line_points(
                ratio,
                alt.X("batch:O", title="batch"),
                alt.Y("ratio:Q", title="served / native throughput"),
                "format:N",
                ["format:N", "batch:Q", "concurrency:Q", alt.Tooltip("ratio:Q", format=".3f")],
                strokeDash=CONCURRENCY_DASH,
            ),
            one,
        ).properties(width=CHART_WIDTH, height=CHART_HEIGHT)
    return (
        '<div class="charts">'
        + charts.embed(chart1, f"{label}: served vs native throughput")
        + charts.embed(
            chart2,
            f"{label}: served / native throughput",
            "no batch size with a stable served and a native run",
        )
        + "</div>"
    )


# ---------------------------------------------------------------- derived tables


def _served_vs_native(offline: pl.DataFrame, native: pl.DataFrame) -> pl.DataFrame:
    """Served offline points beside the in-process run of the same artifact and batch, with what each
    cost in CPU: server and client (perf_analyzer) cores, CPU ms per 1,000 inferences served and
    in-process, and their ratio (the serving overhead). served/native is a figure only where both
    are stable and it is at most 1; above 1 it reads "baseline suspect" (the native job measured
    again and still found it) or "≈ 1, within the spread"."""

    def col(frame: pl.DataFrame, name: str) -> pl.Expr:
        return pl.col(name) if name in frame.columns else pl.lit(None, pl.Float64)

    served = offline.select(
        *ID,
        "batch",
        "concurrency",
        pl.col("status").alias("served status"),
        pl.col(Header.THROUGHPUT).alias("served infer/s"),
        pl.col(Header.P50).alias("served p50 µs"),
        pl.col(Header.P99).alias("served p99 µs"),
        col(offline, "server_cpu").alias("server cores"),
        col(offline, "client_cpu").alias("client cores"),
        col(offline, "server_peak_rss_mb").alias("server peak MiB"),
        col(offline, "infer_s_n").alias("_served n"),
        col(offline, "infer_s_cv").alias("_served cv"),
    )
    nat = native.select(
        *ID,
        "batch",
        pl.col("status").fill_null(Status.OK).alias("native status"),
        pl.col("throughput_infer_per_s").alias("native infer/s"),
        pl.col("p50_latency_us").alias("native p50 µs"),
        pl.col("p99_latency_us").alias("native p99 µs"),
        col(native, "native_cpu_ms_per_1k").alias("native CPU ms/1k"),
        col(native, "infer_s_n").alias("_native n"),
        col(native, "infer_s_cv").alias("_native cv"),
    )
    joined = served.join(nat, on=[*ID, "batch"], how="full", coalesce=True, nulls_equal=True)
    ratio = pl.col("served infer/s") / pl.col("native infer/s")
    status = (
        pl.when(pl.col("served status") != Status.OK)
        .then(pl.col("served status"))
        .when(
            pl.col("native status").is_in([Status.DISTURBED.value, Status.BASELINE_SUSPECT.value])
        )
        .then(pl.col("native status"))
        .when(ratio > 1)
        .then(pl.lit(WITHIN_SPREAD))
        .when(ratio.is_not_null())
        .then(pl.lit(Status.OK))
        .otherwise(None)
    )
    per_1k = pl.col("server cores") / pl.col("served infer/s") * 1e6
    return (
        joined.with_columns(status.alias("ratio status"))
        .with_columns(
            pl.when(pl.col("ratio status") == Status.OK)
            .then(ratio)
            .otherwise(None)
            .alias("served/native"),
            pl.when(pl.col("served status") == Status.OK)
            .then(per_1k)
            .otherwise(None)
            .alias("server CPU ms/1k"),
            pl.when(pl.col("served status") == Status.OK)
            .then(pl.col("client cores") / pl.col("served infer/s") * 1e6)
            .otherwise(None)
            .alias("client CPU ms/1k"),
        )
        .with_columns(
            (pl.col("server CPU ms/1k") / pl.col("native CPU ms/1k")).alias("serving overhead"),
            _ratio_interval("served infer/s", "_served", "native infer/s", "_native")
            .fill_null("")
            .alias("served/native 95 %"),
        )
        .with_columns(  # an interval only beside a ratio that is a figure
            pl.when(pl.col("ratio status") == Status.OK)
            .then(pl.col("served/native 95 %"))
            .otherwise(pl.lit(""))
            .alias("served/native 95 %")
        )
        .select(
            *ID,
            "batch",
            "concurrency",
            "served status",
            "served infer/s",
            "served p50 µs",
            "served p99 µs",
            "native status",
            "native infer/s",
            "native p50 µs",
            "native p99 µs",
            "served/native",
            "served/native 95 %",
            "ratio status",
            "server cores",
            "client cores",
            "server peak MiB",
            "server CPU ms/1k",
            "native CPU ms/1k",
            "serving overhead",
            "client CPU ms/1k",
        )
        .sort(*ID, "batch", "concurrency", nulls_last=True)
    )


def _floor_paths(online: Iterable[Path | str]) -> list[Path]:
    """The serving floor's CSV beside each online CSV (the online job writes both)."""
    return [Path(p).with_name(Path(p).stem + ".floor.csv") for p in online]


def _served_vs_floor(online: pl.DataFrame, floor: pl.DataFrame) -> pl.DataFrame:
    """Per online point, the serving floor at the same concurrency (a model that computes nothing,
    same configuration and runner) and served/floor: near 1, the serving path limits single-sample
    traffic, not the model."""
    if floor.height == 0:
        return pl.DataFrame()
    fl = floor.select(
        *ID,
        "concurrency",
        pl.col("status").alias("floor status"),
        pl.col(Header.THROUGHPUT).alias("floor infer/s"),
        pl.col(Header.P99).alias("floor p99 µs"),
        *_spread_of(floor, "_floor"),
    )
    served = online.select(
        *ID,
        "concurrency",
        pl.col("status").alias("served status"),
        pl.col(Header.THROUGHPUT).alias("served infer/s"),
        pl.col(Header.P99).alias("served p99 µs"),
        *_spread_of(online, "_served"),
    )
    both_ok = (pl.col("served status") == Status.OK) & (pl.col("floor status") == Status.OK)
    return (
        fl.join(served, on=[*ID, "concurrency"], how="full", coalesce=True, nulls_equal=True)
        .with_columns(
            pl.when(both_ok)
            .then(pl.col("served infer/s") / pl.col("floor infer/s"))
            .otherwise(None)
            .alias("served/floor")
        )
        .with_columns(
            pl.when(both_ok)
            .then(_ratio_interval("served infer/s", "_served", "floor infer/s", "_floor"))
            .otherwise(pl.lit(""))
            .alias("served/floor 95 %")
        )
        .drop("_floor n", "_floor cv", "_served n", "_served cv")
        .sort(*ID, "concurrency", nulls_last=True)
    )


def _spread_of(frame: pl.DataFrame, prefix: str) -> list[pl.Expr]:
    """A perf frame's infer_s_n and infer_s_cv (perf.spread_columns) as <prefix> n / cv; nulls
    for results without them."""
    return [
        (pl.col(f"infer_s_{k}") if f"infer_s_{k}" in frame.columns else pl.lit(None, pl.Float64))
        .cast(pl.Float64, strict=False)
        .alias(f"{prefix} {k}")
        for k in ("n", "cv")
    ]


def _ratio_interval(num: str, num_spread: str, den: str, den_spread: str) -> pl.Expr:
    """The 95 % interval of num / den as a text cell (deploysnake.spread.ratio_text), from the two
    figures' columns and their repeats and CVs (<spread> n, <spread> cv)."""
    from .spread import ratio_text

    names = [num, f"{num_spread} n", f"{num_spread} cv", den, f"{den_spread} n", f"{den_spread} cv"]
    return pl.struct(names).map_elements(
        lambda r: ratio_text(*(r[n] for n in names)), return_dtype=pl.String
    )


def _summary(
    corr: pl.DataFrame,
    acc: pl.DataFrame,
    offline: pl.DataFrame,
    online: pl.DataFrame,
    sv: pl.DataFrame,
    floor: pl.DataFrame | None = None,
    failures: pl.DataFrame | None = None,
) -> pl.DataFrame:
    keys = (
        pl.concat([d.select(ID) for d in (acc, offline, online, sv)])
        .drop_nulls(["model", "format"])
        .unique()
    )
    verdict = corr.select(
        "model",
        "format",
        pl.when(pl.col("passed"))
        .then(pl.lit("passed"))
        .otherwise(pl.concat_str(pl.lit("FAILED — not served: "), pl.col("reason").fill_null("")))
        .alias("correctness"),
        # The format's build cost (export, compile) beside its throughput; None: not recorded.
        *([pl.col("build s")] if "build s" in corr.columns else []),
    )
    # Formats that failed correctness have no measurements and thus no device: they keep one row, device empty.
    rows = verdict.join(keys, on=["model", "format"], how="full", coalesce=True)

    metric_text: dict[tuple[str, str, str], list[str]] = {
        (r["model"], r["format"], r["device"]): []
        for r in acc.select(ID).unique().iter_rows(named=True)
    }
    for r in acc.sort(*ID, "metric").iter_rows(named=True):
        metric_text[(r["model"], r["format"], r["device"])].append(
            f"{r['metric']}: {_fmt(r['served'])} (source {_fmt(r['source'])}, Δ {_fmt(r['served_minus_source'])})"
        )
    served_metric = pl.DataFrame(
        [
            {"model": k[0], "format": k[1], "device": k[2], "served vs source": "; ".join(v)}
            for k, v in metric_text.items()
        ],
        schema={
            "model": pl.String,
            "format": pl.String,
            "device": pl.String,
            "served vs source": pl.String,
        },
    )

    def best(df: pl.DataFrame, at: str, name: str, *extra: pl.Expr) -> pl.DataFrame:
        return (
            df.filter(pl.col("status") == Status.OK)
            .drop_nulls(Header.THROUGHPUT)
            .sort(Header.THROUGHPUT, descending=True)
            .group_by(ID, maintain_order=True)
            .first()
            .select(
                *ID,
                pl.col(Header.THROUGHPUT).alias(f"best {name} infer/s"),
                pl.col(at).alias(f"{name} {at}"),
                *extra,
            )
        )

    # The largest batch measured both ways, at its best offline concurrency; a ratio above 1 (or
    # beside a disturbed or suspect baseline) is never a result: its status reads instead.
    common = (
        sv.filter(pl.col("served status") == Status.OK)
        .drop_nulls(["served infer/s", "native infer/s"])
        .sort("batch", "served infer/s", descending=True)
        .group_by(ID, maintain_order=True)
        .first()
        .select(
            *ID,
            pl.when(pl.col("ratio status") == Status.OK)
            .then(pl.col("served/native").map_elements(_fmt, return_dtype=pl.String))
            .otherwise(pl.col("ratio status"))
            .alias("served/native"),
            pl.col("served/native 95 %"),
            pl.col("batch").alias("at batch"),
            pl.col("concurrency").alias("at concurrency"),
        )
    )
    served_failed = (
        (failures if failures is not None else served_failures({}))
        .group_by(ID, maintain_order=True)
        .agg(
            pl.concat_str(
                pl.col("stage"),
                pl.when(pl.col("where") != "")
                .then(pl.concat_str(pl.lit(" ("), pl.col("where"), pl.lit(")")))
                .otherwise(pl.lit("")),
                pl.lit(": "),
                pl.col("reason"),
            )
            .str.join("; ")
            .alias("served stages failed")
        )
    )
    parts = [
        served_metric,
        served_failed,
        best(offline, "batch", "offline"),
        best(online, "concurrency", "online"),
    ]
    parts.append(common)
    if floor is not None and floor.height:
        # The best online point over the floor at its concurrency: near 1, the serving path limits.
        at_best = best(online, "concurrency", "online", *_spread_of(online, "_served")).join(
            floor.filter(pl.col("status") == Status.OK).select(
                *ID,
                pl.col("concurrency").alias("online concurrency"),
                pl.col(Header.THROUGHPUT).alias("floor"),
                *_spread_of(floor, "_floor"),
            ),
            on=[*ID, "online concurrency"],
            how="inner",
            nulls_equal=True,
        )
        parts.append(
            at_best.select(
                *ID,
                (pl.col("best online infer/s") / pl.col("floor")).alias("online served/floor"),
                _ratio_interval("best online infer/s", "_served", "floor", "_floor").alias(
                    "online served/floor 95 %"
                ),
            )
        )
    for part in parts:
        rows = rows.join(part, on=ID, how="left", nulls_equal=True)
    return rows.select(*ID, pl.exclude(ID)).sort(*ID, nulls_last=True)


def served_failures(frames: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """The failure records of the served stages, one row per (model, format, device, stage, where,
    reason): from accuracy/perf/native frames, the rows with status "failed" (a whole stage's
    record, or one perf point: `where` names its batch and concurrency)."""
    schema = {
        "model": pl.String,
        "format": pl.String,
        "device": pl.String,
        "stage": pl.String,
        "where": pl.String,
        "reason": pl.String,
        "log_excerpt": pl.String,
    }
    rows: list[dict[str, Any]] = []
    for name, frame in frames.items():
        if "status" not in frame.columns or not frame.height:
            continue
        for r in frame.filter(pl.col("status") == Status.FAILED).iter_rows(named=True):
            point = (
                f"batch {int(r['batch'])}, concurrency {int(r['concurrency'])}"
                if r.get("batch") is not None and r.get("concurrency") is not None
                else ""
            )
            rows.append(
                {
                    "model": r["model"],
                    "format": r["format"],
                    "device": r["device"],
                    "stage": str(r.get("stage") or name),
                    "where": point,
                    "reason": str(r.get("reason") or MISSING),
                    "log_excerpt": str(r.get("log_excerpt") or ""),
                }
            )
    return pl.DataFrame(rows, schema=schema).unique(maintain_order=True).sort(*ID, "stage")


def failed_keys(failures: pl.DataFrame) -> set[tuple[str, str, str]]:
    """(model, format, device) of every format with a failure in a served stage: never the best."""
    return {(r[0], r[1], r[2]) for r in failures.select(ID).iter_rows()}


def without_failure_records(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """The measurement rows only: a whole stage's failure record (status "failed" with no `key`,
    e.g. no batch) is listed with the failures, not as an empty measurement."""
    if "status" not in frame.columns or key not in frame.columns:
        return frame
    return frame.filter(~((pl.col("status") == Status.FAILED) & pl.col(key).is_null()))


def _no_format_left(
    corr_fmt: pl.DataFrame, failures: pl.DataFrame, models: list[str], devices: list[str]
) -> set[tuple[str, str]]:
    """(model, device) where no format got through: none passed correctness, or every one that did
    failed a served stage on that device."""
    passed = {
        (r[0], r[1])
        for r in corr_fmt.filter(pl.col("passed")).select("model", "format").iter_rows()
    }
    failed = failed_keys(failures)
    return {
        (m, d)
        for m in models
        for d in devices
        if not any((m, f, d) not in failed for model, f in passed if model == m)
    }


def _failures_list(failures: pl.DataFrame) -> str:
    """HTML list of one model's served-stage failures (stage, where, reason, log excerpt)."""
    if not failures.height:
        return ""
    items = "".join(
        f'<li class="bad" data-format="{_e(r["format"])}"><b>{_e(r["format"])}</b> on '
        f"{_e(r['device'])} — {_e(r['stage'])}"
        + (f" ({_e(r['where'])})" if r["where"] else "")
        + f" failed: {_e(r['reason'])}"
        + (
            f"<details><summary>log excerpt</summary><pre>{_e(r['log_excerpt'])}</pre></details>"
            if r["log_excerpt"]
            else ""
        )
        + "</li>"
        for r in failures.iter_rows(named=True)
    )
    return (
        "<p>Failures in the served stages (the format is not chosen as the best; its other "
        f'measurements are shown as measured):</p><ul class="served-failures">{items}</ul>'
    )


# ---------------------------------------------------------------- sections


def _model_section(
    model: str,
    charts: _Charts,
    corr_out: pl.DataFrame,
    corr_fmt: pl.DataFrame,
    acc: pl.DataFrame,
    offline: pl.DataFrame,
    online: pl.DataFrame,
    sv: pl.DataFrame,
    tuned: list[tuple[dict[str, Any], pl.DataFrame]] | None = None,
    floor: pl.DataFrame | None = None,
    failures: pl.DataFrame | None = None,
) -> tuple[str, list[tuple[str, str]]]:
    """(HTML, index entries) for one model: correctness, accuracy, offline, online, served vs native, tuning."""
    mine = [
        d.filter(pl.col("model") == model) for d in (corr_out, corr_fmt, acc, offline, online, sv)
    ]
    c_out, c_fmt, m_acc, m_off, m_on, m_sv = mine
    devices = sorted(
        {d for frame in (m_off, m_on, m_sv) for d in frame["device"].drop_nulls().to_list()}
    )
    sid = {
        k: _anchor(model, k)
        for k in ("model", "correctness", "accuracy", "offline", "online", "native", "tuning")
    }
    parts = [f'<section id="{sid["model"]}"><h2>Model: {_e(model)}</h2>']

    parts.append(
        f'<section id="{sid["correctness"]}"><h3>Correctness against the source model</h3>'
    )
    parts.append(_table(c_out, "correctness"))
    failed = c_fmt.filter(~pl.col("passed"))
    if failed.height:
        items = "".join(
            f'<li class="bad" data-format="{_e(r["format"])}"><b>{_e(r["format"])}</b> — not '
            f"served: {_e(r['reason'] or MISSING)}"
            + (
                f"<details><summary>log excerpt</summary><pre>{_e(r['log_excerpt'])}</pre></details>"
                if r.get("log_excerpt")
                else ""
            )
            + "</li>"
            for r in failed.iter_rows(named=True)
        )
        parts.append(
            "<p>Formats that failed the check (no Triton model, no measurements):</p><ul "
            f'class="not-served">{items}</ul>'
        )
    if failures is not None:
        parts.append(_failures_list(failures.filter(pl.col("model") == model)))
    if c_fmt.height and not c_fmt["passed"].any():
        parts.append(
            '<p class="bad no-format">No format left: every format of this model failed.</p>'
        )
    parts.append("</section>")

    parts.append(f'<section id="{sid["accuracy"]}"><h3>Accuracy: source vs exported vs served</h3>')
    parts.append(_table(m_acc.sort(*ID, "metric", nulls_last=True), "accuracy") + "</section>")

    perf_mask = [
        c
        for c in m_off.columns
        if c not in PERF_TEXT and c not in ("batch", "concurrency") and c not in USAGE
    ]
    parts.append(
        f'<section id="{sid["offline"]}"><h3>Offline (batch sweep; concurrency: requests in '
        'flight)</h3><p class="note">latencies in µs</p>'
    )
    parts.append(
        _table(m_off.sort(*ID, "batch", "concurrency", nulls_last=True), "offline", mask=perf_mask)
    )
    for device in devices:
        parts.append(
            _offline_charts(charts, m_off.filter(pl.col("device") == device), f"{model} · {device}")
        )
    parts.append("</section>")

    on_mask = [
        c
        for c in m_on.columns
        if c not in PERF_TEXT and c not in ("batch", "concurrency") and c not in USAGE
    ]
    parts.append(
        f'<section id="{sid["online"]}"><h3>Online (batch 1, concurrency sweep)</h3><p class="note">latencies in µs</p>'
    )
    parts.append(_table(m_on.sort(*ID, "concurrency", nulls_last=True), "online", mask=on_mask))
    for device in devices:
        parts.append(
            _online_charts(
                charts,
                m_on.filter(pl.col("device") == device),
                f"{model} · {device}",
                None
                if floor is None or not floor.height
                else floor.filter((pl.col("model") == model) & (pl.col("device") == device)),
            )
        )
    m_floor = (
        _served_vs_floor(m_on, floor.filter(pl.col("model") == model))
        if floor is not None and floor.height
        else pl.DataFrame()
    )
    if m_floor.height:
        parts.append(
            '<h4>Serving floor</h4><p class="note">the same sweep against a model with the same inputs '
            "and outputs that computes nothing, served with the same configuration and runner: what the "
            "serving path alone allows here. served/floor near 1: the path, not the model, limits "
            "single-sample traffic</p>"
            + _table(
                m_floor,
                "serving-floor",
                mask=["floor infer/s", "floor p99 µs", "served/floor"],
                status="floor status",
                masks=[("served status", ["served infer/s", "served p99 µs", "served/floor"])],
            )
        )
    parts.append("</section>")

    sv_mask = ["served infer/s", "served p50 µs", "served p99 µs", "server CPU ms/1k"]
    parts.append(
        f'<section id="{sid["native"]}"><h3>Served (Triton, offline) vs native (in-process runtime)</h3>'
        '<p class="note">served/native: Triton throughput over the same artifact run in-process, '
        "same batch, with the served instances and runtime threads; concurrency: requests in "
        "flight to the server. Served above in-process is impossible: above 1 by more than the "
        "spread the native job measured again, and if it persisted it reads baseline suspect. "
        "cores: CPU seconds per second of the window (server tree, perf_analyzer); CPU ms/1k: CPU "
        "time per 1,000 inferences; serving overhead: the server's CPU ms/1k over the runtime's "
        "in-process CPU ms/1k (perf_analyzer's share apart)</p>"
    )
    parts.append(
        _table(
            m_sv,
            "served-vs-native",
            mask=sv_mask,
            status="served status",
            masks=[
                ("native status", ["native infer/s", "native p50 µs", "native p99 µs"]),
                ("ratio status", ["served/native", "serving overhead"]),
            ],
        )
    )
    for device in devices:
        parts.append(
            _native_charts(charts, m_sv.filter(pl.col("device") == device), f"{model} · {device}")
        )
    parts.append("</section>")
    mine_tuned = [t for t in tuned or [] if t[0].get("model") == model]
    if mine_tuned:
        parts.append(
            f'<section id="{sid["tuning"]}"><h3>Tuning: the Triton configuration '
            f"searched</h3>{_tuning_section(charts, model, mine_tuned)}</section>"
        )
    parts.append("</section>")

    index = [
        (sid["correctness"], "Correctness"),
        (sid["accuracy"], "Accuracy"),
        (sid["offline"], "Offline"),
        (sid["online"], "Online"),
        (sid["native"], "Served vs native"),
        *([(sid["tuning"], "Tuning")] if mine_tuned else []),
    ]
    return "\n".join(parts), [(sid["model"], model), *index]


def _load_tuning(paths: list[Path]) -> list[tuple[dict[str, Any], pl.DataFrame]]:
    """(chosen.json, trials.csv) pairs; model, format and device from the folder they sit in."""
    pairs = []
    for chosen_path in sorted(Path(p) for p in paths if Path(p).name == "chosen.json"):
        chosen = json.loads(chosen_path.read_text())
        chosen.update(
            model=chosen_path.parts[-4], format=chosen_path.parts[-3], device=chosen_path.parts[-2]
        )
        trials = pl.read_csv(chosen_path.with_name("trials.csv"), infer_schema_length=None)
        trials = trials.with_columns(pl.col("chosen").cast(pl.String).str.to_lowercase() == "true")
        side = chosen_path.with_name("side_by_side.csv")
        chosen["side_by_side_table"] = (
            pl.read_csv(
                side,
                infer_schema_length=None,
                schema_overrides={"throughput": pl.Float64, "p99_us": pl.Float64},
            )
            if side.exists()
            else None
        )
        pairs.append((chosen, trials))
    return pairs


def _side_by_side_gain(chosen: dict[str, Any]) -> str:
    """What the choice rests on: the side by side's medians against the untuned configuration (with
    their spread, and the trials' ratio beside them), or, without a side by side, the two trial numbers."""
    naive, side = chosen.get("naive_throughput"), chosen.get("side_by_side") or {}
    trial_tput = (
        chosen.get("search_best_throughput")
        if chosen.get("search_best") == chosen["trial"]
        else None
    )
    trial_gain = f"×{trial_tput / naive:.2f}" if naive and trial_tput else ""
    if chosen.get("measured_by") != "side_by_side":
        tput = chosen.get("throughput")
        return (
            f"; ×{tput / naive:.2f} over the untuned configuration ({_e(chosen['naive'])}, "
            f"{naive:,.1f} infer/s), one trial measurement each"
            if naive and tput
            else ""
        )
    mine, untuned = side.get(chosen["trial"], {}), side.get(chosen["naive"], {})
    rounds = max((m["stable_rounds"] for m in side.values()), default=0)
    text = f" (medians of {rounds} round(s) side by side, {len(side)} configuration(s) alternated)"
    if chosen["trial"] == chosen["naive"]:
        text += "; the untuned configuration is the best measured"
    elif untuned.get("throughput"):
        a, b = mine["throughput"], untuned["throughput"]
        text += f"; untuned ({_e(chosen['naive'])}) {b:,.1f} infer/s: <b>×{a / b:.2f}</b>"
        if chosen.get("over_untuned"):  # its interval over the rounds (tuning.gain)
            from .spread import describe_ratio

            text += f" ({_e(describe_ratio(chosen['over_untuned'], 2, 'rounds'))})"
        if (
            mine["min"] <= untuned["max"]
        ):  # the rounds overlap: the gain is within the machine's run-to-run spread
            text += (
                f", within the rounds' spread (chosen {mine['min']:,.0f}–{mine['max']:,.0f}, "
                f"untuned {untuned['min']:,.0f}–{untuned['max']:,.0f})"
            )
        if trial_gain:
            text += f" (the trials, one short measurement each: {trial_gain})"
    else:
        text += f"; the untuned configuration ({_e(chosen['naive'])}) had no stable measurement"
    text += _newcomer_gain(chosen, mine.get("throughput"))
    if chosen.get("search_best") and chosen["search_best"] != chosen["trial"]:
        best = side.get(chosen["search_best"], {})
        again = (
            f"{best['throughput']:,.1f} infer/s" if best.get("throughput") else "no stable number"
        )
        text += (
            f"; the search's best trial, {_e(chosen['search_best'])} "
            f"({chosen['search_best_throughput']:,.1f} infer/s in its trial), measured {again} side by side"
        )
    return text


def _newcomer_gain(chosen: dict[str, Any], tuned: float | None) -> str:
    """Tuned over what a newcomer writes first (seed 003's "before": max_batch_size 1, no dynamic
    batching, one instance), measured in the same side by side; empty where it was not."""
    newcomer = chosen.get("newcomer_throughput")
    if not chosen.get("newcomer") or newcomer is None:
        return ""
    gain = f": <b>×{tuned / newcomer:.2f}</b>" if tuned else ""
    return (
        f"; a newcomer's configuration ({_e(chosen['newcomer'])}: max_batch_size 1, no dynamic "
        f'batching, one instance) <span data-newcomer="{newcomer}">{newcomer:,.1f} infer/s</span>'
        f"{gain}"
    )


def _tuning_section(
    charts: _Charts, model: str, tuned: list[tuple[dict[str, Any], pl.DataFrame]]
) -> str:
    """Per tuned format and device: every trial on throughput vs p99 with the budget line, the chosen
    one highlighted, the trial table, the side-by-side measurements and the chosen config.pbtxt."""
    parts = []
    for chosen, trials in tuned:
        label = f"{model} · {chosen.get('format', '')} · {chosen.get('device', '')}"
        budget = float(chosen["p99_budget_ms"])
        tput = chosen.get("throughput")
        gain = _side_by_side_gain(chosen)
        if chosen.get("trial") is None:
            verdict = '<p class="bad">no trial could be measured</p>'
        elif chosen["within_budget"]:
            verdict = (
                f"<p>chosen: <b>{_e(chosen['trial'])}</b>: {tput:,.1f} infer/s, p99 "
                f"{chosen['p99_us'] / 1000:,.2f} ms{gain}</p>"
            )
        else:
            verdict = (
                f'<p class="bad">no configuration meets p99 ≤ {_e(_fmt(budget))} ms (and ≥ '
                f"{_e(_fmt(chosen['min_throughput']))} infer/s); "
                f"served is the closest trial, <b>{_e(chosen['trial'])}</b> (p99 "
                f"{chosen['p99_us'] / 1000:,.2f} ms, {tput:,.1f} infer/s)</p>"
            )
        parts.append(
            f'<h4>{_e(label)}</h4>{verdict}<p class="note">{_e(chosen["strategy"])}: '
            f"{chosen['measurements']} measurement(s) of a grid of "
            f"{chosen['grid_size']}, then {chosen.get('side_by_side_measurements', 0)} side by side</p>"
        )
        pts = (
            trials.filter(pl.col("status") == Status.OK)
            .drop_nulls(["throughput", "p99_us"])
            .with_columns((pl.col("p99_us") / 1000).alias("p99_ms"))
        )
        chart = None
        if pts.height:
            data = _records(pts.select("trial", "throughput", "p99_ms", "chosen", "round"))
            base = (
                alt.Chart(data)
                .mark_point(filled=True)
                .encode(
                    x=alt.X("p99_ms:Q", title="p99 latency (ms)"),
                    y=alt.Y("throughput:Q", title="inferences/s"),
                    color=alt.Color("chosen:N", title="chosen"),
                    size=alt.condition("datum.chosen", alt.value(200), alt.value(50)),
                    tooltip=[
                        "trial:N",
                        "round:N",
                        alt.Tooltip("throughput:Q", format=",.1f"),
                        alt.Tooltip("p99_ms:Q", format=",.2f"),
                    ],
                )
            )
            rule = (
                alt.Chart(alt.InlineData(values=[{"budget": budget}]))
                .mark_rule(strokeDash=[4, 4], color="red")
                .encode(x="budget:Q")
            )
            chart = (base + rule).properties(width=CHART_WIDTH, height=CHART_HEIGHT)
        parts.append(
            _side_by_side(charts, (chart, f"{label}: trials, throughput vs p99 (budget dashed)"))
        )
        parts.append(_table(trials.drop("chosen"), "tuning", mask=["throughput", "p99_us"]))
        if chosen.get("side_by_side_table") is not None and chosen["side_by_side_table"].height:
            parts.append(
                '<p class="note">side by side: the best trials and the untuned configuration '
                "measured again in alternation, a fresh server each time</p>"
            )
            parts.append(
                _table(
                    chosen["side_by_side_table"],
                    "tuning_side_by_side",
                    mask=["throughput", "p99_us"],
                )
            )
        if chosen.get("config_pbtxt"):
            parts.append(
                "<details><summary>chosen config.pbtxt (deploy/)</summary><pre "
                f'class="config">{_e(chosen["config_pbtxt"])}</pre></details>'
            )
    return "".join(parts)


def _key_values(pairs: Sequence[tuple[str, Any]], name: str) -> str:
    return _table(
        pl.DataFrame({"item": [k for k, _ in pairs], "value": [_fmt_any(v) for _, v in pairs]}),
        name,
    )


def _fmt_any(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_fmt_any(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "; ".join(_fmt_any(v) for v in value) if value else "none"
    return _fmt(value)


def _hardware_table(envs: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """One row per device, as its own node described itself, with the GPU kind's datasheet peaks."""
    from .devices import hardware_row

    rows = [hardware_row(str(env.get("device", "cpu")), env.get("hardware") or {}) for env in envs]
    return (
        pl.DataFrame([{k: _fmt_any(v) for k, v in r.items()} for r in rows])
        if rows
        else pl.DataFrame()
    )


def _environment_section(envs: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> str:
    env = envs[0] if envs else {}
    packages = env.get("packages") or {}
    pkg = pl.DataFrame(
        {"package": [str(k) for k in packages], "version": [_fmt(v) for v in packages.values()]},
        schema={"package": pl.String, "version": pl.String},
    ).sort("package")
    software = [
        ("python", env.get("python")),
        ("platform", env.get("platform")),
        ("deploysnake", env.get("deploysnake")),
        ("git commit", env.get("git_commit")),
    ]
    used = config if config else env.get("config") or {}
    dump = yaml.safe_dump(
        _plain(used), sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return (
        '<section id="environment"><h2>Environment</h2>'
        '<h3>Hardware</h3><p class="note">per device, as described by a job on the node that measured it; '
        "peak figures are the GPU kind's datasheet values (dense)</p>"
        + _table(_hardware_table(envs), "hardware")
        + "<h3>Software</h3>"
        + _key_values(software, "software")
        + "<h3>Package versions</h3>"
        + _table(pkg, "packages")
        + f'<h3>Config used</h3><pre class="config">{_e(dump)}</pre></section>'
    )


# ---------------------------------------------------------------- entry point


def _provenance(frames: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    parts = [
        frame.select(["model", "format", "device", *PROVENANCE])
        .unique()
        .with_columns(pl.lit(stage).alias("stage"))
        for stage, frame in frames.items()
        if frame.height and all(c in frame.columns for c in PROVENANCE)
    ]
    if not parts:
        return pl.DataFrame()
    return (
        pl.concat(parts, how="diagonal_relaxed")
        .select(["model", "format", "device", "stage", *PROVENANCE])
        .sort(["model", "format", "device", "stage"])
    )


def _native_by_point(native: pl.DataFrame | None, column: str) -> dict[tuple[Any, ...], float]:
    """(model, format, device, batch) -> the native rows' `column` where their status is ok."""
    if native is None or column not in native.columns or native.height == 0:
        return {}
    ok = native.filter(pl.col("status").fill_null(Status.OK) == Status.OK).drop_nulls(column)
    return {
        (r["model"], r["format"], r["device"], int(r["batch"])): r[column]
        for r in ok.iter_rows(named=True)
    }


def _native_cpu(native: pl.DataFrame | None) -> dict[tuple[Any, ...], float]:
    """(model, format, device, batch) -> the runtime's in-process CPU ms per 1,000 inferences."""
    return _native_by_point(native, "native_cpu_ms_per_1k")


SPREAD_CELLS = ("infer/s 95 %", "p99 95 % µs", "p99 requests", "served/native 95 %")


def _spread_cells(
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
    from .spread import percentile_support, ratio_text

    n, low, high, cv = (_num(r.get(f"infer_s_{k}")) for k in ("n", "low", "high", "cv"))
    cells = dict.fromkeys(SPREAD_CELLS, "")
    if n and low is not None and high is not None:
        about = [f"n {int(n)}", str(r.get("infer_s_from") or "")]
        if cv is not None:
            about.append(f"CV {100 * cv:.1f} %")
        cells["infer/s 95 %"] = f"{_fmt(low)}-{_fmt(high)} ({', '.join(a for a in about if a)})"
    if native_infer_s and r.get("throughput") and r["throughput"] <= native_infer_s:
        cells["served/native 95 %"] = ratio_text(
            r["throughput"], n, cv, native_infer_s, native_n, native_cv
        )
    p_n, p_low, p_high = (_num(r.get(f"p99_{k}")) for k in ("n", "low", "high"))
    if p_n and p_low is not None and p_high is not None:
        cells["p99 95 % µs"] = f"{_fmt(p_low)}-{_fmt(p_high)} (n {int(p_n)} runs)"
    requests = _num(r.get("requests"))
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


def _native_throughput(native: pl.DataFrame | None) -> dict[tuple[Any, ...], float]:
    """(model, format, device, batch) -> the in-process infer/s where its status is ok."""
    return _native_by_point(native, "throughput_infer_per_s")


def _floor_latencies(perf_csvs: list[Path]) -> dict[tuple[Any, ...], float]:
    """(model, format, device, concurrency) -> the serving floor's latency (µs, the sum of its
    split) at that online point, from the .floor.csv beside each online CSV."""
    floor = _read_csvs([p for p in _floor_paths(perf_csvs) if p.exists()], PERF_TEXT, PERF_NUMBERS)
    if not floor.height:
        return {}
    found = {}
    for r in floor.filter(pl.col("status") == Status.OK).iter_rows(named=True):
        parts = [v for v in (_num(r.get(c)) for c in BREAKDOWN) if v is not None]
        if len(parts) == len(BREAKDOWN):
            found[(r["model"], r["format"], r["device"], int(r["concurrency"]))] = sum(parts)
    return found


def _diagnosis(r: dict[str, Any], floors: dict[tuple[Any, ...], float]) -> str:
    """One line on what limits the best point (deploysnake.spread.diagnose) from its split."""
    from .spread import diagnose

    split = {c: _num(r.get(c)) for c in BREAKDOWN}
    if any(v is None for v in split.values()):
        return ""
    floor = (
        floors.get((r["model"], r["format"], r["device"], int(r["concurrency"])))
        if r["mode"] == "online"
        else None
    )
    server, client = _num(r.get("server_cpu")), _num(r.get("client_cpu"))
    cores = os.cpu_count() or 1
    return diagnose(
        r["mode"],
        {k: float(v) for k, v in split.items() if v is not None},
        floor,
        client,
        max(0.0, cores - (server or 0.0)) if client is not None else None,
    )


def _best_section(
    perf_csvs: list[Path],
    p99_budget_ms: float | None,
    deploy: list[Path],
    native: pl.DataFrame | None = None,
    capacity: pl.DataFrame | None = None,
    excluded: set[tuple[str, str, str]] | None = None,
    expected: set[tuple[str, str]] | None = None,
    measured: set[tuple[str, str]] | None = None,
    over_limit: Mapping[tuple[str, str, str], str] | None = None,
) -> str:
    """First thing in the report: per model and device, the fastest format within the p99 budget,
    among formats with no failure in a served stage (`excluded`: (model, format, device)), with
    infer/s per server core, the serving overhead (server CPU ms per 1,000 inferences over the
    runtime's in-process CPU ms per 1,000 at the same batch) and the server's peak memory, and its
    capacity at the SLA where searched (every searched format's capacity below); each (model,
    device) of `expected` (those with no format left) has a row that says so, and so has each
    of `measured` (those with perf rows) where no point is stable (all unstable, disturbed or left
    out): a model never drops out of the table without a word."""
    from .selection import best, memory_left_out

    budget = 10.0 if p99_budget_ms is None else float(p99_budget_ms)
    rows = best(
        [Path(p) for p in perf_csvs if Path(p).exists()], budget * 1000.0, excluded, over_limit
    )
    in_process = _native_cpu(native)
    native_rate = _native_throughput(native)
    native_n, native_cv = (_native_by_point(native, f"infer_s_{k}") for k in ("n", "cv"))
    floors = _floor_latencies(perf_csvs)

    def native_of(r: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
        if r["mode"] != "offline":
            return None, None, None
        key = (r["model"], r["format"], r["device"], int(r["batch"]))
        return native_rate.get(key), native_n.get(key), native_cv.get(key)

    def per_core(r: dict[str, Any]) -> float | None:
        cores = _num(r.get("server_cpu"))
        return r["throughput"] / cores if cores else None

    def overhead(r: dict[str, Any]) -> float | None:
        cores = _num(r.get("server_cpu"))
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
                "server peak MiB": _num(r.get("server_peak_rss_mb")),
                "input per sample": r.get("input_shapes") or "",
                **_spread_cells(r, *native_of(r)),
                "server batch": _num(r.get("server_batch")),
                "limited by": _diagnosis(r, floors),
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
    capacity_html = ""
    if capacity is not None and capacity.height:
        from .report_capacity import CAPACITY, COST

        cap = capacity.select(*ID, CAPACITY, COST)
        table = (
            table.with_columns(pl.Series("format", [r["format"] for r in rows], pl.String))
            .join(cap, on=ID, how="left", maintain_order="left")
            .drop("format")
        )
        capacity_html = (
            '<p class="note">capacity: the highest open-loop request rate whose p99 stays within '
            "perf.capacity.p99_budget_ms; cost per 1M inferences from cost.per_hour</p>"
            + _table(capacity.drop("capacity p99 µs"), "best_capacity")
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
    archives = "".join(f"<li><code>{_e(p)}</code></li>" for p in deploy)
    return (
        '<section id="best"><h2>Best format per device</h2><p class="note">highest throughput '
        "among stable points of formats that passed correctness and failed no served stage, "
        f"with p99 latency within {_e(_fmt(budget))} ms "
        "(selection.p99_budget_ms); input per sample: the shape "
        "perf_analyzer sent (a sequence's length is its dynamic axis); serving overhead: the "
        "server's CPU time per 1,000 inferences over the same runtime's in-process CPU time per "
        "1,000 at that batch (perf_analyzer's own CPU apart, in the model sections); disturbed "
        "points (foreign load above perf.max_foreign_cpu) are never chosen; infer/s 95 %: the "
        "Student-t interval (n, CV) of perf.repeats runs of the point, else of perf_analyzer's "
        "three stable windows (narrower than between runs), and two formats whose intervals "
        "overlap are within the noise: the simpler is chosen (full precision over reduced, then "
        "fewer instances; 'choice' says so); p99 requests: the requests behind the p99 against "
        "MLPerf Inference's 262,742 (p99 at 99 % confidence, margin 0.05 %), with the range of "
        "percentiles the figure may be at that confidence (n: requests, needs: MLPerf's minimum, "
        "supports: the highest percentile n meets); served/native 95 %: the ratio's interval "
        "(delta method on the log ratio, Welch-Satterthwaite degrees of freedom) from the served "
        "windows or runs and the in-process run's five sub-windows; server batch: inferences per execution "
        "the server ran (Triton's statistics); limited by: the measured latency split"
        f"</p>{_table(table, 'best', links={'model': lambda m: '#' + _anchor(m, 'model')})}"
        + capacity_html
        + (
            "<p>Native Triton model repositories (formats that passed), ready for a production "
            f"Triton:</p><ul>{archives}</ul>"
            if archives
            else ""
        )
        + "</section>"
    )


def _skipped_list(skipped: list[dict[str, str]]) -> str:
    if not skipped:
        return ""
    items = "".join(
        f'<li data-format="{_e(s["format"])}"><b>{_e(s["model"])} / {_e(s["format"])}</b>: {_e(s["reason"])}</li>'
        for s in skipped
    )
    return f'<p>Formats not built on this machine:</p><ul class="skipped">{items}</ul>'


def _page_template() -> jinja2.Template:
    """templates/report.html.j2 (package data): the page's layout, apart from the data code."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("deploysnake", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template("report.html.j2")


def _model_outline(
    model: str, corr_fmt: pl.DataFrame, offline: pl.DataFrame, online: pl.DataFrame
) -> str:
    """One line on a model's (closed) section: formats checked and passed, best throughputs."""
    mine = corr_fmt.filter(pl.col("model") == model)
    passed = mine.filter(pl.col("passed")).height
    text = f"{mine.height} format(s) checked, {passed} passed"
    for mode, frame in (("offline", offline), ("online", online)):
        ok = frame.filter((pl.col("model") == model) & (pl.col("status") == Status.OK))
        ok = ok.drop_nulls(Header.THROUGHPUT).sort(Header.THROUGHPUT, descending=True)
        if ok.height:
            top = ok.row(0, named=True)
            where = f"{top['format']} on {top['device']}"
            text += f"; best {mode}: {where}, {_fmt(top[Header.THROUGHPUT])} infer/s"
    return text


def _packed(section_html: bytes) -> str:
    """A model section's HTML (UTF-8) as report.js unpacks it: gzip (mtime 0, so the page is the
    same for the same results), then base64 (ASCII, safe inside a <script> element)."""
    return base64.b64encode(gzip.compress(section_html, mtime=0)).decode("ascii")


def _json_or_none(path: Path | None) -> Any:
    return json.loads(Path(path).read_text()) if path and Path(path).is_file() else None


def build_report(
    config: dict[str, Any],
    correctness: list[Path],
    accuracy: list[Path],
    offline: list[Path],
    online: list[Path],
    native: list[Path],
    environment: Path | list[Path],
    output: Path,
    skipped: list[dict[str, str]] | None = None,
    p99_budget_ms: float | None = None,
    deploy: list[Path] | None = None,
    tuning: list[Path] | None = None,
    capacity: list[Path] | None = None,
    pack_above: int = PACK_ABOVE_BYTES,
    summary_json: Path | None = None,
    gate_json: Path | None = None,
) -> None:
    """Write one self-contained HTML report (no network needed to view it) to `output`.

    With more than OPEN_MODELS models each model's section is closed until opened; when the closed
    sections' HTML is above `pack_above` bytes (UTF-8) they are stored packed (PACK_ABOVE_BYTES)."""
    corr_out, corr_fmt = _load_correctness(correctness)
    acc = _read_csvs(accuracy, ACCURACY_TEXT, ACCURACY_NUMBERS)
    off = _read_csvs(offline, PERF_TEXT, PERF_NUMBERS)
    on = _read_csvs(online, PERF_TEXT, PERF_NUMBERS)
    nat = _read_csvs(native, NATIVE_TEXT, NATIVE_NUMBERS)
    floor = _read_csvs(
        [p for p in _floor_paths(online) if p.is_file()], [*PERF_TEXT, "served_model"], PERF_NUMBERS
    )
    floor = floor.drop([c for c in PROVENANCE if c in floor.columns])
    env_paths = [environment] if isinstance(environment, (str, Path)) else list(environment)
    envs: list[dict[str, Any]] = [json.loads(Path(p).read_text()) for p in env_paths]
    env = envs[0] if envs else {}
    provenance = _provenance(
        {"accuracy": acc, "perf offline": off, "perf online": on, "native": nat}
    )
    acc, off, on, nat = (
        frame.drop([c for c in PROVENANCE if c in frame.columns]) for frame in (acc, off, on, nat)
    )
    capacities = report_capacity.load(capacity or [])
    failures = served_failures(
        {
            "accuracy": acc,
            "perf_offline": off,
            "perf_online": on,
            "native": nat,
            "capacity": report_capacity.failures(capacities),
        }
    )
    acc, off, on, nat = (
        without_failure_records(frame, key).drop(
            [c for c in ("log_excerpt",) if c in frame.columns]
        )
        for frame, key in ((acc, "metric"), (off, "batch"), (on, "batch"), (nat, "batch"))
    )
    sv = _served_vs_native(off, nat)

    models = sorted(
        {
            m
            for frame in (corr_fmt, acc, off, on, nat)
            for m in frame["model"].drop_nulls().to_list()
        }
    )
    tuned = _load_tuning(tuning or [])
    per_hour = dict((config.get("cost") or {}).get("per_hour") or {})
    capacity_figures = report_capacity.figures(capacities, per_hour)
    charts = _Charts()
    sections: list[dict[str, Any]] = []
    for model in models:
        body, ((mid, name), *subs) = _model_section(
            model, charts, corr_out, corr_fmt, acc, off, on, sv, tuned, floor, failures
        )
        cap_id = _anchor(model, "capacity")
        cap_html = report_capacity.section(
            model,
            capacities,
            per_hour,
            lambda *items: _side_by_side(charts, *items),
            lambda df: _table(df, "capacity"),
            _e,
            cap_id,
            CHART_WIDTH,
            CHART_HEIGHT,
        )
        if cap_html:
            subs.append((cap_id, "Capacity"))
        sections.append(
            {
                "name": name,
                "id": mid,
                "html": Markup(body + cap_html),
                "outline": _model_outline(model, corr_fmt, off, on),
                "index": [{"id": sid, "title": title} for sid, title in subs],
                "packed": None,
            }
        )

    encoded = [str(section["html"]).encode("utf-8") for section in sections]
    unpacked = sum(map(len, encoded))
    packed = len(sections) > OPEN_MODELS and unpacked > pack_above
    if packed:
        for section, body_bytes in zip(sections, encoded, strict=True):
            section["packed"] = _packed(body_bytes)

    summary = _summary(corr_fmt, acc, off, on, sv, floor, failures)
    if capacity_figures.height:
        summary = summary.join(
            capacity_figures.select(*ID, report_capacity.CAPACITY, report_capacity.COST),
            on=ID,
            how="left",
            nulls_equal=True,
            maintain_order="left",
        )
    gate_html = report_gate.gate_section(_json_or_none(gate_json), _e)
    cold, max_memory_mb, over_limit = report_coldstart.figures(accuracy, config)
    plan_html = report_gate.plan_section(_json_or_none(summary_json), _e)
    vl_version, bundle = _vega_bundle()
    page = _page_template().render(
        vl_version=vl_version,
        bundle=Markup(bundle),
        embed_options=Markup(_script_json(EMBED_OPTIONS)),
        deploysnake=_fmt(env.get("deploysnake")),
        git_commit=_fmt(env.get("git_commit")),
        checked=corr_fmt.height,
        models=sections,
        open_models=OPEN_MODELS,
        packed_mb=f"{unpacked / 1e6:.1f}" if packed else None,
        gate=Markup(gate_html + plan_html),
        gate_links=[
            {"id": sid, "title": title}
            for sid, title, html_part in (
                ("gate", "Gate", gate_html),
                ("plan", "Capacity plan", plan_html),
            )
            if html_part
        ],
        best=Markup(
            _best_section(
                offline + online,
                p99_budget_ms,
                deploy or [],
                nat,
                capacity_figures,
                failed_keys(failures),
                _no_format_left(corr_fmt, failures, models, config.get("devices", [])),
                {
                    (r[0], r[1])
                    for frame in (off, on)
                    if frame.height
                    for r in frame.select("model", "device").drop_nulls().iter_rows()
                },
                over_limit,
            )
            + report_coldstart.section(cold, over_limit, max_memory_mb, _e)
        ),
        summary=Markup(_table(summary, "summary")),
        skipped=Markup(_skipped_list(skipped or [])),
        environment=Markup(_environment_section(envs, config)),
        provenance=Markup(_table(provenance, "provenance")),
    )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    log.info("report: %s (%d charts)", output, charts.count)
