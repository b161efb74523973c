"""The report page: load → frames → charts → sections, laid out by templates/page.html.j2.

The page must open anywhere, offline, years later: the Vega/Vega-Lite/vega-embed bundle is inlined
once and every chart spec carries its data inline.
"""

from __future__ import annotations

import base64
import functools
import gzip
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
from markupsafe import Markup

from .best import best_table
from .charts import EMBED_OPTIONS, Charts, vega_bundle
from .coldstart import figures as coldstart_figures
from .coldstart import section as coldstart_section
from .frames import (
    CAPACITY,
    COST,
    capacity_failures,
    capacity_figures,
    failed_keys,
    model_outline,
    no_format_left,
    provenance,
    served_failures,
    served_vs_native,
    summary,
    without_failure_records,
)
from .gate import gate_section, plan_section
from .load import ID, PROVENANCE, environments, floor_paths, json_or_none
from .load import accuracy as load_accuracy
from .load import capacity as load_capacity
from .load import correctness as load_correctness
from .load import floor as load_floor
from .load import native as load_native
from .load import perf as load_perf
from .load import tuning as load_tuning
from .sections import (
    best_section,
    capacity_section,
    environment_section,
    model_section,
    render,
    skipped_section,
    table,
)
from .text import fmt, script_json

log = logging.getLogger(__name__)

# A report of at most this many models shows every model's section open; with more, each section
# opens on a click and draws its charts then (templates/report.js).
OPEN_MODELS = 3
# Closed model sections whose HTML together exceeds this many bytes are stored packed (gzip, then
# base64) and unpacked by report.js when a section opens: a report of 1,002 variants shrinks from
# about 24.6 MB to about 5.4 MB and its parser builds no closed section at load. Below it (up to
# about 30 models) the sections stay plain HTML, which the browser's find searches and which reads
# without JavaScript. The browser needs DecompressionStream (Chrome 80, Firefox 113, Safari 16.4).
PACK_ABOVE_BYTES = 4_000_000


def packed(section_html: bytes) -> str:
    """A model section's HTML (UTF-8) as report.js unpacks it: gzip (mtime 0, so the page is the
    same for the same results), then base64 (ASCII, safe inside a <script> element)."""
    return base64.b64encode(gzip.compress(section_html, mtime=0)).decode("ascii")


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
    floor: list[Path] | None = None,
) -> None:
    """Write one self-contained HTML report (no network needed to view it) to `output`.

    The inputs are the results' paths by stage (workflow/scripts/report.py); a missing or empty
    one is logged and left out; `floor`: the serving floor's CSVs (None: those beside the online
    CSVs). With more than OPEN_MODELS models each model's section is closed
    until opened; when the closed sections' HTML is above `pack_above` bytes (UTF-8) they are
    stored packed (PACK_ABOVE_BYTES)."""
    corr_out, corr_fmt = load_correctness(correctness)
    acc, off, on = load_accuracy(accuracy), load_perf(offline), load_perf(online)
    nat = load_native(native)
    floor_frame = load_floor(floor_paths(online) if floor is None else floor)
    envs = environments(environment)
    env = envs[0] if envs else {}
    prov = provenance({"accuracy": acc, "perf offline": off, "perf online": on, "native": nat})
    acc, off, on, nat = (
        frame.drop([c for c in PROVENANCE if c in frame.columns]) for frame in (acc, off, on, nat)
    )
    capacities = load_capacity(capacity or [])
    failures = served_failures(
        {
            "accuracy": acc,
            "perf_offline": off,
            "perf_online": on,
            "native": nat,
            "capacity": capacity_failures(capacities),
        }
    )
    acc, off, on, nat = (
        without_failure_records(frame, key).drop(
            [c for c in ("log_excerpt",) if c in frame.columns]
        )
        for frame, key in ((acc, "metric"), (off, "batch"), (on, "batch"), (nat, "batch"))
    )
    sv = served_vs_native(off, nat)

    models = sorted(
        {
            m
            for frame in (corr_fmt, acc, off, on, nat)
            for m in frame["model"].drop_nulls().to_list()
        }
    )
    tuned = load_tuning(tuning or [])
    per_hour = dict((config.get("cost") or {}).get("per_hour") or {})
    cap_figures = capacity_figures(capacities, per_hour)
    charts = Charts()
    sections: list[dict[str, Any]] = []
    for model in models:
        body, ((mid, name), *subs) = model_section(
            model,
            charts,
            corr_out,
            corr_fmt,
            acc,
            off,
            on,
            sv,
            tuned,
            floor_frame,
            failures,
            functools.partial(capacity_section, charts, model, capacities, per_hour),
        )
        sections.append(
            {
                "name": name,
                "id": mid,
                "html": body,
                "outline": model_outline(model, corr_fmt, off, on),
                "index": [{"id": sid, "title": title} for sid, title in subs],
                "packed": None,
            }
        )

    encoded = [str(section["html"]).encode("utf-8") for section in sections]
    unpacked = sum(map(len, encoded))
    is_packed = len(sections) > OPEN_MODELS and unpacked > pack_above
    if is_packed:
        for section, body_bytes in zip(sections, encoded, strict=True):
            section["packed"] = packed(body_bytes)

    summary_frame = summary(corr_fmt, acc, off, on, sv, floor_frame, failures)
    if cap_figures.height:
        summary_frame = summary_frame.join(
            cap_figures.select(*ID, CAPACITY, COST),
            on=ID,
            how="left",
            nulls_equal=True,
            maintain_order="left",
        )
    gate_html = gate_section(json_or_none(gate_json))
    cold, max_memory_mb, over_limit = coldstart_figures(accuracy, config)
    cold_html = coldstart_section(cold, over_limit, max_memory_mb)
    plan_html = plan_section(json_or_none(summary_json))
    budget = 10.0 if p99_budget_ms is None else float(p99_budget_ms)
    measured = {
        (r[0], r[1])
        for frame in (off, on)
        if frame.height
        for r in frame.select("model", "device").drop_nulls().iter_rows()
    }
    best = best_table(
        offline + online,
        budget,
        nat,
        cap_figures.select(*ID, CAPACITY, COST) if cap_figures.height else None,
        failed_keys(failures),
        no_format_left(corr_fmt, failures, models, config.get("devices", [])),
        measured,
        floor_frame,
        over_limit,
    )
    vl_version, bundle = vega_bundle()
    page = render(
        "page.html.j2",
        vl_version=vl_version,
        bundle=Markup(bundle),
        embed_options=Markup(script_json(EMBED_OPTIONS)),
        deploysnake=fmt(env.get("deploysnake")),
        git_commit=fmt(env.get("git_commit")),
        checked=corr_fmt.height,
        models=sections,
        open_models=OPEN_MODELS,
        packed_mb=f"{unpacked / 1e6:.1f}" if is_packed else None,
        gate=gate_html + plan_html,
        gate_links=[
            {"id": sid, "title": title}
            for sid, title, html_part in (
                ("gate", "Gate", gate_html),
                ("plan", "Capacity plan", plan_html),
            )
            if html_part
        ],
        best=best_section(best, budget, cap_figures, deploy or []) + cold_html,
        cold_start=bool(cold_html),
        summary=table(summary_frame, "summary"),
        skipped=skipped_section(skipped or []),
        environment=environment_section(envs, config),
        provenance=table(prov, "provenance"),
    )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    log.info("report: %s (%d charts)", output, charts.count)


def best_html(
    perf_csvs: list[Path],
    p99_budget_ms: float | None,
    deploy: list[Path],
    native: pl.DataFrame | None = None,
    measured: set[tuple[str, str]] | None = None,
    over_limit: Mapping[tuple[str, str, str], str] | None = None,
) -> Markup:
    """The best-format section alone, from perf CSVs (and native rows; `measured` and
    `over_limit` as best.best_table's): as on the page."""
    budget = 10.0 if p99_budget_ms is None else float(p99_budget_ms)
    floor = load_floor(floor_paths(perf_csvs))
    table = best_table(
        perf_csvs, budget, native, measured=measured, floor=floor, over_limit=over_limit
    )
    return best_section(table, budget, None, deploy)
