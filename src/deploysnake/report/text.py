"""The report's text: figures as short text, ids safe for any model name, JSON safe inside <script>.

Every string from config, CSV or JSON is untrusted (a model name is free text): the templates
escape it (autoescape), and what goes inside a <script> element goes through script_json.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from ..contracts import Status

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
NO_STABLE = "no stable points"


def fmt(value: Any) -> str:
    """3-4 significant digits; large numbers without exponent so throughputs read naturally;
    None, NaN and "" read MISSING, booleans yes/no."""
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


def fmt_any(value: Any) -> str:
    """fmt, with mappings as "k: v, ..." and sequences as "a; b" ("none" when empty)."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {fmt_any(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "; ".join(fmt_any(v) for v in value) if value else "none"
    return fmt(value)


def script_json(obj: Any) -> str:
    """JSON that is safe inside <script>: no '</script', '<!--' or '-->' can survive, whatever a config string holds.

    '<' and '>' become \\u003c / \\u003e (valid in JSON and JS, the way Jinja's tojson does it), a stronger form of
    escaping '</' as '<\\/'; '&' and U+2028/2029 likewise, so the text is inert in any HTML or JS context.
    """
    text = json.dumps(obj, ensure_ascii=True, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def anchor(*parts: str) -> str:
    """A safe, unique id: a readable slug plus a hash, since model names may hold any character."""
    joined = "\x00".join(parts)
    slug = re.sub(r"[^a-z0-9]+", "-", joined.lower()).strip("-")[:40] or "x"
    return f"s-{slug}-{hashlib.sha1(joined.encode()).hexdigest()[:8]}"


def num(value: Any) -> float | None:
    """value as a float; None where it is none, not a number or NaN."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def plain(obj: Any) -> Any:
    """Config as plain YAML-able data (snakemake may hand over Path or other objects)."""
    return json.loads(json.dumps(obj, default=str))
