"""The tolerance of a comparison of outputs and the comparison itself: the correctness stage's (the
artifact against the source), the accuracy stage's (served against in-process) and the check of
answers under load (deploysnake.underload) use the same bounds and the same rule. Light on imports:
the perf jobs import it."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


def tolerance(settings: dict[str, Any], fmt: str, output: str) -> tuple[float, float]:
    """default, then the output's own, then the format's (a reduced precision needs looser bounds)."""
    tol = {
        **settings["default"],
        **settings.get("outputs", {}).get(output, {}),
        **settings.get("formats", {}).get(fmt, {}),
    }
    return float(tol["atol"]), float(tol["rtol"])


def for_format(settings: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The correctness section (config key correctness) as one format's jobs need it: every key as
    given, `formats` narrowed to this format's own entry ({} where it has none). tolerance() gives
    the same bounds for `fmt` from either; the workflow passes this as a job's params, so a change to
    another format's entry re-runs none of this format's jobs."""
    own = settings.get("formats", {}).get(fmt)
    return {
        **{k: v for k, v in settings.items() if k != "formats"},
        "formats": {} if own is None else {fmt: own},
    }


def compare(
    reference: NDArray[Any], candidate: NDArray[Any], atol: float, rtol: float
) -> dict[str, Any]:
    """numpy.allclose semantics, plus the worst absolute and relative errors so a failure says how far off.
    String tensors (object/str/bytes arrays) pass where every string is equal (errors 0, else inf)."""
    if reference.shape != candidate.shape:
        return {
            "passed": False,
            "max_abs_err": float("inf"),
            "max_rel_err": float("inf"),
            "reason": f"shape {candidate.shape} != source {reference.shape}",
        }
    if reference.dtype.kind in "OSU" or candidate.dtype.kind in "OSU":  # strings: equal or not
        unequal = int(np.count_nonzero(reference.astype(str) != candidate.astype(str)))
        return {
            "passed": unequal == 0,
            "max_abs_err": 0.0 if unequal == 0 else float("inf"),
            "max_rel_err": 0.0 if unequal == 0 else float("inf"),
            **({"reason": f"{unequal} string(s) differ"} if unequal else {}),
        }
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    diff = np.abs(ref - cand)
    rel = diff / np.maximum(np.abs(ref), np.finfo(np.float64).tiny)
    passed = bool(np.all(diff <= atol + rtol * np.abs(ref)))
    return {
        "passed": passed,
        "max_abs_err": float(diff.max(initial=0.0)),
        "max_rel_err": float(rel.max(initial=0.0)),
    }
