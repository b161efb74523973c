"""The report's Gate and Plan sections from results/gate.json and results/summary.json: what
changed against the baseline, by how much, whether beyond the measurements' spread; and the
capacity plan for plan.target_rps. Rendered by templates/gate.html.j2 and plan.html.j2."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from markupsafe import Markup

from ..contracts import Status
from ..gate import FAIL, NOISE
from .sections import render
from .text import MISSING


def _n(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:,.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


GATE_HEAD = [
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
]
PLAN_HEAD = [
    "model",
    "format",
    "device",
    "target req/s",
    "capacity req/s",
    "usable req/s (less spread)",
    "servers",
    "instances each",
    "cost per month",
]


def gate_section(doc: Mapping[str, Any] | None) -> Markup:
    """The Gate section (id "gate") from results/gate.json; empty without one."""
    if not doc:
        return Markup()
    if doc["status"] == Status.NO_BASELINE:
        return render("gate.html.j2", no_baseline=True)
    rows = [
        [
            *(r[k] for k in ("model", "format", "device", "figure")),
            *(_n(r[k]) for k in ("baseline", "current", "change", "threshold", "noise")),
            ("FAIL" if r["verdict"] == FAIL else r["verdict"])
            + (f" ({r['note']})" if r.get("note") else ""),
        ]
        for r in doc["comparisons"]
    ]
    return render(
        "gate.html.j2",
        no_baseline=False,
        status=str(doc["status"]).upper(),
        baseline=doc["baseline"],
        compared=len(doc["comparisons"]),
        failed=len(doc["failures"]),
        noisy=sum(r["verdict"] == NOISE for r in doc["comparisons"]),
        notes=doc.get("notes") or [],
        head=GATE_HEAD,
        rows=rows,
    )


def plan_section(summary: Mapping[str, Any] | None) -> Markup:
    """The Plan section (id "plan") from results/summary.json; empty when no entry has a plan."""
    if not summary:
        return Markup()
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
                *(_n(v) for v in (p["target_rps"], cap.get("rps"), p["usable_rps"])),
                *(_n(p[k]) for k in ("replicas", "instances", "cost_per_month")),
            ]
        )
    return render("plan.html.j2", head=PLAN_HEAD, rows=rows) if rows else Markup()
