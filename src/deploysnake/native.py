"""Native baseline stage: the same artifact run in-process by its runtime at the perf batch sizes,
so the report can show what serving costs (served / native throughput, CPU time per 1,000
inferences).

Each batch size is measured inside a usage Window: a window with foreign CPU load above
perf.max_foreign_cpu is measured once more, then recorded "disturbed". Served faster than in-process
(same artifact, batch and threads) by more than the spread is impossible: the batch size is measured
again, and where it persists the row says "baseline suspect"."""

from __future__ import annotations

import base64
import csv
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import isolated
from .processes import job_cpus, resolve_runtime_threads
from .runtime import ArtifactRuntime
from .shapes import from_served
from .usage import DISTURBED, Window, per_thousand_ms

BASELINE_SUSPECT = "baseline suspect"

log = logging.getLogger(__name__)

NUMPY_RANDOM = {
    "f": lambda rng, shape, dt: rng.random(shape, dtype=np.float32).astype(dt),
    "i": lambda rng, shape, dt: rng.integers(0, 2, shape).astype(dt),
}


def random_inputs(io: dict[str, Any], batch: int | None, seed: int = 0) -> dict[str, NDArray[Any]]:
    """Random data of the served shapes, as perf_analyzer sends by default (dynamic dims: 1).
    batch None: an unbatched model's call, the full dims."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for tensor in io["inputs"]:
        dims = tensor["dims"] if batch is None else [batch, *tensor["dims"][1:]]
        shape = [d if d > 0 else 1 for d in dims]
        dtype = np.dtype(tensor["dtype"])
        inputs[tensor["name"]] = NUMPY_RANDOM.get(dtype.kind, NUMPY_RANDOM["i"])(rng, shape, dtype)
    return inputs


def _decoded(value: dict[str, Any], dtype: np.dtype[Any]) -> NDArray[Any]:
    """One tensor of a perf input data entry as numpy: its "content" (numbers, or strings for a
    BYTES tensor) or its "b64" (the raw little-endian bytes, base64), reshaped to its "shape"."""
    if "b64" in value:
        array = np.frombuffer(base64.b64decode(value["b64"]), dtype)
    elif dtype.kind == "O":  # strings, as the dataloader gave them
        array = np.empty(len(value["content"]), dtype=object)
        array[:] = [str(v) for v in value["content"]]
    else:
        array = np.asarray(value["content"], dtype=dtype)
    return array.reshape(value["shape"])


def sample_batch(io: dict[str, Any], input_data: str | Path, batch: int) -> dict[str, NDArray[Any]]:
    """A batch of `batch` rows of the perf input data (the user's samples that perf_analyzer sends,
    taken in turn and repeated where fewer), in the model's shapes and dtypes."""
    data = json.loads(Path(input_data).read_text())["data"]
    inputs = {}
    for tensor in io["inputs"]:
        dtype = np.dtype(tensor["dtype"])
        rows = [_decoded(data[k % len(data)][tensor["name"]], dtype) for k in range(batch)]
        inputs[tensor["name"]] = from_served(np.stack(rows), tensor, 1)
    return inputs


def whole_sample(io: dict[str, Any], input_data: str | Path) -> dict[str, NDArray[Any]]:
    """An unbatched model's call: the first sample of the perf input data (one whole request, what
    perf_analyzer sends it), in the model's shapes and dtypes."""
    first = json.loads(Path(input_data).read_text())["data"][0]
    inputs = {}
    for tensor in io["inputs"]:
        array = _decoded(first[tensor["name"]], np.dtype(tensor["dtype"]))
        inputs[tensor["name"]] = from_served(array, tensor, 0)
    return inputs


def time_batch(
    runtimes: list[ArtifactRuntime],
    inputs: dict[str, NDArray[Any]],
    window_s: float,
    max_iterations: int,
    samples: int | None = None,
) -> dict[str, float]:
    """Run repeatedly for window_s (bounded by max_iterations too); throughput and latency percentiles.

    One runtime per served instance, each looping in its own thread as Triton's instances do (the
    runtimes release the GIL while they compute), so the baseline has the served configuration's
    parallelism: instances x runtime threads. samples: inferences per call (default: the inputs' axis 0;
    1 for an unbatched model's whole request)."""
    for runtime in runtimes:
        for _ in range(3):  # warm-up: first calls allocate and pick kernels
            runtime(inputs)
    batch = samples if samples is not None else next(iter(inputs.values())).shape[0]
    latencies: list[list[float]] = [[] for _ in runtimes]
    start_line = threading.Barrier(len(runtimes) + 1)
    ends = [0.0] * len(runtimes)
    errors: list[BaseException] = []

    def loop(k: int) -> None:
        start_line.wait()
        start = time.perf_counter()
        try:
            while len(latencies[k]) < max_iterations and time.perf_counter() - start < window_s:
                t0 = time.perf_counter()
                runtimes[k](inputs)
                latencies[k].append(time.perf_counter() - t0)
        except (
            BaseException
        ) as exc:  # re-raised below: a failing runtime must not pass for a slow one
            errors.append(exc)
        ends[k] = time.perf_counter()

    threads = [threading.Thread(target=loop, args=(k,), daemon=True) for k in range(len(runtimes))]
    for thread in threads:
        thread.start()
    start_line.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    elapsed = max(ends) - start
    lat_us = np.concatenate([np.asarray(x) for x in latencies]) * 1e6
    return {
        "throughput_infer_per_s": batch * len(lat_us) / elapsed,
        "p50_latency_us": float(np.percentile(lat_us, 50)),
        "p99_latency_us": float(np.percentile(lat_us, 99)),
        "iterations": len(lat_us),
    }


def measure_batch(
    runtimes: list[ArtifactRuntime],
    inputs: dict[str, NDArray[Any]],
    window_s: float,
    max_iterations: int,
    max_foreign_cpu: float,
    device: str = "cpu",
    samples: int | None = None,
) -> dict[str, Any]:
    """time_batch inside a usage Window; measured once more when the window was disturbed. Adds
    status ("ok" or "disturbed"), the window's columns (foreign_cpu, job_cpu in cores) and
    native_cpu_ms_per_1k: the runtimes' CPU time per 1,000 inferences (ms)."""
    result: dict[str, Any] = {}
    for attempt in (1, 2):
        with Window(None, device) as window:
            result = time_batch(runtimes, inputs, window_s, max_iterations, samples)
        result = {**result, "status": "ok", **window.columns()}
        result["native_cpu_ms_per_1k"] = per_thousand_ms(
            window.result["job_cpu"], result["throughput_infer_per_s"]
        )
        if not window.disturbed(max_foreign_cpu):
            break
        result["status"] = DISTURBED
        log.warning(
            "in-process window disturbed: %.2f core(s) of foreign CPU load (limit %.2f)%s",
            window.result["foreign_cpu"],
            max_foreign_cpu,
            "; measuring again" if attempt == 1 else "; recorded as disturbed",
        )
    return result


def served_best(served_csvs: list[str | Path]) -> dict[int, float]:
    """Per batch, the best stable served offline throughput (infer/s) of perf CSVs."""
    best: dict[int, float] = {}
    for path in served_csvs:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                try:
                    value = float(row.get("Inferences/Second") or "nan")
                    batch = int(row["batch"])
                except (KeyError, ValueError):
                    continue
                if row.get("status") == "ok" and value == value:
                    best[batch] = max(best.get(batch, 0.0), value)
    return best


def measure(
    model: str,
    fmt: str,
    device: str,
    artifact: str | Path,
    io_json: str | Path,
    batch_sizes: list[int],
    threads: int,
    window_s: float,
    max_iterations: int,
    output: str | Path,
    provenance: dict[str, str] | None = None,
    instances: int = 1,
    served: list[str | Path] | None = None,
    spread: float = 0.2,
    max_foreign_cpu: float = 0.25,
    max_batch_size: int = 1,
    input_data: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Rows per batch size: throughput_infer_per_s, p50/p99_latency_us, status, foreign_cpu, job_cpu
    (cores), native_cpu_ms_per_1k, instances, runtime_threads (explicit: 0 becomes the job's CPUs
    over the instances, as in the served runner).

    served: the perf offline CSVs of the same artifact; where one served throughput beats the
    in-process one by more than `spread` (a fraction: perf.stability_percentage / 100), the batch
    size is measured again with windows twice as long, and if it persists the row's status is
    "baseline suspect". max_batch_size 0 (unbatched, as served): one row at batch 1, each call one
    whole sample of the perf input data (input_data) as perf_analyzer sends it."""
    io = json.loads(Path(io_json).read_text())
    unbatched = max_batch_size == 0
    if unbatched:
        batch_sizes = [1]
    names_in, names_out = [t["name"] for t in io["inputs"]], [t["name"] for t in io["outputs"]]
    # The served runner's rule: 0 becomes the job's CPUs over the instances, explicit both ways.
    threads = resolve_runtime_threads(threads, instances, job_cpus())
    isolated.phase(f"loading {artifact} ({fmt})")
    runtimes = [
        ArtifactRuntime(
            artifact, fmt, names_in, names_out, threads, "cpu" if device == "cpu" else "cuda"
        )
        for _ in range(max(1, instances))
    ]
    log.info("in-process: %d instance(s), each %s", len(runtimes), runtimes[0].describe())
    ceiling = served_best(served or [])
    rows = []
    for k, batch in enumerate(batch_sizes, start=1):
        isolated.phase(f"timing batch {batch} in-process ({fmt})")
        if unbatched and input_data:
            inputs, samples = whole_sample(io, input_data), 1
        elif unbatched:  # no perf data: random data of the full dims (dynamic dims: 1)
            inputs, samples = random_inputs(io, None), 1
        elif input_data:  # the user's samples, as perf_analyzer sends them
            inputs, samples = sample_batch(io, input_data, int(batch)), None
        else:
            inputs, samples = random_inputs(io, int(batch)), None
        result = measure_batch(
            runtimes, inputs, window_s, max_iterations, max_foreign_cpu, device, samples
        )
        top = ceiling.get(int(batch))
        if top and top > result["throughput_infer_per_s"] * (1 + spread):
            log.warning(
                "batch %d: served %.0f infer/s beats in-process %.0f by more than the spread "
                "(%.0f %%), which cannot be: measuring in-process again, windows twice as long",
                batch,
                top,
                result["throughput_infer_per_s"],
                100 * spread,
            )
            again = measure_batch(
                runtimes, inputs, 2 * window_s, 2 * max_iterations, max_foreign_cpu, device, samples
            )
            if again["throughput_infer_per_s"] > result["throughput_infer_per_s"]:
                result = again
            if top > result["throughput_infer_per_s"] * (1 + spread):
                result["status"] = BASELINE_SUSPECT
                log.warning(
                    "batch %d: still %.0f in-process against %.0f served: baseline suspect",
                    batch,
                    result["throughput_infer_per_s"],
                    top,
                )
        rows.append(
            {
                "model": model,
                "format": fmt,
                "device": device,
                "batch": int(batch),
                **result,
                "instances": len(runtimes),
                "runtime_threads": threads,
                **(provenance or {}),
            }
        )
        log.info(
            "point %d of %d: batch %d: %.0f infer/s in-process, %d instance(s) (p99 %.0f us), "
            "%s; %.2f core(s), foreign %.2f core(s)",
            k,
            len(batch_sizes),
            batch,
            result["throughput_infer_per_s"],
            len(runtimes),
            result["p99_latency_us"],
            result["status"],
            result["job_cpu"],
            result["foreign_cpu"],
        )
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def measure_isolated(**kwargs: Any) -> None:
    """measure(**kwargs) in a child process (deploysnake.isolated), bounded in time: a runtime that
    raises, crashes the process (SIGSEGV) or hangs raises FormatFailure with the reason and the
    child's log excerpt (the job writes it as the format's failure record)."""
    from .failures import FormatFailure

    batches = len(kwargs["batch_sizes"])
    timeout_s = 300.0 + batches * (3 * float(kwargs["window_s"]) + 60.0)
    kwargs = {k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()}
    outcome = isolated.call("deploysnake.native:measure", kwargs, timeout_s)
    if outcome.failure is not None:
        raise FormatFailure(outcome.failure, outcome.log_excerpt)
