"""Report stage: one self-contained HTML file with correctness, accuracy and Triton performance
per model, format and device (results/report.html).

The package reads in one direction: `load` (the result files as frames and documents) → `frames`
and `best` (the tables, polars) → `charts` (Vega-Lite specs, altair) → `sections` (each section
rendered by its own Jinja2 template in templates/, autoescaped; `gate` the Gate and Plan
sections) → `page` (build_report: the page laid out by templates/page.html.j2). `text` holds the
formatting and escaping every step shares.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .page import OPEN_MODELS, PACK_ABOVE_BYTES, best_html, build_report
    from .sections import side_by_side_gain
    from .text import anchor, script_json

# Each name from the module that defines it, imported when first asked for: the summary, deploy,
# release and gate jobs read report.load and report.frames (polars) and would otherwise import the
# page and its charts (altair), a fresh Python process per job.
_WHERE = {
    "OPEN_MODELS": "page",
    "PACK_ABOVE_BYTES": "page",
    "best_html": "page",
    "build_report": "page",
    "side_by_side_gain": "sections",
    "anchor": "text",
    "script_json": "text",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)


__all__ = [
    "OPEN_MODELS",
    "PACK_ABOVE_BYTES",
    "anchor",
    "best_html",
    "build_report",
    "script_json",
    "side_by_side_gain",
]
