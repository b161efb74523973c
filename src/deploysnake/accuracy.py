"""Accuracy stage: the validation set through the running server (tritonclient gRPC), outputs
dumped, the recipe's metrics computed beside the source model's and the in-process artifact's."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from numpy.typing import NDArray

from . import dtypes, shapes
from .coldstart import answer_deadline, request_inputs
from .contracts import ServedSettings, Status, Target
from .frameworks import ModelSource
from .plugins import pad_concat, validation_batches
from .runtime import ArtifactRuntime
from .server import TritonServer

log = logging.getLogger(__name__)


def _as_str(array: NDArray[Any]) -> NDArray[Any]:
    """A BYTES output as the runtimes give strings (object arrays of str): tritonclient returns the
    elements as bytes; UTF-8 text is decoded, other bytes are kept as bytes."""
    if array.dtype != np.dtype(object):
        return array

    def text(value: Any) -> Any:
        try:
            return value.decode() if isinstance(value, bytes) else value
        except UnicodeDecodeError:
            return value

    return np.vectorize(text, otypes=[object])(array) if array.size else array


def infer_served(
    server: TritonServer,
    model_name: str,
    io: dict[str, Any],
    inputs: dict[str, NDArray[Any]],
    timeout_s: float,
    max_batch_size: int = 1,
) -> dict[str, NDArray[Any]]:
    """One request of named inputs (the model's shapes); the outputs in the model's shapes, matched
    by name. max_batch_size: the served config's; a tensor declared dims [1] with reshape [] is sent
    with its [1] axis and read back without it (shapes.to_served / from_served).

    Raises FormatFailure (naming triton.request_timeout_s) where no answer came within timeout_s
    seconds; tritonclient's InferenceServerException for any other refusal."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        requests = request_inputs(io, inputs, max_batch_size)
        with answer_deadline(server, model_name, timeout_s):
            result = client.infer(model_name, requests, client_timeout=timeout_s)
        return {
            t["name"]: shapes.from_served(_as_str(result.as_numpy(t["name"])), t, max_batch_size)
            for t in io["outputs"]
        }
    finally:
        client.close()


# The accuracy row of a model given without metrics: served and exported outputs against the source's.
NO_TASK_METRIC = "no task metric given: max abs diff vs source"


def _max_abs_diff(
    got: dict[str, NDArray[Any]], reference: dict[str, NDArray[Any]], names: list[str]
) -> float:
    """The largest absolute difference over every output (float64), 0.0 for identical outputs; a
    string output counts 0.0 where every string is equal, else inf."""
    return max(
        (
            (0.0 if np.array_equal(got[n].astype(str), reference[n].astype(str)) else float("inf"))
            if dtypes.is_string(got[n].dtype) or dtypes.is_string(reference[n].dtype)
            else float(
                np.max(
                    np.abs(got[n].astype(np.float64) - reference[n].astype(np.float64)),
                    initial=0.0,
                )
            )
        )
        for n in names
    )


def _concat(parts: list[dict[str, NDArray[Any]]], io: dict[str, Any]) -> dict[str, NDArray[Any]]:
    """Per-request outputs joined along each output's batch axis (stacked where it has none)."""
    return {
        t["name"]: shapes.join([p[t["name"]] for p in parts], shapes.batch_axis(t))
        for t in io["outputs"]
    }


def evaluate(
    source: ModelSource,
    server: TritonServer,
    target: Target,
    served_settings: ServedSettings,
    artifact: str | Path,
    io_json: str | Path,
    batch_size: int,
    dump: str | Path,
    output: str | Path,
    provenance: dict[str, str] | None = None,
    tolerances: dict[str, Any] | None = None,
    batches: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """`source`'s validation split (its recipe's dataloader) through the server, sent to
    served_settings.model_name as `target`,
    batch_size samples per request (served_settings.max_batch_size 0: each dataloader batch is one
    whole request); writes the dump (.npz: ids, labels and
    <source|exported|served>/<output>) and the metrics CSV (one row per metric: the source
    model's, the exported artifact's in process and the served one's); returns its rows.

    tolerances: the correctness section (atol/rtol per output and format); where the served outputs
    differ from the exported artifact's in-process outputs beyond them, the rows have status
    "failed", stage "accuracy" and the reason (the server computes something else than the artifact
    that passed correctness), and the format is not chosen as the best. Errors through the server
    (tritonclient's InferenceServerException, a response that cannot be read) propagate: the job
    records them as the format's failure (deploysnake.failures). batches: the validation batches
    where the caller has them already (plugins.validation_batches at batch_size)."""
    fmt, model_name = target.format, served_settings.model_name
    io = json.loads(Path(io_json).read_text())
    names_in, names_out = [t["name"] for t in io["inputs"]], [t["name"] for t in io["outputs"]]
    recipe = source.recipe
    run_source = source.runner()
    runtime = ArtifactRuntime(artifact, fmt, names_in, names_out)
    if batches is None:
        batches = validation_batches(recipe, source.params, batch_size)
    served, exported, reference, ids, labels = [], [], [], [], []
    for k, batch in enumerate(batches, start=1):
        server.check_alive()
        served.append(
            infer_served(
                server,
                model_name,
                io,
                batch["inputs"],
                server.request_timeout_s,
                served_settings.max_batch_size,
            )
        )
        exported.append(runtime(batch["inputs"]))
        reference.append(run_source(batch["inputs"]))
        ids.append(np.asarray(batch["ids"]))
        labels.append(np.asarray(batch["labels"]))
        if k % 10 == 0 or k == len(batches):
            log.info("batch %d of %d sent through the server", k, len(batches))
    all_labels = pad_concat(labels, -1 if np.issubdtype(labels[0].dtype, np.integer) else np.nan)
    outputs = {
        "served": _concat(served, io),
        "exported": _concat(exported, io),
        "source": _concat(reference, io),
    }
    Path(dump).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        dump,
        ids=np.concatenate(ids),
        labels=all_labels,
        **{f"{k}/{n}": v for k, o in outputs.items() for n, v in o.items()},
    )
    metrics = {k: recipe.metrics.compute(o, all_labels) for k, o in outputs.items()}
    if not metrics["source"]:
        # No task metric (an exported model given without metrics): how far each is from the source.
        metrics = {
            k: {NO_TASK_METRIC: _max_abs_diff(o, outputs["source"], names_out)}
            for k, o in outputs.items()
        }
    diff = _max_abs_diff(outputs["served"], outputs["exported"], names_out)
    differing = _served_differs(outputs, names_out, fmt, tolerances)
    rows = [
        {
            **target.columns(),
            "status": Status.FAILED if differing else Status.OK,
            "metric": name,
            "source": metrics["source"][name],
            "exported": metrics["exported"][name],
            "served": metrics["served"][name],
            "served_minus_source": metrics["served"][name] - metrics["source"][name],
            "samples": len(all_labels),
            "max_abs_diff_served_vs_exported": diff,
            **({"stage": "accuracy", "reason": differing} if differing else {}),
            **(provenance or {}),
        }
        for name in metrics["source"]
    ]
    with open(output, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if differing:
        log.warning("%s/%s on %s: %s", target.model, fmt, target.device, differing)
    for row in rows:
        log.info(
            "%s: source %.6g, exported %.6g, served %.6g",
            row["metric"],
            row["source"],
            row["exported"],
            row["served"],
        )
    return rows


def _served_differs(
    outputs: dict[str, dict[str, NDArray[Any]]],
    names: list[str],
    fmt: str,
    tolerances: dict[str, Any] | None,
) -> str:
    """ "" when every served output is within the correctness tolerance of the exported artifact's
    in-process output (the same artifact, so only serving can make them differ); else the reason."""
    if tolerances is None:
        return ""
    from .tolerance import compare, tolerance

    problems = []
    for name in names:
        atol, rtol = tolerance(tolerances, fmt, name)
        result = compare(outputs["exported"][name], outputs["served"][name], atol, rtol)
        if not result["passed"]:
            found = result.get("reason") or f"max abs diff {result['max_abs_err']:.3g}"
            problems.append(f"{name}: {found} (atol {atol:g}, rtol {rtol:g})")
    if not problems:
        return ""
    return "served outputs differ from the artifact run in-process: " + "; ".join(problems)


def write_failure(target: Target, failure: Any, csv_path: str | Path, dump: str | Path) -> None:
    """`target`'s accuracy outputs as a failure record: the CSV's one row (status "failed", stage,
    reason, log excerpt) and a dump that holds only the reason."""
    from .failures import write_failure_csv

    write_failure_csv(csv_path, target.columns(), "accuracy", failure)
    Path(dump).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(dump, failure=np.asarray(failure.reason))
