"""Correctness stage: every exported artifact against the source model on real validation batches."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import shapes
from .frameworks import source_model
from .plugins import Recipe, pad_concat, validation_batches
from .runtime import ArtifactRuntime

log = logging.getLogger(__name__)


def tolerance(settings: dict[str, Any], fmt: str, output: str) -> tuple[float, float]:
    """default, then the output's own, then the format's (a reduced precision needs looser bounds)."""
    tol = {
        **settings["default"],
        **settings.get("outputs", {}).get(output, {}),
        **settings.get("formats", {}).get(fmt, {}),
    }
    return float(tol["atol"]), float(tol["rtol"])


def compare(
    reference: NDArray[Any], candidate: NDArray[Any], atol: float, rtol: float
) -> dict[str, Any]:
    """numpy.allclose semantics, plus the worst absolute and relative errors so a failure says how far off."""
    if reference.shape != candidate.shape:
        return {
            "passed": False,
            "max_abs_err": float("inf"),
            "max_rel_err": float("inf"),
            "reason": f"shape {candidate.shape} != source {reference.shape}",
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


def check(
    recipe: Recipe,
    params: dict[str, Any],
    checkpoint: str | Path,
    model_name: str,
    fmt: str,
    artifact: str | Path,
    io_json: str | Path,
    settings: dict[str, Any],
    output: str | Path,
    framework: str = "torch",
) -> dict[str, Any]:
    io = json.loads(Path(io_json).read_text())
    if io.get("status") == "failed":
        return _write(
            output,
            {
                "model": model_name,
                "format": fmt,
                "passed": False,
                "stage": "export",
                "samples": 0,
                "outputs": {},
                "reason": f"export failed: {io['error']}",
                "log_excerpt": io.get("log_excerpt", ""),
            },
        )
    source = source_model(framework, recipe, params, checkpoint)
    runtime = ArtifactRuntime(
        artifact, fmt, [t["name"] for t in io["inputs"]], [t["name"] for t in io["outputs"]]
    )
    worst: dict[str, dict[str, Any]] = {}
    batches = validation_batches(
        recipe, params, int(settings["batch_size"]), limit=int(settings["batches"])
    )
    refs, gots = [], []
    for batch in batches:
        ref = source(batch["inputs"])
        got = runtime(batch["inputs"])
        refs.append(ref)
        gots.append(got)
        for name in recipe.output_names:
            atol, rtol = tolerance(settings, fmt, name)
            result = compare(ref[name], got[name], atol, rtol)
            prev = worst.get(name)
            worst[name] = {
                "atol": atol,
                "rtol": rtol,
                "passed": result["passed"] and (prev is None or prev["passed"]),
                "max_abs_err": max(result["max_abs_err"], prev["max_abs_err"] if prev else 0.0),
                "max_rel_err": max(result["max_rel_err"], prev["max_rel_err"] if prev else 0.0),
                **({"reason": result["reason"]} if "reason" in result else {}),
            }
    # The task metric on the same batches: what a reduced precision costs, beside the raw errors.
    labels = pad_concat(
        [np.asarray(b["labels"]) for b in batches],
        -1 if np.issubdtype(np.asarray(batches[0]["labels"]).dtype, np.integer) else np.nan,
    )
    # Joined along each output's batch axis; an output without one (one value per call) is stacked.
    axes = {t["name"]: shapes.batch_axis(t) for t in io["outputs"]}
    joined = [
        {n: shapes.join([part[n] for part in parts], axes.get(n, 0)) for n in recipe.output_names}
        for parts in (refs, gots)
    ]
    metrics = {
        name: {"source": value, "artifact": recipe.metrics.compute(joined[1], labels)[name]}
        for name, value in recipe.metrics.compute(joined[0], labels).items()
    }
    passed = all(o["passed"] for o in worst.values())
    failing = [n for n, o in worst.items() if not o["passed"]]
    report = {
        "model": model_name,
        "format": fmt,
        "passed": passed,
        "stage": "correctness",
        "samples": int(sum(len(b["ids"]) for b in batches)),
        "metrics": metrics,
        "outputs": worst,
        "reason": ""
        if passed
        else "; ".join(
            f"{n}: max abs err {worst[n]['max_abs_err']:.3g} (atol {worst[n]['atol']:g}), max rel "
            f"err {worst[n]['max_rel_err']:.3g} (rtol {worst[n]['rtol']:g})"
            for n in failing
        ),
    }
    return _write(output, report)


def _write(output: str | Path, verdict: dict[str, Any]) -> dict[str, Any]:
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(verdict, indent=2) + "\n")
    if verdict["passed"]:
        log.info("%s: passed", verdict["format"])
    else:
        log.warning(
            "%s/%s is not served: %s", verdict["model"], verdict["format"], verdict["reason"]
        )
    return verdict


def collect(verdicts: list[str | Path], output: str | Path) -> dict[str, Any]:
    """One model's verdicts in one file: which formats go on to serving, which stop and why."""
    docs = [json.loads(Path(p).read_text()) for p in verdicts]
    summary = {
        "passed": [d["format"] for d in docs if d["passed"]],
        "failed": {d["format"]: d["reason"] for d in docs if not d["passed"]},
    }
    Path(output).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
