"""The report's sections as HTML: each rendered by its own Jinja2 template (templates/, package data;
autoescape on, so every name and reason from config, CSV or JSON is escaped there) from the frames
(deploysnake.report.frames) and figures (deploysnake.report.charts) of its data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jinja2
import polars as pl
import yaml
from markupsafe import Markup

from .. import usage
from ..contracts import BREAKDOWN, Header, Status
from ..measuring.capacity import cost_per_million, describe
from ..spread import describe_ratio
from .charts import Charts
from .charts import capacity as capacity_charts
from .charts import native as native_charts
from .charts import offline as offline_charts
from .charts import online as online_charts
from .charts import tuning as tuning_charts
from .frames import (
    hardware,
    key_values,
    packages,
    served_vs_floor,
)
from .load import ID, PERF_TEXT, Searched, Tuned
from .text import MARKED, MISSING, anchor, fmt, plain

# What a measured window used (deploysnake.usage): shown for every point, disturbed ones included.
USAGE = [*usage.COLUMNS, *usage.GPU_COLUMNS]
CAPACITY_COLUMNS = [
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
MODEL_SECTIONS = ("correctness", "accuracy", "offline", "online", "native", "tuning", "capacity")
TITLES = {
    "correctness": "Correctness",
    "accuracy": "Accuracy",
    "offline": "Offline",
    "online": "Online",
    "native": "Served vs native",
    "tuning": "Tuning",
    "capacity": "Capacity",
}


@functools.cache
def environment() -> jinja2.Environment:
    """The templates (package data deploysnake/report/templates/), autoescaped, strict."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("deploysnake.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render(template: str, **context: Any) -> Markup:
    """templates/<template> rendered: HTML, safe to place in another template."""
    return Markup(environment().get_template(template).render(**context))


def table_view(
    df: pl.DataFrame,
    name: str,
    *,
    mask: Sequence[str] = (),
    status: str = "status",
    links: Mapping[str, Callable[[Any], str]] | None = None,
    masks: Sequence[tuple[str, Sequence[str]]] = (),
) -> dict[str, Any] | None:
    """A frame as macros.html.j2's table shows it (None: no rows, "no data"): each cell's text,
    CSS class ("num" for numbers, "bad" for FAILED) and link. In rows whose status is "unstable",
    "disturbed" or "baseline suspect" (MARKED) the columns in `mask` read that status instead of
    a figure; `masks` adds more (status column, columns) pairs; a column in `links` links each
    cell to the anchor its function gives."""
    if df.height == 0:
        return None
    pairs = [(status, mask), *masks]
    rows = []
    for row in df.iter_rows(named=True):
        marked = {col: row[by] for by, cols in pairs for col in cols if row.get(by) in MARKED}
        cells = []
        for col in df.columns:
            value = row[col]
            if col in marked:
                cells.append({"cls": MARKED[marked[col]], "text": marked[col], "href": None})
                continue
            text = fmt(value)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            cls = "num" if numeric else "bad" if text.startswith("FAILED") else ""
            href = links[col](value) if links and col in links else None
            cells.append({"cls": cls, "text": text, "href": href})
        rows.append(cells)
    return {"name": name, "columns": df.columns, "rows": rows}


def table(df: pl.DataFrame, name: str, **options: Any) -> Markup:
    """One table as HTML (macros.html.j2), options as table_view's."""
    macros = environment().get_template("macros.html.j2").module
    return Markup(macros.table(table_view(df, name, **options)))  # type: ignore[attr-defined]


def model_ids(model: str) -> dict[str, str]:
    """The anchors of a model's section ("model") and of its sections (MODEL_SECTIONS)."""
    return {k: anchor(model, k) for k in ("model", *MODEL_SECTIONS)}


def _measured_mask(frame: pl.DataFrame) -> list[str]:
    """A perf table's figures (masked in unstable rows): all but text, batch, concurrency, usage."""
    return [
        c
        for c in frame.columns
        if c not in PERF_TEXT and c not in ("batch", "concurrency") and c not in USAGE
    ]


def model_section(
    model: str,
    charts: Charts,
    corr_out: pl.DataFrame,
    corr_fmt: pl.DataFrame,
    acc: pl.DataFrame,
    offline: pl.DataFrame,
    online: pl.DataFrame,
    sv: pl.DataFrame,
    tuned: list[Tuned] | None = None,
    floor: pl.DataFrame | None = None,
    failures: pl.DataFrame | None = None,
    capacity_of: Callable[[], Markup] | None = None,
) -> tuple[Markup, list[tuple[str, str]]]:
    """(HTML, index entries) for one model: correctness, accuracy, offline, online, served vs
    native, tuning, then its capacity section (capacity_of renders it, its charts numbered after
    the model's)."""
    c_out, c_fmt, m_acc, m_off, m_on, m_sv = (
        d.filter(pl.col("model") == model) for d in (corr_out, corr_fmt, acc, offline, online, sv)
    )
    devices = sorted(
        {d for frame in (m_off, m_on, m_sv) for d in frame["device"].drop_nulls().to_list()}
    )
    sid = model_ids(model)
    m_floor = (
        floor.filter(pl.col("model") == model)
        if floor is not None and floor.height
        else pl.DataFrame()
    )
    label = {device: f"{model} · {device}" for device in devices}
    parts = [
        render(
            "correctness.html.j2",
            id=sid["correctness"],
            outputs=table_view(c_out, "correctness"),
            not_served=list(c_fmt.filter(~pl.col("passed")).iter_rows(named=True)),
            failures=[]
            if failures is None
            else list(failures.filter(pl.col("model") == model).iter_rows(named=True)),
            none_left=bool(c_fmt.height and not c_fmt["passed"].any()),
        ),
        render(
            "accuracy.html.j2",
            id=sid["accuracy"],
            table=table_view(m_acc.sort(*ID, "metric", nulls_last=True), "accuracy"),
        ),
        render(
            "offline.html.j2",
            id=sid["offline"],
            table=table_view(
                m_off.sort(*ID, "batch", "concurrency", nulls_last=True),
                "offline",
                mask=_measured_mask(m_off),
            ),
            charts=[
                offline_charts(charts, m_off.filter(pl.col("device") == d), label[d])
                for d in devices
            ],
        ),
    ]
    vs_floor = served_vs_floor(m_on, m_floor) if m_floor.height else pl.DataFrame()
    parts.append(
        render(
            "online.html.j2",
            id=sid["online"],
            table=table_view(
                m_on.sort(*ID, "concurrency", nulls_last=True), "online", mask=_measured_mask(m_on)
            ),
            charts=[
                online_charts(
                    charts,
                    m_on.filter(pl.col("device") == d),
                    label[d],
                    m_floor.filter(pl.col("device") == d) if m_floor.height else None,
                )
                for d in devices
            ],
            floor=table_view(
                vs_floor,
                "serving-floor",
                mask=["floor infer/s", "floor p99 µs", "served/floor"],
                status="floor status",
                masks=[("served status", ["served infer/s", "served p99 µs", "served/floor"])],
            ),
        )
    )
    parts.append(
        render(
            "native.html.j2",
            id=sid["native"],
            table=table_view(
                m_sv,
                "served-vs-native",
                mask=["served infer/s", "served p50 µs", "served p99 µs", "server CPU ms/1k"],
                status="served status",
                masks=[
                    ("native status", ["native infer/s", "native p50 µs", "native p99 µs"]),
                    ("ratio status", ["served/native", "serving overhead"]),
                ],
            ),
            charts=[
                native_charts(charts, m_sv.filter(pl.col("device") == d), label[d]) for d in devices
            ],
        )
    )
    mine_tuned = [t for t in tuned or [] if t[0].get("model") == model]
    if mine_tuned:
        parts.append(tuning_section(charts, model, mine_tuned, sid["tuning"]))
    capacity = capacity_of() if capacity_of else Markup()
    html = render("model.html.j2", id=sid["model"], name=model, parts=parts, capacity=capacity)
    shown = list(MODEL_SECTIONS[:5])
    shown += ["tuning"] if mine_tuned else []
    shown += ["capacity"] if capacity else []
    return html, [(sid["model"], model), *((sid[k], TITLES[k]) for k in shown)]


def side_by_side_gain(chosen: Mapping[str, Any]) -> Markup:
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
            Markup(
                "; ×{:.2f} over the untuned configuration ({}, {:,.1f} infer/s), one trial measurement each"
            ).format(tput / naive, chosen["naive"], naive)
            if naive and tput
            else Markup()
        )
    mine, untuned = side.get(chosen["trial"], {}), side.get(chosen["naive"], {})
    rounds = max((m["stable_rounds"] for m in side.values()), default=0)
    text = Markup(" (medians of {} round(s) side by side, {} configuration(s) alternated)").format(
        rounds, len(side)
    )
    if chosen["trial"] == chosen["naive"]:
        text += Markup("; the untuned configuration is the best measured")
    elif untuned.get("throughput"):
        a, b = mine["throughput"], untuned["throughput"]
        text += Markup("; untuned ({}) {:,.1f} infer/s: <b>×{:.2f}</b>").format(
            chosen["naive"], b, a / b
        )
        if chosen.get("over_untuned"):  # its interval over the rounds (tuning.gain)
            text += Markup(" ({})").format(describe_ratio(chosen["over_untuned"], 2, "rounds"))
        if mine["min"] <= untuned["max"]:  # the rounds overlap: within run-to-run spread
            text += Markup(
                ", within the rounds' spread (chosen {:,.0f}–{:,.0f}, untuned {:,.0f}–{:,.0f})"
            ).format(mine["min"], mine["max"], untuned["min"], untuned["max"])
        if trial_gain:
            text += Markup(" (the trials, one short measurement each: {})").format(trial_gain)
    else:
        text += Markup("; the untuned configuration ({}) had no stable measurement").format(
            chosen["naive"]
        )
    text += newcomer_gain(chosen, mine.get("throughput"))
    if chosen.get("search_best") and chosen["search_best"] != chosen["trial"]:
        best = side.get(chosen["search_best"], {})
        again = (
            f"{best['throughput']:,.1f} infer/s" if best.get("throughput") else "no stable number"
        )
        text += Markup(
            "; the search's best trial, {} ({:,.1f} infer/s in its trial), measured {} side by side"
        ).format(chosen["search_best"], chosen["search_best_throughput"], again)
    return text


def newcomer_gain(chosen: Mapping[str, Any], tuned: float | None) -> Markup:
    """Tuned over what a newcomer writes first (seed 003's "before": max_batch_size 1, no dynamic
    batching, one instance), measured in the same side by side; empty where it was not."""
    newcomer = chosen.get("newcomer_throughput")
    if not chosen.get("newcomer") or newcomer is None:
        return Markup()
    gain = Markup(": <b>×{:.2f}</b>").format(tuned / newcomer) if tuned else Markup()
    return Markup(
        "; a newcomer's configuration ({}: max_batch_size 1, no dynamic batching, one instance) "
        '<span data-newcomer="{}">{:,.1f} infer/s</span>{}'
    ).format(chosen["newcomer"], newcomer, newcomer, gain)


def tuning_section(charts: Charts, model: str, tuned: list[Tuned], section_id: str) -> Markup:
    """Per tuned format and device: every trial on throughput vs p99 with the budget line, the chosen
    one highlighted, the trial table, the side-by-side measurements and the chosen config.pbtxt."""
    entries = []
    for chosen, trials in tuned:
        label = f"{model} · {chosen.get('format', '')} · {chosen.get('device', '')}"
        budget = float(chosen["p99_budget_ms"])
        tput, p99 = chosen.get("throughput"), chosen.get("p99_us")
        side = chosen.get("side_by_side_table")
        entries.append(
            {
                "label": label,
                "trial": chosen.get("trial"),
                "within_budget": chosen.get("within_budget"),
                "throughput": f"{tput:,.1f}" if tput is not None else MISSING,
                "p99_ms": f"{p99 / 1000:,.2f}" if p99 is not None else MISSING,
                "gain": side_by_side_gain(chosen) if chosen.get("trial") is not None else "",
                "budget": fmt(budget),
                "min_throughput": fmt(chosen.get("min_throughput")),
                "strategy": chosen["strategy"],
                "measurements": chosen["measurements"],
                "grid_size": chosen["grid_size"],
                "side_by_side_measurements": chosen.get("side_by_side_measurements", 0),
                "charts": tuning_charts(charts, trials, budget, label),
                "trials": table_view(
                    trials.drop("chosen"), "tuning", mask=["throughput", "p99_us"]
                ),
                "side_by_side": table_view(
                    side, "tuning_side_by_side", mask=["throughput", "p99_us"]
                )
                if side is not None and side.height
                else None,
                "config_pbtxt": chosen.get("config_pbtxt"),
            }
        )
    return render("tuning.html.j2", id=section_id, tuned=entries)


def capacity_section(
    charts: Charts, model: str, loaded: list[Searched], per_hour: Mapping[str, float]
) -> Markup:
    """The model's capacity section (empty without a search): per format and device, the result
    line, the two charts and the table of rates in search order."""
    mine = [(r, rows) for r, rows in loaded if r["model"] == model]
    if not mine:
        return Markup()
    searches = []
    for result, rows in mine:
        label = f"{model} · {result['format']} · {result['device']}"
        cost = cost_per_million(result["capacity_infer_per_s"], dict(per_hour), result["device"])
        failed = result["status"] == Status.FAILED
        searches.append(
            {
                "label": label,
                "line": describe(result),
                "cost": f"{cost:,.4g}" if cost is not None else None,
                "per_hour": f"{per_hour.get(result['device'], 0):g}",
                "failed": failed,
                "capacity": result.get("capacity_rps"),
                "measurements": result.get("measurements"),
                "distribution": result.get("distribution"),
                "batch": result.get("batch"),
                "resolution": f"{result['resolution']:g}" if not failed else "",
                "charts": [] if failed else capacity_charts(charts, result, rows, label),
                "rates": table_view(
                    rows.select([c for c in CAPACITY_COLUMNS if c in rows.columns]), "capacity"
                )
                if rows.height
                else None,
            }
        )
    return render("capacity.html.j2", id=anchor(model, "capacity"), searches=searches)


def best_section(
    table_frame: pl.DataFrame,
    budget_ms: float,
    capacity: pl.DataFrame | None,
    deploy: Sequence[Any],
) -> Markup:
    """The best-format section from best.best_table's frame, the capacity figures and the
    deploy archives' paths."""
    return render(
        "best.html.j2",
        budget=fmt(budget_ms),
        table=table_view(table_frame, "best", links={"model": lambda m: "#" + anchor(m, "model")}),
        capacity=table_view(capacity.drop("capacity p99 µs"), "best_capacity")
        if capacity is not None and capacity.height
        else None,
        deploy=[str(p) for p in deploy],
    )


def environment_section(envs: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> Markup:
    """Hardware per device, software, package versions and the config used."""
    env = envs[0] if envs else {}
    software = [
        ("python", env.get("python")),
        ("platform", env.get("platform")),
        ("deploysnake", env.get("deploysnake")),
        ("git commit", env.get("git_commit")),
    ]
    used = config if config else env.get("config") or {}
    dump = yaml.safe_dump(
        plain(used), sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return render(
        "environment.html.j2",
        hardware=table_view(hardware(envs), "hardware"),
        software=table_view(key_values(software), "software"),
        packages=table_view(packages(env), "packages"),
        config=dump,
    )


def skipped_section(skipped: Sequence[Mapping[str, str]]) -> Markup:
    return render("skipped.html.j2", skipped=list(skipped))
