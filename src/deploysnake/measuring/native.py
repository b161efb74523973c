"""Native baseline stage: the same artifact run in-process by its runtime at the perf batch sizes,
so the report can show what serving costs (served / native throughput, CPU time per 1,000
inferences).

Each batch size is measured inside a usage Window: a window with foreign CPU load above
perf.max_foreign_cpu is measured once more, then recorded "disturbed". Served faster than in-process
(same artifact, batch and threads) by more than the spread is impossible: the batch size is measured
again, and where it persists the row says "baseline suspect"."""

from __future__ import annotations

import csv
import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import isolated, perfdata
from ..contracts import Header, ServedSettings, Status, Target
from ..perfdata import describe_shapes, read_samples, served_shapes
from ..processes import job_cpus, resolve_runtime_threads
from ..runtime import ArtifactRuntime
from ..shapes import from_served, served_dims
from ..spread import interval_columns
from ..usage import Window, per_thousand_ms

# perf.sizing probe: a batch size's window holds at least this many calls (sizing.MIN_WINDOW_REQUESTS,
# Model Navigator's window of 25 requests; not imported: perf needs tritonclient, this runtime's
# environment may not have it) ...
MIN_WINDOW_CALLS = 25
# ... but where that passes WINDOW_CAP_S, WINDOW_CAP_S and at least SLOW_WINDOW_CALLS calls
# (perf.WINDOW_CAP_S and perf.SLOW_WINDOW_REQUESTS: a batch size costs a bounded multiple of its
# call; one window of calls timed back to back has no quantisation to average out).
WINDOW_CAP_S = 10.0
SLOW_WINDOW_CALLS = 10
# A sized window is at most this long (a model of seconds per call gets fewer calls, at least one):
# the isolated child's time bound (measure_isolated) allows for it.
MAX_SIZED_WINDOW_S = 60.0
# The window is cut into this many equal sub-windows whose throughputs give the figure's spread
# (window_infer_s, infer_s_* columns), where each holds at least MIN_SUBWINDOW_CALLS calls on average.
SUBWINDOWS = 5
MIN_SUBWINDOW_CALLS = 5

log = logging.getLogger(__name__)

NUMPY_RANDOM = {
    "f": lambda rng, shape, dt: rng.random(shape, dtype=np.float32).astype(dt),
    "i": lambda rng, shape, dt: rng.integers(0, 2, shape).astype(dt),
}


def random_inputs(
    io: dict[str, Any],
    batch: int | None,
    seed: int = 0,
    shapes: Mapping[str, list[int]] | None = None,
) -> dict[str, NDArray[Any]]:
    """Random data of the served shapes, as perf_analyzer sends with perf.input_data random: shapes
    (per-sample served shapes, the --shape it gets) where given, else dynamic dims at 1. batch None:
    an unbatched model's call, the full dims. Returned in the model's shapes (from_served)."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for tensor in io["inputs"]:
        mbs = 0 if batch is None else 1
        per_sample = (shapes or {}).get(tensor["name"]) or [
            d if d > 0 else 1 for d in served_dims(tensor, mbs)[0]
        ]
        shape = list(per_sample) if batch is None else [batch, *per_sample]
        dtype = np.dtype(tensor["dtype"])
        served = NUMPY_RANDOM.get(dtype.kind, NUMPY_RANDOM["i"])(rng, shape, dtype)
        inputs[tensor["name"]] = from_served(served, tensor, mbs)
    return inputs


def perf_batches(
    io: dict[str, Any],
    samples: list[dict[str, NDArray[Any]]],
    batch: int | None,
    max_bytes: float = 256e6,
) -> list[dict[str, NDArray[Any]]]:
    """The calls perf_analyzer makes of the perf input data, in the model's shapes and dtypes: batch
    consecutive samples per call, wrapping around (perf_analyzer's -b with --input-data), as many
    distinct calls as the samples give (the data cycles after len(samples) / gcd(len, batch) calls),
    at most max_bytes of them (at least one). batch None: an unbatched model, one whole sample per
    call. samples: deploysnake.perfdata.read_samples of input.json."""
    if batch is None:
        return [{t["name"]: from_served(s[t["name"]], t, 0) for t in io["inputs"]} for s in samples]
    return [
        {t["name"]: from_served(call[t["name"]], t, 1) for t in io["inputs"]}
        for call in perfdata.batches(samples, batch, max_bytes)
    ]


def sized_window_s(min_calls: int, call_s: float) -> float:
    """Seconds of a window sized for calls of call_s seconds: min_calls of them, or where that
    passes WINDOW_CAP_S, WINDOW_CAP_S but at least SLOW_WINDOW_CALLS of them (min_calls scaled
    alike: a window measured again twice as long asks twice the calls)."""
    scale = min_calls / MIN_WINDOW_CALLS
    need_s = min_calls * call_s
    if need_s > WINDOW_CAP_S * scale:
        need_s = max(WINDOW_CAP_S * scale, SLOW_WINDOW_CALLS * scale * call_s)
    return need_s


def time_batch(
    runtimes: list[ArtifactRuntime],
    inputs: dict[str, NDArray[Any]] | list[dict[str, NDArray[Any]]],
    window_s: float,
    max_iterations: int,
    samples: int | None = None,
    min_calls: int = 0,
) -> dict[str, Any]:
    """Run repeatedly for window_s (bounded by max_iterations too); throughput and latency percentiles.

    One runtime per served instance, each looping in its own thread as Triton's instances do (the
    runtimes release the GIL while they compute), so the baseline has the served configuration's
    parallelism: instances x runtime threads. min_calls: the window is lengthened to hold this many
    calls at the warm-up's fastest latency, up to MAX_SIZED_WINDOW_S (perf.sizing probe; 0: window_s
    as given).
    samples: inferences per call (default: the inputs' axis 0;
    1 for an unbatched model's whole request). inputs: one call's, or a list of calls' that each
    instance cycles through (the perf input data's batches, perf_batches)."""
    calls = inputs if isinstance(inputs, list) else [inputs]
    warm = float("inf")
    for runtime in runtimes:
        for k in range(3):  # warm-up: first calls allocate and pick kernels
            t0 = time.perf_counter()
            runtime(calls[k % len(calls)])
            warm = min(warm, time.perf_counter() - t0) if k else warm
    if min_calls:  # sized: the window holds min_calls calls at the warmed-up latency
        window_s = max(window_s, min(sized_window_s(min_calls, warm), MAX_SIZED_WINDOW_S))
    batch = samples if samples is not None else next(iter(calls[0].values())).shape[0]
    latencies: list[list[float]] = [[] for _ in runtimes]
    finished: list[list[float]] = [[] for _ in runtimes]  # each call's end (perf_counter)
    start_line = threading.Barrier(len(runtimes) + 1)
    ends = [0.0] * len(runtimes)
    errors: list[BaseException] = []

    def loop(k: int) -> None:
        start_line.wait()
        start = time.perf_counter()
        try:
            while len(latencies[k]) < max_iterations and time.perf_counter() - start < window_s:
                call = calls[(k + len(latencies[k])) % len(calls)]
                t0 = time.perf_counter()
                runtimes[k](call)
                t1 = time.perf_counter()
                latencies[k].append(t1 - t0)
                finished[k].append(t1)
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
    result: dict[str, Any] = {
        "throughput_infer_per_s": batch * len(lat_us) / elapsed,
        "p50_latency_us": float(np.percentile(lat_us, 50)),
        "p99_latency_us": float(np.percentile(lat_us, 99)),
        "iterations": len(lat_us),
        "window_s_planned": window_s,
    }
    windows = subwindow_throughputs(
        np.concatenate([np.asarray(x) for x in finished]) - start, elapsed, batch
    )
    if windows:
        result["window_infer_s"] = ";".join(f"{w:.3f}" for w in windows)
        result.update(interval_columns("infer_s", windows, 3), infer_s_from="windows")
    return result


def subwindow_throughputs(
    ends_s: NDArray[Any], elapsed_s: float, batch: int, count: int = SUBWINDOWS
) -> list[float]:
    """The throughputs (infer/s) of `count` equal consecutive sub-windows of a window elapsed_s
    long, from each call's end (seconds from the window's start; batch inferences per call): the
    in-process figure's spread, as perf_analyzer's stable windows are the served figure's. Empty
    where the window holds fewer than count x MIN_SUBWINDOW_CALLS calls (too few to split) or no
    time. Sub-windows of one run are not independent runs: their interval understates the spread
    between runs, as the served windows' does."""
    if elapsed_s <= 0 or len(ends_s) < count * MIN_SUBWINDOW_CALLS:
        return []
    width = elapsed_s / count
    slots = np.minimum((np.asarray(ends_s) / width).astype(int), count - 1)
    calls = np.bincount(np.maximum(slots, 0), minlength=count)
    return [float(batch * c / width) for c in calls]


def measure_batch(
    runtimes: list[ArtifactRuntime],
    inputs: dict[str, NDArray[Any]] | list[dict[str, NDArray[Any]]],
    window_s: float,
    max_iterations: int,
    max_foreign_cpu: float,
    device: str = "cpu",
    samples: int | None = None,
    min_calls: int = 0,
) -> dict[str, Any]:
    """time_batch inside a usage Window; measured once more when the window was disturbed. Adds
    status ("ok" or "disturbed"), the window's columns (foreign_cpu, job_cpu in cores) and
    native_cpu_ms_per_1k: the runtimes' CPU time per 1,000 inferences (ms)."""
    result: dict[str, Any] = {}
    for attempt in (1, 2):
        with Window(None, device) as window:
            result = time_batch(runtimes, inputs, window_s, max_iterations, samples, min_calls)
        result = {**result, "status": Status.OK, **window.columns()}
        result["native_cpu_ms_per_1k"] = per_thousand_ms(
            window.result["job_cpu"], result["throughput_infer_per_s"]
        )
        if not window.disturbed(max_foreign_cpu):
            break
        result["status"] = Status.DISTURBED
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
                    value = float(row.get(Header.THROUGHPUT) or "nan")
                    batch = int(row["batch"])
                except (KeyError, ValueError):
                    continue
                if row.get("status") == Status.OK and value == value:
                    best[batch] = max(best.get(batch, 0.0), value)
    return best


def served_left_out(served_csvs: list[str | Path]) -> dict[int, str]:
    """Batch sizes whose every served offline point was left out (status "left out": the perf job's
    probe predicted no gain there, or perf.max_job_s), each with the first such row's reason."""
    reasons: dict[int, str] = {}
    measured: set[int] = set()
    for path in served_csvs:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                try:
                    batch = int(row["batch"])
                except (KeyError, ValueError):
                    continue
                if row.get("status") == Status.LEFT_OUT:
                    reasons.setdefault(batch, row.get("reason") or "")
                else:
                    measured.add(batch)
    return {b: r for b, r in reasons.items() if b not in measured}


def measure(
    target: Target,
    served: ServedSettings,
    artifact: str | Path,
    io_json: str | Path,
    batch_sizes: list[int],
    window_s: float,
    max_iterations: int,
    output: str | Path,
    provenance: dict[str, str] | None = None,
    served_csvs: list[str | Path] | None = None,
    spread: float = 0.2,
    max_foreign_cpu: float = 0.25,
    input_data: str | Path | None = None,
    perf_input: str = "dataloader",
    sizing: str = "fixed",
) -> list[dict[str, Any]]:
    """The in-process baseline of `target`'s artifact, run as `served` is served: one runtime per
    instance, served.runtime_threads each (explicit: 0 becomes the job's CPUs over the instances,
    as in the served runner), the runtime's other knobs (served.runtime_options: ArtifactRuntime's
    inter_op_threads, execution_mode, graph_optimization_level). Each batch size's window is
    window_s seconds (at most max_iterations calls per instance). Rows per batch size:
    throughput_infer_per_s, p50/p99_latency_us, status, foreign_cpu, job_cpu (cores),
    native_cpu_ms_per_1k, instances, runtime_threads.

    served_csvs: the perf offline CSVs of the same artifact; where one served throughput beats the
    in-process one by more than `spread` (a fraction: perf.stability_percentage / 100), the batch
    size is measured again with windows twice as long, and if it persists the row's status is
    "baseline suspect". A batch size the served sweep left out at every concurrency
    (served_left_out) is not run in-process either: its row reads "left out", with the reason,
    as there is no served figure to set it beside. served.max_batch_size 0 (unbatched): one
    row at batch 1, each call one whole sample of the perf input data as perf_analyzer sends it.

    The work is perf_analyzer's: with perf_input "dataloader" (perf.input_data) the samples of
    input_data (results/perf_data/<model>/input.json), batch consecutive samples per call
    (perf_batches); with "random", random data of the same per-sample shapes (the --shape
    perf_analyzer gets). Every row records input_shapes (per-sample served shapes, the perf rows'
    format) and input_data ("dataloader" or "random"). sizing "probe" (perf.sizing): each batch
    size's window holds at least perf.MIN_WINDOW_REQUESTS calls at its warmed-up latency, as perf
    sizes its windows; "fixed": window_s as given."""
    fmt, device, instances = target.format, target.device, served.instances
    io = json.loads(Path(io_json).read_text())
    unbatched = served.max_batch_size == 0
    if unbatched:
        batch_sizes = [1]
    names_in, names_out = [t["name"] for t in io["inputs"]], [t["name"] for t in io["outputs"]]
    # The served runner's rule: 0 becomes the job's CPUs over the instances, explicit both ways.
    threads = resolve_runtime_threads(served.runtime_threads, instances, job_cpus())
    isolated.phase(f"loading {artifact} ({fmt})")
    runtimes = [
        ArtifactRuntime(
            artifact,
            fmt,
            names_in,
            names_out,
            threads,
            "cpu" if device == "cpu" else "cuda",
            **served.runtime_options,
        )
        for _ in range(max(1, instances))
    ]
    log.info("in-process: %d instance(s), each %s", len(runtimes), runtimes[0].describe())
    ceiling = served_best(served_csvs or [])
    shapes = served_shapes(io, input_data, 0 if unbatched else 1)
    data = (
        read_samples(input_data, {t["name"]: t["dtype"] for t in io["inputs"]})
        if perf_input == "dataloader" and input_data and Path(input_data).is_file()
        else None
    )
    described = {
        "input_data": "dataloader" if data else "random",
        "input_shapes": describe_shapes(shapes, io),
    }
    log.info("in-process: the perf input data's work: %s", described)
    rows: list[dict[str, Any]] = []
    left_out = served_left_out(served_csvs or [])
    for k, batch in enumerate(batch_sizes, start=1):
        if int(batch) in left_out and not unbatched:
            reason = f"left out: no served point at this batch size ({left_out[int(batch)]})"
            log.info("point %d of %d: batch %d %s", k, len(batch_sizes), batch, reason)
            rows.append(
                {
                    **target.columns(),
                    "batch": int(batch),
                    "status": Status.LEFT_OUT,
                    **described,
                    "instances": len(runtimes),
                    "runtime_threads": threads,
                    **(provenance or {}),
                    "reason": reason,
                }
            )
            continue
        isolated.phase(f"timing batch {batch} in-process ({fmt})")
        calls: dict[str, NDArray[Any]] | list[dict[str, NDArray[Any]]]
        if data:
            calls = perf_batches(io, data, None if unbatched else int(batch))
        else:
            calls = random_inputs(io, None if unbatched else int(batch), shapes=shapes)
        inputs, samples = calls, (1 if unbatched else None)
        min_calls = MIN_WINDOW_CALLS if sizing == "probe" else 0
        result = measure_batch(
            runtimes, inputs, window_s, max_iterations, max_foreign_cpu, device, samples, min_calls
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
                runtimes,
                inputs,
                2 * window_s,
                2 * max_iterations,
                max_foreign_cpu,
                device,
                samples,
                2 * min_calls,
            )
            if again["throughput_infer_per_s"] > result["throughput_infer_per_s"]:
                result = again
            if top > result["throughput_infer_per_s"] * (1 + spread):
                result["status"] = Status.BASELINE_SUSPECT
                log.warning(
                    "batch %d: still %.0f in-process against %.0f served: baseline suspect",
                    batch,
                    result["throughput_infer_per_s"],
                    top,
                )
        rows.append(
            {
                **target.columns(),
                "batch": int(batch),
                **result,
                **described,
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
        # every row's columns: a batch size too short to split into sub-windows has no infer_s_*
        columns = list(dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def measure_isolated(**kwargs: Any) -> None:
    """measure(**kwargs) in a child process (deploysnake.isolated), bounded in time: a runtime that
    raises, crashes the process (SIGSEGV) or hangs raises FormatFailure with the reason and the
    child's log excerpt (the job writes it as the format's failure record)."""
    from ..failures import FormatFailure

    batches = len(kwargs["batch_sizes"])
    window_s = float(kwargs["window_s"])
    if kwargs.get("sizing") == "probe":
        window_s = max(window_s, MAX_SIZED_WINDOW_S)
    timeout_s = 300.0 + batches * (3 * window_s + 60.0)
    kwargs = {k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()}
    outcome = isolated.call("deploysnake.measuring.native:measure", kwargs, timeout_s)
    if outcome.failure is not None:
        raise FormatFailure(outcome.failure, outcome.log_excerpt)
