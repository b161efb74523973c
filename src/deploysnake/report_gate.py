"""The report's Gate and Plan sections (report.py's page) from results/gate.json and
results/summary.json: what changed against the baseline, by how much, whether beyond the
measurements' spread; and the capacity plan for plan.target_rps."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .contracts import Status
from .gate import FAIL, NOISE


def _n(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _html_table(head: list[str], rows: list[list[str]], esc: Callable[[Any], str]) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="gate"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def gate_section(doc: Mapping[str, Any] | None, esc: Callable[[Any], str]) -> str:
    """The Gate section's HTML (id "gate"); "" when there is no gate document."""
    if not doc:
        return ""
    status = doc["status"]
    if status == Status.NO_BASELINE:
        return (
            '<section id="gate"><h2>Gate</h2><p class="note">no baseline given '
            "(config key baseline): nothing compared</p></section>"
        )
    failed = doc["failures"]
    noisy = sum(r["verdict"] == NOISE for r in doc["comparisons"])
    head = (
        f"<p><b>{esc(status.upper())}</b> against {esc(doc['baseline'])}: "
        f"{len(doc['comparisons'])} figures compared, {len(failed)} failed"
        + (f", {noisy} past a threshold within noise" if noisy else "")
        + ".</p>"
    )
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in doc.get("notes") or [])
    rows = [
        [
            r["model"],
            r["format"],
            r["device"],
            r["figure"],
            _n(r["baseline"]),
            _n(r["current"]),
            _n(r["change"]),
            _n(r["threshold"]),
            _n(r["noise"]),
            ("FAIL" if r["verdict"] == FAIL else r["verdict"])
            + (f" ({r['note']})" if r.get("note") else ""),
        ]
        for r in doc["comparisons"]
    ]
    table = _html_table(
        [
            "model",
            "format",
            "device",
            "figure",
            "baseline",
            "this run",
            "change",
            "threshold",
            "noise",
            "verdict",
        ],
        rows,
        esc,
    )
    explain = (
        '<p class="note">change: the difference of a metric (metric units), else this run / '
        "baseline; a figure fails when worse than its threshold (config gate:) and by more than "
        "the noise, the sum of both runs' spreads (perf_analyzer's stability percentage, the "
        "capacity search's bracket, the served-vs-source difference of a metric)</p>"
    )
    return f'<section id="gate"><h2>Gate</h2>{head}{notes}{explain}{table}</section>'


def plan_section(summary: Mapping[str, Any] | None, esc: Callable[[Any], str]) -> str:
    """The Plan section's HTML (id "plan"); "" when no entry has a plan."""
    if not summary:
        return ""
    rows = []
    for e in summary["entries"]:
        p = e.get("plan")
        if not p:
            continue
        cap = e["capacity"] or {}
        rows.append(
            [
                e["model"],
                e["format"],
                e["device"],
                _n(p["target_rps"]),
                _n(cap.get("rps")),
                _n(p["usable_rps"]),
                _n(p["replicas"]),
                _n(p["instances"]),
                _n(p["cost_per_month"]),
            ]
        )
    if not rows:
        return ""
    table = _html_table(
        [
            "model",
            "format",
            "device",
            "target req/s",
            "capacity req/s",
            "usable req/s (less spread)",
            "servers",
            "instances each",
            "cost per month",
        ],
        rows,
        esc,
    )
    return (
        '<section id="plan"><h2>Capacity plan</h2><p class="note">servers (or instances) '
        "serving plan.target_rps at the SLA from the measured capacity less its spread; cost at "
        "cost.per_hour x plan.hours_per_month</p>"
        f"{table}</section>"
    )
