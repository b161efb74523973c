"""Correctness stage: every exported artifact against the source model on real validation batches."""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import isolated, shapes, sources
from .contracts import Status
from .formats import FORMATS
from .frameworks import ModelSource, source_model
from .plugins import Recipe, load_recipe, pad_concat, validation_batches
from .runtime import ArtifactRuntime
from .tolerance import compare, tolerance

log = logging.getLogger(__name__)


def runtime_name(fmt: str) -> str:
    """The runtime that reads a format ("onnx_fp16" -> "onnxruntime"), for messages; the format's
    own name where the registry (formats.FORMATS) has no such format."""
    return FORMATS[fmt].runtime if fmt in FORMATS else fmt


def check(
    source: ModelSource,
    model_name: str,
    fmt: str,
    artifact: str | Path,
    io_json: str | Path,
    settings: dict[str, Any],
    output: str | Path,
) -> dict[str, Any]:
    """The verdict of one model x format, written to `output` (JSON) and returned. settings: the
    correctness section (tolerances, batches, timeout_s).

    The child process rebuilds the recipe from source.settings (the model's config entry: an
    exported source's recipe has no files to load), else from the recipe's files.

    The artifact runs in a child process (deploysnake.isolated) bounded by `settings["timeout_s"]`
    (default 600 s): an exception, a crash of the runtime (SIGSEGV) or a timeout is a failed verdict
    with its reason and a log excerpt, never a failed job. Keys: model, format, passed, stage
    ("export" or "correctness"), samples, outputs {name: atol, rtol, passed, max_abs_err,
    max_rel_err[, nonfinite, reason]}, metrics {metric: {source, artifact}}, reason,
    build_seconds (the export's wall time from io.json; None where it was not recorded), and where
    found source_nondeterministic {output: max abs diff of two source runs}, warnings [str],
    log_excerpt."""
    model_settings = source.settings
    io = json.loads(Path(io_json).read_text())
    base = {"model": model_name, "format": fmt, "passed": False, "samples": 0, "outputs": {}}
    if io.get("status") == Status.FAILED:
        return _write(
            output,
            {
                **base,
                "stage": "export",
                "reason": f"export failed: {io['error']}",
                "log_excerpt": io.get("log_excerpt", ""),
            },
        )
    # With the model's settings the child rebuilds the recipe from them, so this process never
    # imports the model's code (nor torch: seconds per job); a recipe given as such is passed by
    # its files.
    if model_settings:
        folder, files = "", {}
    else:
        folder = str(source.recipe.folder)
        files = {
            kind: str(getattr(source.recipe, kind).__file__)
            for kind in ("model", "dataloader", "metrics")
        }
    outcome = isolated.call(
        "deploysnake.correctness:compare_artifact",
        {
            "recipe_folder": folder,
            "recipe_files": files,
            "model_settings": model_settings,
            "params": source.params,
            "checkpoint": str(source.checkpoint),
            "model_name": model_name,
            "fmt": fmt,
            "artifact": str(artifact),
            "io": io,
            "settings": settings,
            "framework": source.framework,
        },
        float(settings.get("timeout_s", 600)),
    )
    if outcome.failure is not None:
        return _write(
            output,
            {
                **base,
                "stage": "correctness",
                "reason": outcome.failure,
                "log_excerpt": outcome.log_excerpt,
            },
        )
    return _write(output, {**outcome.result, "build_seconds": io.get("build_seconds")})


def _shapes(inputs: dict[str, Any]) -> str:
    """{"tokens": array (64, 24)} -> "tokens:64x24"."""
    return " ".join(
        f"{n}:{'x'.join(map(str, getattr(a, 'shape', np.shape(a))))}" for n, a in inputs.items()
    )


def aliased_examples(recipe: Recipe) -> list[str]:
    """Warnings for example inputs that share memory (example_inputs() returning one tensor under
    two names): a tracer or exporter sees one tensor where the model has two inputs."""
    example = recipe.model.example_inputs(2)
    import torch  # torch models only: the Snakefile and keras runs start without it

    tensors = [(n, t) for n, t in example.items() if isinstance(t, torch.Tensor)]
    warnings = []
    for i, (name_a, a) in enumerate(tensors):
        for name_b, b in tensors[i + 1 :]:
            if a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr():
                warnings.append(
                    f"example inputs {name_a} and {name_b} share memory (example_inputs() returns "
                    "the same tensor twice): the tracer and the exporter see one tensor; return "
                    "separate tensors (e.g. .clone())"
                )
    return warnings


def _frozen_axes(
    recipe: Recipe, output: str, reference: tuple[int, ...], got: tuple[int, ...]
) -> str:
    """ " (the export fixed `sequence` to 12)" when an output's dynamic axis has the example's size
    where the source's differs; "" otherwise."""
    example = {n: tuple(t.shape) for n, t in recipe.model.example_inputs(2).items()}
    sizes = {
        dim: example[name][axis]
        for name, axes in recipe.dynamic_axes.items()
        if name in example
        for axis, dim in axes.items()
        if axis < len(example[name])
    }
    frozen = [
        f"`{dim}` to {sizes[dim]}"
        for axis, dim in recipe.dynamic_axes.get(output, {}).items()
        if dim in sizes
        and axis < min(len(got), len(reference))
        and got[axis] == sizes[dim] != reference[axis]
    ]
    return f" (the export fixed {', '.join(frozen)}, the example's length)" if frozen else ""


def _max_diff(a: dict[str, NDArray[Any]], b: dict[str, NDArray[Any]]) -> dict[str, float]:
    """Per output, the largest absolute difference of two runs (inf where the shapes differ)."""
    diffs = {}
    for name in a:
        x, y = np.asarray(a[name], np.float64), np.asarray(b[name], np.float64)
        diffs[name] = (
            float(np.nanmax(np.abs(x - y), initial=0.0)) if x.shape == y.shape else float("inf")
        )
    return diffs


def compare_artifact(
    recipe_folder: str,
    recipe_files: dict[str, str],
    params: dict[str, Any],
    checkpoint: str,
    model_name: str,
    fmt: str,
    artifact: str,
    io: dict[str, Any],
    settings: dict[str, Any],
    framework: str,
    model_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run in the child process of check(): the artifact against the source on the validation
    batches (their real, varied lengths), the source twice on the first batch (is it
    deterministic?), and non-finite values where the source is finite (a reduced precision that
    overflowed)."""
    recipe = (
        sources.load_settings(model_settings)
        if model_settings
        else load_recipe(recipe_folder, recipe_files)
    )
    runtime_label = runtime_name(fmt)
    isolated.phase("loading the source model")
    source = source_model(framework, recipe, params, checkpoint)
    warnings = aliased_examples(recipe) if framework == "torch" else []
    batches = validation_batches(
        recipe, params, int(settings["batch_size"]), limit=int(settings["batches"])
    )
    example = _shapes(recipe.model.example_inputs(2))
    isolated.phase("running the source model twice on validation batch 1")
    first, again = source(batches[0]["inputs"]), source(batches[0]["inputs"])
    varies = {n: d for n, d in _max_diff(first, again).items() if d > 0}
    isolated.phase(f"loading {artifact} with {runtime_label} (session creation)")
    runtime = ArtifactRuntime(
        artifact, fmt, [t["name"] for t in io["inputs"]], [t["name"] for t in io["outputs"]]
    )
    base = {"model": model_name, "format": fmt, "stage": "correctness", "warnings": warnings}
    worst: dict[str, dict[str, Any]] = {}
    refs, gots = [], []
    for k, batch in enumerate(batches, start=1):
        sent = _shapes(batch["inputs"])
        ref = first if k == 1 else source(batch["inputs"])
        isolated.phase(
            f"running validation batch {k} of {len(batches)} ({sent}) with {runtime_label}"
        )
        try:
            got = runtime(batch["inputs"])
        except Exception as exc:  # the artifact cannot take real inputs: that is the verdict
            message = " ".join(str(exc).split())[:1500]
            return {
                **base,
                "passed": False,
                "samples": 0,
                "outputs": {},
                "reason": f"{runtime_label} fails on validation batch {k} ({sent}; the export "
                f"example was {example}): {type(exc).__name__}: {message}"
                + "".join(f"; {w}" for w in warnings),
                "log_excerpt": traceback.format_exc()[-4000:],
            }
        refs.append(ref)
        gots.append(got)
        for name in recipe.output_names:
            atol, rtol = tolerance(settings, fmt, name)
            result = compare(ref[name], got[name], atol, rtol)
            if "reason" in result:
                result["reason"] += _frozen_axes(
                    recipe, name, np.shape(ref[name]), np.shape(got[name])
                )
            else:
                nonfinite = int(
                    np.sum(~np.isfinite(np.asarray(got[name], np.float64)) & np.isfinite(ref[name]))
                )
                if nonfinite:
                    result["passed"] = False
                    result["nonfinite"] = nonfinite
            prev = worst.get(name)
            worst[name] = {
                "atol": atol,
                "rtol": rtol,
                "passed": result["passed"] and (prev is None or prev["passed"]),
                "max_abs_err": max(result["max_abs_err"], prev["max_abs_err"] if prev else 0.0),
                "max_rel_err": max(result["max_rel_err"], prev["max_rel_err"] if prev else 0.0),
                "nonfinite": result.get("nonfinite", 0) + (prev["nonfinite"] if prev else 0),
                **({"reason": result["reason"]} if "reason" in result else {}),
                **({"reason": prev["reason"]} if prev and "reason" in prev else {}),
            }
    metrics = _metrics(recipe, batches, refs, gots, io)
    failing = [n for n, o in worst.items() if not o["passed"]]
    reasons = [_output_reason(fmt, n, worst[n]) for n in failing]
    verdict: dict[str, Any] = {
        **base,
        "passed": not failing and not varies,
        "samples": int(sum(len(b["ids"]) for b in batches)),
        "metrics": metrics,
        "outputs": worst,
    }
    if varies:
        isolated.phase(f"running {artifact} twice on validation batch 1 with {runtime_label}")
        artifact_varies = {
            n: d for n, d in _max_diff(runtime(batches[0]["inputs"]), gots[0]).items() if d > 0
        }
        verdict["source_nondeterministic"] = varies
        verdict["artifact_nondeterministic"] = artifact_varies
        metric_text = ", ".join(
            f"{m}: source {v['source']:.4g}, artifact {v['artifact']:.4g}"
            for m, v in metrics.items()
        )
        reasons = [
            "the source model is not deterministic: two runs on the same validation batch differ ("
            + ", ".join(f"{n}: max abs diff {d:.3g}" for n, d in varies.items())
            + "), so no element-wise check can pass the artifact; the artifact "
            + (
                "varies too ("
                + ", ".join(f"{n}: {d:.3g}" for n, d in artifact_varies.items())
                + ")"
                if artifact_varies
                else "gives the same output on every run (the randomness is gone)"
            )
            + (f"; task metric on these batches: {metric_text}" if metric_text else "")
        ]
    verdict["reason"] = "; ".join(reasons + (warnings if reasons else []))
    return verdict


def _output_reason(fmt: str, name: str, result: dict[str, Any]) -> str:
    if "reason" in result:
        return f"{name}: {result['reason']}"
    text = (
        f"{name}: max abs err {result['max_abs_err']:.3g} (atol {result['atol']:g}), "
        f"max rel err {result['max_rel_err']:.3g} (rtol {result['rtol']:g})"
    )
    if result.get("nonfinite"):
        text += f"; {result['nonfinite']} value(s) inf or nan where the source is finite" + (
            " (fp16 overflow: its largest value is 65504)" if "fp16" in fmt else ""
        )
    return text


def _metrics(
    recipe: Recipe,
    batches: list[dict[str, Any]],
    refs: list[dict[str, NDArray[Any]]],
    gots: list[dict[str, NDArray[Any]]],
    io: dict[str, Any],
) -> dict[str, dict[str, float]]:
    """The task metric on the same batches: what a reduced precision costs, beside the raw errors;
    {} where the artifact's outputs cannot be joined or scored (another shape than the source's)."""
    labels = pad_concat(
        [np.asarray(b["labels"]) for b in batches],
        -1 if np.issubdtype(np.asarray(batches[0]["labels"]).dtype, np.integer) else np.nan,
    )
    # Joined along each output's batch axis; an output without one (one value per call) is stacked.
    axes = {t["name"]: shapes.batch_axis(t) for t in io["outputs"]}
    try:
        joined = [
            {
                n: shapes.join([part[n] for part in parts], axes.get(n, 0))
                for n in recipe.output_names
            }
            for parts in (refs, gots)
        ]
        artifact = recipe.metrics.compute(joined[1], labels)
        return {
            name: {"source": value, "artifact": artifact[name]}
            for name, value in recipe.metrics.compute(joined[0], labels).items()
        }
    except Exception as exc:  # a shape the metric cannot take: the per-output reasons say why
        log.warning("metrics not computed: %s", exc)
        return {}


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
