"""Report stage: one self-contained HTML file with correctness, accuracy and Triton performance
per model, format and device (results/report.html).

The package reads in one direction: `load` (the result files as frames and documents) → `frames`
and `best` (the tables, polars) → `charts` (Vega-Lite specs, altair) → `sections` (each section
rendered by its own Jinja2 template in templates/, autoescaped; `gate` the Gate and Plan
sections) → `page` (build_report: the page laid out by templates/page.html.j2). `text` holds the
formatting and escaping every step shares.
"""

from __future__ import annotations

from .page import OPEN_MODELS, PACK_ABOVE_BYTES, best_html, build_report
from .sections import side_by_side_gain
from .text import anchor, script_json

__all__ = [
    "OPEN_MODELS",
    "PACK_ABOVE_BYTES",
    "anchor",
    "best_html",
    "build_report",
    "script_json",
    "side_by_side_gain",
]
