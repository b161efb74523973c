"""Native baseline stage: the same artifact run in-process by its runtime at the perf batch sizes,
so the report can show what serving costs (served / native throughput)."""

from __future__ import annotations

import csv
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .processes import job_cpus, resolve_runtime_threads
from .runtime import ArtifactRuntime

log = logging.getLogger(__name__)

NUMPY_RANDOM = {
    "f": lambda rng, shape, dt: rng.random(shape, dtype=np.float32).astype(dt),
    "i": lambda rng, shape, dt: rng.integers(0, 2, shape).astype(dt),
}


def random_inputs(io: dict[str, Any], batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random data of the served shapes, as perf_analyzer sends by default (dynamic dims: 1)."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for tensor in io["inputs"]:
        shape = [batch] + [d if d > 0 else 1 for d in tensor["dims"][1:]]
        dtype = np.dtype(tensor["dtype"])
        inputs[tensor["name"]] = NUMPY_RANDOM.get(dtype.kind, NUMPY_RANDOM["i"])(rng, shape, dtype)
    return inputs


def time_batch(
    runtimes: list[ArtifactRuntime],
    inputs: dict[str, np.ndarray],
    window_s: float,
    max_iterations: int,
) -> dict[str, float]:
    """Run repeatedly for window_s (bounded by max_iterations too); throughput and latency percentiles.

    One runtime per served instance, each looping in its own thread as Triton's instances do (the
    runtimes release the GIL while they compute), so the baseline has the served configuration's
    parallelism: instances x runtime threads."""
    for runtime in runtimes:
        for _ in range(3):  # warm-up: first calls allocate and pick kernels
            runtime(inputs)
    batch = next(iter(inputs.values())).shape[0]
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
) -> list[dict[str, Any]]:
    io = json.loads(Path(io_json).read_text())
    names_in, names_out = [t["name"] for t in io["inputs"]], [t["name"] for t in io["outputs"]]
    # The served runner's rule: 0 becomes the job's CPUs over the instances, explicit both ways.
    threads = resolve_runtime_threads(threads, instances, job_cpus())
    runtimes = [
        ArtifactRuntime(
            artifact, fmt, names_in, names_out, threads, "cpu" if device == "cpu" else "cuda"
        )
        for _ in range(max(1, instances))
    ]
    log.info("in-process: %d instance(s), each %s", len(runtimes), runtimes[0].describe())
    rows = []
    for k, batch in enumerate(batch_sizes, start=1):
        result = time_batch(runtimes, random_inputs(io, int(batch)), window_s, max_iterations)
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
            "point %d of %d: batch %d: %.0f infer/s in-process, %d instance(s) (p99 %.0f us)",
            k,
            len(batch_sizes),
            batch,
            result["throughput_infer_per_s"],
            len(runtimes),
            result["p99_latency_us"],
        )
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows
