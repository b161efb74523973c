"""The report's charts as Vega-Lite specs (altair): each function takes one model's (and device's)
frames and gives the figures of one section, a figure being a title and either a spec or, where
nothing stable was measured, a note. templates/charts.html.j2 places them; the page draws them
with the vega-embed bundle inlined once (vega_bundle).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import altair as alt
import polars as pl
from markupsafe import Markup

from ..contracts import BREAKDOWN, PERCENTILES, Header, Status
from .text import NO_STABLE, script_json

CHART_WIDTH = 340
CHART_HEIGHT = 210
# Dashes tell offline concurrencies apart (1: one request at a time; 2: transfer overlaps compute).
CONCURRENCY_DASH = alt.StrokeDash("concurrency:N", title="concurrency")
EMBED_OPTIONS = {"renderer": "svg", "actions": False}  # svg so a DOM dump shows the marks

Figure = dict[str, Any]  # title, and id plus spec (inert JSON), or note: what charts.html.j2 shows

# The vega-embed bundle, kept between report jobs (each a fresh process): vl_convert builds it in
# about 1.8 s, the most of a small report's build (cProfile), and always the same for one vl_convert
# and Vega-Lite version, which name the file. DEPLOYSNAKE_VEGA_CACHE where set (the test suite shares
# one for its session), else under the working directory (the project's folder, ignored by git), as
# export.aoti keeps Inductor's cache.
VEGA_CACHE_ENV = "DEPLOYSNAKE_VEGA_CACHE"
VEGA_CACHE = Path(".cache") / "vega"


class Charts:
    """Hands out unique div ids; each chart is a div plus its spec (and data) inline as inert JSON."""

    def __init__(self) -> None:
        self.count = 0

    def figure(
        self, chart: alt.TopLevelMixin | None, title: str, empty_note: str = NO_STABLE
    ) -> Figure:
        """The figure of one chart; None: a note instead (empty_note)."""
        if chart is None:
            return {"title": title, "note": empty_note}
        self.count += 1
        # Our own specs, drawn by the browser tests: validating each against the Vega-Lite schema
        # took about 40 % of a many-model report's build time (cProfile), for no finding.
        spec = chart.to_dict(validate=False)
        # The spec is data, not code: the browser only tokenizes it while it loads the page (running
        # a script per chart made loading a 1,002-variant page about 20 % slower). templates/report.js
        # parses and draws it when its section is open, and leaves a failed embed's error on the div,
        # so a DOM dump (and a reader) sees why.
        return {"title": title, "id": f"chart-{self.count}", "spec": Markup(script_json(spec))}

    def figures(self, *items: tuple[Any, ...]) -> list[Figure]:
        """figure(*item) for each (chart, title[, empty_note])."""
        return [self.figure(*item) for item in items]


def vega_bundle() -> tuple[str, str]:
    """(Vega-Lite version, vega-embed JS bundle) matching altair's schema, as altair's own "inline" HTML does."""
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    vl_version = vl_version_for_vl_convert()
    cached = Path(os.environ.get(VEGA_CACHE_ENV) or VEGA_CACHE) / (
        f"vl-convert-{importlib.metadata.version('vl-convert-python')}-vega-lite-{vl_version}.js"
    )
    try:
        bundle = cached.read_text(encoding="utf-8")
    except OSError:  # none yet (or not readable): built, and kept for the next report job
        # vl_convert's stub marks snippet required; at run time it defaults to the global-window
        # snippet.
        javascript_bundle = cast(Callable[..., str], vlc.javascript_bundle)
        bundle = javascript_bundle(vl_version=vl_version)
        _keep(cached, bundle)
    # The bundle holds no '</script' today; make sure a future one cannot end our <script> early.
    return alt.SCHEMA_VERSION, re.sub(r"</(script)", r"<\\/\1", bundle, flags=re.IGNORECASE)


def _keep(path: Path, text: str) -> None:
    """text written to path whole or not at all (a temporary file renamed over it: a job beside
    this one reads either no file or the whole bundle); a cache that cannot be written is skipped."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # as open() would create it (mkstemp's is 0600)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def records(df: pl.DataFrame) -> alt.Data:
    """Inline chart data; inf/NaN become null (JSON has no such numbers and vega-lite skips nulls)."""
    floats = [c for c, t in df.schema.items() if t.is_float()]
    clean = df.with_columns(
        pl.when(pl.col(c).is_finite()).then(pl.col(c)).otherwise(None).alias(c) for c in floats
    )
    return alt.InlineData(values=clean.to_dicts())


def points(df: pl.DataFrame, cols: Sequence[str]) -> pl.DataFrame:
    """Only status "ok" rows are charted: unstable/error points have no trustworthy numbers."""
    ok = df.filter(pl.col("status") == Status.OK)
    return ok.drop_nulls(list(cols)) if cols else ok


def line_points(
    data: pl.DataFrame, x: alt.X, y: alt.Y, color: str, tooltip: list[Any], **extra: Any
) -> alt.LayerChart:
    base = alt.Chart(records(data)).encode(
        x=x, y=y, color=alt.Color(color), tooltip=tooltip, **extra
    )
    return alt.LayerChart(layer=[base.mark_line(), base.mark_point(filled=True, size=45)])


def offline(charts: Charts, df: pl.DataFrame, label: str) -> list[Figure]:
    """Offline throughput against batch (a line per format, dashes per concurrency) and the latency
    percentiles against batch (one panel per format)."""
    tput = points(df, ["batch", Header.THROUGHPUT]).select(
        "format", "batch", "concurrency", pl.col(Header.THROUGHPUT).alias("throughput")
    )
    chart1 = None
    if tput.height:
        chart1 = line_points(
            tput,
            alt.X("batch:O", title="batch"),
            alt.Y("throughput:Q", title="inferences/s"),
            "format:N",
            ["format:N", "batch:Q", "concurrency:Q", alt.Tooltip("throughput:Q", format=",.1f")],
            strokeDash=CONCURRENCY_DASH,
        ).properties(width=CHART_WIDTH, height=CHART_HEIGHT)
    lat = (
        points(df, ["batch"])
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
        layered = line_points(
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
    return charts.figures(
        (chart1, f"{label}: offline throughput vs batch"),
        (chart2, f"{label}: offline latency percentiles vs batch"),
    )


def online(
    charts: Charts, df: pl.DataFrame, label: str, floor: pl.DataFrame | None = None
) -> list[Figure]:
    """The online sweep's throughput against p99 (one line per format, and where the serving floor
    was measured, its line dashed beside it: "<format> floor") and its latency breakdown."""

    def sweep(frame: pl.DataFrame, suffix: str) -> pl.DataFrame:
        return points(frame, [Header.THROUGHPUT, Header.P99]).select(
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
        base = alt.Chart(records(pts)).encode(
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
        points(df, [])
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
            alt.Chart(records(stack))
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
    return charts.figures(
        (
            chart1,
            f"{label}: online throughput vs p99 latency (labels: concurrency; dashed: the serving "
            "floor, a model that computes nothing served the same way)",
        ),
        (chart2, f"{label}: online latency breakdown per concurrency"),
    )


def native(charts: Charts, df: pl.DataFrame, label: str) -> list[Figure]:
    """Served against native throughput per batch, and their ratio with the line at 1."""
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
        chart1 = line_points(
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
            line_points(
                ratio,
                alt.X("batch:O", title="batch"),
                alt.Y("ratio:Q", title="served / native throughput"),
                "format:N",
                ["format:N", "batch:Q", "concurrency:Q", alt.Tooltip("ratio:Q", format=".3f")],
                strokeDash=CONCURRENCY_DASH,
            ),
            one,
        ).properties(width=CHART_WIDTH, height=CHART_HEIGHT)
    return charts.figures(
        (chart1, f"{label}: served vs native throughput"),
        (
            chart2,
            f"{label}: served / native throughput",
            "no batch size with a stable served and a native run",
        ),
    )


def tuning(charts: Charts, trials: pl.DataFrame, budget_ms: float, label: str) -> list[Figure]:
    """Every stable trial on throughput against p99, the chosen one larger, the budget dashed."""
    pts = (
        trials.filter(pl.col("status") == Status.OK)
        .drop_nulls(["throughput", "p99_us"])
        .with_columns((pl.col("p99_us") / 1000).alias("p99_ms"))
    )
    chart = None
    if pts.height:
        data = records(pts.select("trial", "throughput", "p99_ms", "chosen", "round"))
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
            alt.Chart(alt.InlineData(values=[{"budget": budget_ms}]))
            .mark_rule(strokeDash=[4, 4], color="red")
            .encode(x="budget:Q")
        )
        chart = (base + rule).properties(width=CHART_WIDTH, height=CHART_HEIGHT)
    return charts.figures((chart, f"{label}: trials, throughput vs p99 (budget dashed)"))


def capacity_latency(result: dict[str, Any], rows: pl.DataFrame) -> alt.TopLevelMixin | None:
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


def capacity_breakdown(result: dict[str, Any]) -> alt.TopLevelMixin | None:
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


def capacity(
    charts: Charts, result: dict[str, Any], rows: pl.DataFrame, label: str
) -> list[Figure]:
    """A capacity search's latency against offered rate and its breakdown at the capacity."""
    chart = capacity_latency(result, rows)
    bars = capacity_breakdown(result)
    return charts.figures(
        (
            chart.properties(width=CHART_WIDTH, height=CHART_HEIGHT) if chart is not None else None,
            f"{label}: latency vs offered rate (budget dashed, capacity solid)",
        ),
        (
            bars.properties(width=CHART_WIDTH * 0.8, height=CHART_HEIGHT)
            if bars is not None
            else None,
            f"{label}: latency breakdown at the capacity",
        ),
    )
