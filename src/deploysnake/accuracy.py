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
from tritonclient.utils import np_to_triton_dtype

from .frameworks import source_model
from .plugins import Recipe, pad_concat, validation_batches
from .runtime import ArtifactRuntime
from .server import TritonServer

log = logging.getLogger(__name__)


def infer_served(
    server: TritonServer,
    model_name: str,
    io: dict[str, Any],
    inputs: dict[str, NDArray[Any]],
    timeout_s: float,
) -> dict[str, NDArray[Any]]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        requests = []
        for tensor in io["inputs"]:
            array = np.ascontiguousarray(inputs[tensor["name"]])
            item = grpcclient.InferInput(
                tensor["name"], list(array.shape), np_to_triton_dtype(array.dtype)
            )
            item.set_data_from_numpy(array)
            requests.append(item)
        result = client.infer(model_name, requests, client_timeout=timeout_s)
        return {t["name"]: result.as_numpy(t["name"]) for t in io["outputs"]}
    finally:
        client.close()


def _concat(parts: list[dict[str, NDArray[Any]]]) -> dict[str, NDArray[Any]]:
    return {name: pad_concat([p[name] for p in parts], 0) for name in parts[0]}


def evaluate(
    recipe: Recipe,
    params: dict[str, Any],
    checkpoint: str | Path,
    server: TritonServer,
    model: str,
    fmt: str,
    device: str,
    model_name: str,
    artifact: str | Path,
    io_json: str | Path,
    batch_size: int,
    dump: str | Path,
    output: str | Path,
    framework: str = "torch",
    provenance: dict[str, str] | None = None,
    tolerances: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The validation split through the server; one CSV row per metric (source, exported, served).

    tolerances: the correctness section (atol/rtol per output and format); where the served outputs
    differ from the exported artifact's in-process outputs beyond them, the rows have status
    "failed", stage "accuracy" and the reason (the server computes something else than the artifact
    that passed correctness), and the format is not chosen as the best. Errors through the server
    (tritonclient's InferenceServerException, a response that cannot be read) propagate: the job
    records them as the format's failure (deploysnake.failures)."""
    io = json.loads(Path(io_json).read_text())
    names_in, names_out = [t["name"] for t in io["inputs"]], [t["name"] for t in io["outputs"]]
    source = source_model(framework, recipe, params, checkpoint)
    runtime = ArtifactRuntime(artifact, fmt, names_in, names_out)
    batches = validation_batches(recipe, params, batch_size)
    served, exported, reference, ids, labels = [], [], [], [], []
    for k, batch in enumerate(batches, start=1):
        server.check_alive()
        served.append(infer_served(server, model_name, io, batch["inputs"], timeout_s=60.0))
        exported.append(runtime(batch["inputs"]))
        reference.append(source(batch["inputs"]))
        ids.append(np.asarray(batch["ids"]))
        labels.append(np.asarray(batch["labels"]))
        if k % 10 == 0 or k == len(batches):
            log.info("batch %d of %d sent through the server", k, len(batches))
    all_labels = pad_concat(labels, -1 if np.issubdtype(labels[0].dtype, np.integer) else np.nan)
    outputs = {
        "served": _concat(served),
        "exported": _concat(exported),
        "source": _concat(reference),
    }
    Path(dump).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        dump,
        ids=np.concatenate(ids),
        labels=all_labels,
        **{f"{k}/{n}": v for k, o in outputs.items() for n, v in o.items()},
    )
    metrics = {k: recipe.metrics.compute(o, all_labels) for k, o in outputs.items()}
    diff = max(
        float(
            np.max(
                np.abs(
                    outputs["served"][n].astype(np.float64)
                    - outputs["exported"][n].astype(np.float64)
                ),
                initial=0.0,
            )
        )
        for n in names_out
    )
    differing = _served_differs(outputs, names_out, fmt, tolerances)
    rows = [
        {
            "model": model,
            "format": fmt,
            "device": device,
            "status": "failed" if differing else "ok",
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
        log.warning("%s/%s on %s: %s", model, fmt, device, differing)
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
    from .correctness import compare, tolerance

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


def write_failure(wildcards: Any, failure: Any, csv_path: str | Path, dump: str | Path) -> None:
    """The accuracy outputs as a failure record: the CSV's one row (status "failed", stage, reason,
    log excerpt) and a dump that holds only the reason."""
    from .failures import write_failure_csv

    keys = {"model": wildcards.model, "format": wildcards.format, "device": wildcards.device}
    write_failure_csv(csv_path, keys, "accuracy", failure)
    Path(dump).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(dump, failure=np.asarray(failure.reason))
