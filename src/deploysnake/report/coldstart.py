"""The report's "Cold start and memory" section (templates/coldstart.html.j2) and the figures
behind it: per model x format x device, the model's load time and first-request latency without
and with Triton's model_warmup, and the server's memory net of an empty server's, from the files
the accuracy jobs write beside their CSVs (deploysnake.coldstart; read here without tritonclient,
which the report's environment lacks)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from markupsafe import Markup

from ..selection import over_memory

# (heading, field) of the table's figures, in order.
COLUMNS = [
    ("load ms", "load_ms"),
    ("first request ms", "first_request_ms"),
    ("steady ms", "steady_ms"),
    ("load with warmup ms", "load_warmup_ms"),
    ("first request with warmup ms", "first_request_warmup_ms"),
    ("memory net MiB", "memory_net_mb"),
    ("empty server MiB", "memory_empty_mb"),
    ("GPU memory net MiB", "gpu_memory_net_mb"),
]

# The figures summary.json carries per entry (summary.schema.json's cold_start).
SUMMARY_FIELDS = [
    "request_batch",
    "load_ms",
    "first_request_ms",
    "steady_ms",
    "load_warmup_ms",
    "first_request_warmup_ms",
    "warmup_in_repository",
    "memory_empty_mb",
    "memory_net_mb",
    "gpu_memory_net_mb",
]


def path_of(accuracy_csv: str | Path) -> Path:
    """The cold-start file the accuracy job writes beside its CSV: <device>.coldstart.json."""
    return Path(accuracy_csv).with_suffix(".coldstart.json")


def load(accuracy_csvs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The cold-start figures beside each accuracy CSV that has them (results written before the
    measurement existed have none), sorted by model, format, device."""
    found = []
    for csv_path in accuracy_csvs:
        path = path_of(csv_path)
        if path.is_file():
            found.append(json.loads(path.read_text()))
    return sorted(found, key=lambda r: (str(r["model"]), str(r["format"]), str(r["device"])))


def figures(
    accuracy_csvs: Iterable[str | Path], config: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], float, dict[tuple[str, str, str], str]]:
    """(the cold-start rows (load()), selection.max_memory_mb (0: no limit), the targets over it ->
    why (selection.over_memory)) for the report."""
    rows = load(accuracy_csvs)
    limit = float((config.get("selection") or {}).get("max_memory_mb") or 0)
    return rows, limit, over_memory(rows, limit)


def _n(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 10_000 else f"{value:,.0f}"
    return str(value)


def section(
    rows: Sequence[Mapping[str, Any]],
    over_limit: Mapping[tuple[str, str, str], str],
    max_memory_mb: float,
) -> Markup:
    """The section (id "coldstart"); empty without figures. over_limit: (model, format, device)
    over selection.max_memory_mb -> why (selection.over_memory), shown in the row's note."""
    if not rows:
        return Markup()
    gpu = any(r.get("gpu_memory_net_mb") is not None for r in rows)
    columns = [(h, f) for h, f in COLUMNS if gpu or f != "gpu_memory_net_mb"]
    head = ["model", "format", "device", "request batch", *(h for h, _ in columns), "note"]
    body = []
    for r in rows:
        key = (str(r["model"]), str(r["format"]), str(r["device"]))
        notes = [
            r.get("reason") or "",
            f"warmup load failed: {r['warmup_error']}" if r.get("warmup_error") else "",
            over_limit.get(key, ""),
            "the deploy config carries model_warmup" if r.get("warmup_in_repository") else "",
        ]
        body.append(
            [
                *key,
                _n(r.get("request_batch")),
                *(_n(r.get(f)) for _, f in columns),
                "; ".join(n for n in notes if n),
            ]
        )
    limit = (
        f"formats above selection.max_memory_mb ({max_memory_mb:g} MiB) are not chosen"
        if max_memory_mb and max_memory_mb > 0
        else "no memory limit (selection.max_memory_mb 0)"
    )
    from .sections import render  # here: the summary job reads this module, not the charts

    return render("coldstart.html.j2", head=head, rows=body, limit=limit)
