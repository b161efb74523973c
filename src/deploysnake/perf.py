"""Perf stage: perf_analyzer against the running server, one invocation per sweep point.

Offline: static batch sweep, system shared memory, at each offline concurrency (1: the guides' single
request; 2: a request's transfer overlaps the previous one's compute, the server's batch capacity) and,
where the model has several instances, at two requests per instance, so every instance has one.
Online: dynamic batching on the server, batch-1 requests, concurrency sweep. Each point keeps every
column perf_analyzer writes with -f, and what the window used (deploysnake.usage: server and client
cores, the server's peak memory, the foreign load). A point perf_analyzer cannot measure stably
(twice) is recorded as "unstable", never as a number; one that ran beside foreign load (twice) is
recorded as "disturbed", its numbers kept but never taken as a result.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import shm
from .contracts import PERF_ANALYZER_COLUMNS, Header, Status
from .errors import UserError
from .failures import FormatFailure
from .perfdata import batches, describe_shapes, encode, read_samples, sample_shapes, served_shapes
from .plugins import Recipe, validation_batches
from .processes import die_with_parent
from .server import ServerDied, TritonServer
from .shapes import served_dims
from .spread import interval_columns, percentile_support
from .underload import Expected, SideCheck
from .usage import COLUMNS as USAGE_COLUMNS
from .usage import Window

log = logging.getLogger(__name__)

# "No valid requests": not one request finished inside a window (a loaded machine, or a window too short).
UNSTABLE_MARKERS = (
    "Failed to obtain stable measurement",
    "Failed to get stable",
    "No valid requests recorded within time interval",
)
# Request-rate mode (open loop) exits 0 with a CSV row when no window was stable: no result.
UNSTABLE_EXIT_0 = ("Request latency is not stabilizing",)
COLUMNS = ["model", "format", "device", "mode", "batch", "concurrency", "status"]
# A point whose window saw more foreign CPU load (cores) than this, twice, is recorded "disturbed".
MAX_FOREIGN_CPU = 0.25


def error_lines(output: str, count: int = 3) -> str:
    """The last `count` lines of perf_analyzer's output that say what failed (else its last line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"error|fail|invalid|out of", line, re.I)]
    return " | ".join((errors or lines[-1:])[-count:])[-1500:]


@dataclass(frozen=True)
class Point:
    """One perf_analyzer load: closed loop (concurrency requests in flight) or, with request_rate
    (requests/s), open loop: requests issued on a schedule whether or not answers came back
    (`--request-rate-range R:R:1`, arrivals by `distribution`: poisson or constant)."""

    batch: int
    concurrency: int
    request_rate: float | None = None
    distribution: str = "poisson"


def sweep(
    mode: str, settings: dict[str, Any], instances: int = 1, max_batch_size: int = 1
) -> list[Point]:
    """The points of one sweep. instances: the served model's instance count; offline, with more than
    one, 2 x instances requests in flight is measured too (the batch capacity of the whole server:
    two in flight fill one instance, not two). max_batch_size 0 (an unbatched model): every request
    is one whole sample, so the batch sizes collapse to 1 (perf_analyzer runs without -b)."""
    if max_batch_size == 0:
        points = sweep(mode, settings, instances)
        return list(dict.fromkeys(Point(1, p.concurrency) for p in points))
    if mode == "offline":
        offline = settings["offline"]
        concurrencies = [int(c) for c in offline.get("concurrency", [1])]
        if instances > 1:
            concurrencies = sorted({*concurrencies, 2 * instances})
        return [Point(int(b), c) for b in offline["batch_sizes"] for c in concurrencies]
    online = settings["online"]
    return [Point(int(online.get("batch_size", 1)), int(c)) for c in online["concurrency"]]


def prepare_input_data(
    recipe: Recipe,
    params: dict[str, Any],
    samples: int,
    output: str | Path,
    unbatched: bool = False,
    input_data: str = "dataloader",
) -> dict[str, Any]:
    """perf_analyzer --input-data JSON from the validation split, one entry per sample with its shape,
    each tensor in its dtype as deploysnake.perfdata.encode writes it (base64 for float16/bfloat16
    and for large tensors, decimal otherwise).

    perf_analyzer stacks entries into a batch, so they must share a shape: along the recipe's dynamic
    axes (a sequence) every sample is cut or zero-padded to the median length of the validation
    batches, a realistic length that the CSVs and the report name ("tokens:1x20" -> 20 tokens).
    unbatched (triton.max_batch_size 0): a sample is one whole dataloader batch (a set, a graph),
    sent as one request; its axis 0 is cut to the median batch length, and batches shorter than that
    are left out (zero rows would be made-up members). A [batch] input's sample is sent as [1] (its
    served shape, dims [1] with reshape []).

    Raises UserError, before any perf job, for input_data "random" (perf.input_data) with an integer
    input: see refuse_random_integers."""
    batches = validation_batches(recipe, params, batch_size=min(samples, 256))
    if input_data == "random":
        refuse_random_integers({n: np.asarray(a) for n, a in batches[0]["inputs"].items()})
    lengths = _typical_lengths(recipe, batches)
    rows = max(1, int(np.median([len(b["ids"]) for b in batches])))
    data: list[dict[str, Any]] = []
    for batch in batches:
        if unbatched:
            if len(batch["ids"]) < rows:
                continue
            whole = {
                name: _fit(
                    np.asarray(array),
                    {
                        0: rows,
                        **{a: lengths[d] for a, d in recipe.dynamic_axes.get(name, {}).items()},
                    },
                )
                for name, array in batch["inputs"].items()
            }
            data.append({n: encode(a) for n, a in whole.items()})
            if len(data) >= samples:
                break
            continue
        for i in range(len(batch["ids"])):
            if len(data) >= samples:
                break
            entry = {}
            for name, array in batch["inputs"].items():
                sample = _fit(
                    np.asarray(array[i]),
                    {
                        axis - 1: lengths[dim]
                        for axis, dim in recipe.dynamic_axes.get(name, {}).items()
                    },
                )
                entry[name] = encode(sample)
            data.append(entry)
        if len(data) >= samples:
            break
    doc = {"data": data}
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(doc))
    log.info(
        "%d samples of %s for perf_analyzer in %s (dynamic lengths %s)",
        len(data),
        sorted(data[0]) if data else [],
        output,
        lengths or "none",
    )
    return doc


def refuse_random_integers(inputs: dict[str, NDArray[Any]]) -> None:
    """perf_analyzer's random data for an integer input are integers drawn over the dtype's range
    (ids like 1936311911; triton-inference-server/server#3512): not valid ids of an embedding table
    or indices into anything, so every request fails inside the model (Gather: index out of
    bounds), and nothing is measured. Bool inputs are fine. Raises UserError naming the inputs, with
    the validation data's range, and `perf.input_data: dataloader` as the fix."""
    integer = {n: a for n, a in inputs.items() if a.dtype.kind in "iu"}
    if not integer:
        return
    described = ", ".join(
        f"{n} ({a.dtype}, {int(a.min())}..{int(a.max())} in the validation data)"
        for n, a in integer.items()
    )
    raise UserError(
        f"perf.input_data is random, but {described} "
        f"{'is an integer input' if len(integer) == 1 else 'are integer inputs'}: perf_analyzer's "
        "random integers are not valid ids or indices (an embedding table's rows), so every request "
        "would fail inside the model and nothing would be measured. Set perf.input_data: dataloader "
        "(real validation samples, the default)"
    )


def _typical_lengths(recipe: Recipe, batches: list[dict[str, Any]]) -> dict[str, int]:
    """Median size of each named dynamic axis over the validation batches."""
    seen: dict[str, list[int]] = {}
    for batch in batches:
        for name, axes in recipe.dynamic_axes.items():
            if name in batch["inputs"]:
                for axis, dim in axes.items():
                    seen.setdefault(dim, []).append(
                        int(np.asarray(batch["inputs"][name]).shape[axis])
                    )
    return {dim: max(1, int(np.median(sizes))) for dim, sizes in seen.items()}


def _fit(sample: NDArray[Any], sizes: dict[int, int]) -> NDArray[Any]:
    for axis, size in sizes.items():
        if sample.shape[axis] > size:
            sample = np.take(sample, range(size), axis=axis)
        elif sample.shape[axis] < size:
            pad = [(0, 0)] * sample.ndim
            pad[axis] = (0, size - sample.shape[axis])
            sample = np.pad(sample, pad)
    return sample


def input_shapes(input_data: str | Path | None, io: dict[str, Any], max_batch_size: int = 1) -> str:
    """The per-sample input shapes perf_analyzer sends, for the CSV ("image:1x8x8"): the input data's
    where given, else the served dims with dynamic dims at 1 (deploysnake.perfdata)."""
    return describe_shapes(served_shapes(io, input_data, max_batch_size), io)


def command(
    executable: str,
    model_name: str,
    server: TritonServer,
    point: Point,
    settings: dict[str, Any],
    mode: str,
    csv_path: Path,
    output_size: int,
    input_data: str | Path | None = None,
    shapes: dict[str, list[int]] | None = None,
    batched: bool = True,
    verbose: bool = False,
) -> list[str]:
    """perf_analyzer's arguments for one point. batched False (max_batch_size 0): no -b, each
    request is one whole sample of --shape / --input-data's shapes. verbose: -v, each window's
    throughput printed (the sweeps' spread; capacity and tuning parse the plain console)."""
    args = [
        executable,
        "-m",
        model_name,
        "-u",
        server.grpc_url,
        "-i",
        "grpc",
        *(["-b", str(point.batch)] if batched else []),
        *(
            [
                "--request-rate-range",
                f"{point.request_rate:g}:{point.request_rate:g}:1",
                "--request-distribution",
                point.distribution,
                # asynchronous requests: the schedule does not wait for answers (open loop)
                "--async",
            ]
            if point.request_rate is not None
            else ["--concurrency-range", f"{point.concurrency}:{point.concurrency}:1"]
        ),
        "--measurement-mode",
        settings["measurement_mode"],
        "--measurement-interval",
        str(settings["measurement_interval_ms"]),
        "--measurement-request-count",
        str(settings["measurement_request_count"]),
        "--stability-percentage",
        str(settings["stability_percentage"]),
        "--max-trials",
        str(settings["max_trials"]),
        "-f",
        str(csv_path),
        # every window's throughput on the console (console_figures: the spread of a point)
        *(["-v"] if verbose else []),
    ]
    if input_data:  # real samples from the dataloader, as the guides' prepare-input-data step
        args += ["--input-data", str(input_data)]
    for name, shape in (shapes or {}).items():  # inputs with dynamic dims: the sizes to send
        args += ["--shape", f"{name}:{','.join(map(str, shape))}"]
    if mode == "offline" and settings["offline"].get("shared_memory", "none") != "none":
        args += [
            "--shared-memory",
            settings["offline"]["shared_memory"],
            "--output-shared-memory-size",
            str(max(102400, output_size * point.batch)),
        ]
    return args


def dynamic_shapes(
    io: dict[str, Any], prepared: str | Path, max_batch_size: int = 1
) -> dict[str, list[int]]:
    """Per-sample shapes of the inputs that have dynamic dims in their served dims (perf_analyzer
    --shape): besides the batch; unbatched (max_batch_size 0), axis 0 too."""
    first = sample_shapes(prepared)
    return {
        t["name"]: first[t["name"]]
        for t in io["inputs"]
        if any(d < 0 for d in served_dims(t, max_batch_size)[0]) and t["name"] in first
    }


def output_bytes(io: dict[str, Any], longest: int = 4096, max_batch_size: int = 1) -> int:
    """Bytes of one sample's outputs (one request's, unbatched), dynamic dims taken as longest."""
    total = 0
    for tensor in io["outputs"]:
        dims = served_dims(tensor, max_batch_size)[0]
        # A dynamic non-batch dim has no size until run time: size the buffer for the longest input dim.
        elements = int(np.prod([d if d > 0 else longest for d in dims])) if dims else 1
        total += elements * np.dtype(tensor["dtype"]).itemsize
    return total


def measured_output_bytes(
    server: TritonServer, model_name: str, io: dict[str, Any], input_data: str | Path
) -> int | None:
    """Bytes of one sample's outputs as the server returns them: each sample of the perf input data
    sent alone (one request each, in its served shape), the largest sum of its outputs' raw bytes
    on the wire (a BYTES output's length-prefixed strings included). What the shared-memory output
    regions must hold per sample, where dims or strings leave the size open until run time. None
    where a sample cannot be sent (the sweep then reports that request's error itself)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    client = grpcclient.InferenceServerClient(server.grpc_url)
    largest = 0
    try:
        dtypes = {t["name"]: t["dtype"] for t in io["inputs"]}
        for sample in read_samples(input_data, dtypes):
            requests = []
            for tensor in io["inputs"]:
                array = np.ascontiguousarray(sample[tensor["name"]][np.newaxis])
                item = grpcclient.InferInput(
                    tensor["name"], list(array.shape), np_to_triton_dtype(array.dtype)
                )
                item.set_data_from_numpy(array)
                requests.append(item)
            response = client.infer(model_name, requests, client_timeout=60).get_response()
            largest = max(largest, sum(len(raw) for raw in response.raw_output_contents))
    except (InferenceServerException, KeyError, ValueError) as exc:
        log.warning("output sizes could not be measured (%s): sized from the dims", exc)
        return None
    finally:
        client.close()
    return largest


# perf_analyzer's console (2.51): the measurement's client request count, the server's inference and
# execution counts over the measured windows (Triton's model statistics, which perf_analyzer reads
# before and after each window), and with -v each window's ("Pass [k]") throughput.
_REQUEST_COUNT = re.compile(r"^\s*Request count:\s*(\d+)", re.M)
_INFERENCE_COUNT = re.compile(r"^\s*Inference count:\s*(\d+)", re.M)
_EXECUTION_COUNT = re.compile(r"^\s*Execution count:\s*(\d+)", re.M)
_SUMMARY = re.compile(r"^Request (concurrency|Rate):", re.M)
_PASS = re.compile(r"Pass \[(\d+)\] throughput:\s*([0-9.eE+-]+) infer/sec")
# perf_analyzer declares a point stable over its last three windows and reports them merged.
STABLE_WINDOWS = 3
# perf_analyzer's memory bound (client_memory_limit_mb) and how often it is read.
CLIENT_MEMORY_MB = 4096.0
POLL_S = 0.5


def console_figures(output: str) -> dict[str, Any]:
    """What perf_analyzer's console says beyond its CSV, for the last measurement in `output`:
    requests (client requests behind the reported percentiles: the merged stable windows),
    server_batch (inferences over executions the server ran in those windows: the batch size the
    server actually ran, float; empty where the server counted none), window_infer_s (the last
    STABLE_WINDOWS windows' infer/s, ";"-separated: the windows behind the figure). Keys whose
    figure the output lacks are left out."""
    found: dict[str, Any] = {}
    passes = _PASS.findall(output)
    # The summary of the measurement follows its last "Request concurrency:" (or rate) header.
    headers = list(_SUMMARY.finditer(output))
    output = output[headers[-1].start() :] if headers else output
    if requests := _REQUEST_COUNT.findall(output):
        found["requests"] = int(requests[0])
    inferences, executions = _INFERENCE_COUNT.findall(output), _EXECUTION_COUNT.findall(output)
    # The first Server block is the model's; composing models (an ensemble's) follow it.
    if inferences and executions and int(executions[0]) > 0:
        found["server_batch"] = round(int(inferences[0]) / int(executions[0]), 2)
    if passes:
        found["window_infer_s"] = ";".join(t for _, t in passes[-STABLE_WINDOWS:])
    return found


def client_memory_limit_mb() -> float:
    """The most resident memory (MB) a perf_analyzer call may hold: half of the memory available
    now, at most CLIENT_MEMORY_MB (perf_analyzer needs some hundred MB; its request-rate mode keeps
    every request the server has not answered, and at a rate far beyond the server's it grew to
    23.5 GB in about a minute on a 24 GB machine before the kernel killed it and the server)."""
    import psutil

    return min(CLIENT_MEMORY_MB, psutil.virtual_memory().available / 2**20 / 2)


def wait_bounded(
    process: subprocess.Popen[str], timeout_s: float, limit_mb: float
) -> tuple[str | None, str, str]:
    """Wait for perf_analyzer, reading its output, polling its memory every POLL_S; stop it (its
    process group: SIGKILL) past timeout_s or past limit_mb. Returns (why it was stopped or None,
    stdout, stderr)."""
    import psutil

    started, chunks_out, chunks_err = time.monotonic(), "", ""
    while True:
        try:
            out, err = process.communicate(timeout=POLL_S)
            return None, chunks_out + (out or ""), chunks_err + (err or "")
        except subprocess.TimeoutExpired:
            pass  # communicate keeps what it read; the next call goes on from there
        why = None
        try:
            rss_mb = psutil.Process(process.pid).memory_info().rss / 2**20
        except psutil.Error:
            rss_mb = 0.0
        if rss_mb > limit_mb:
            why = f"memory: perf_analyzer held {rss_mb:,.0f} MB (limit {limit_mb:,.0f} MB)"
        elif time.monotonic() - started > timeout_s:
            why = f"time: perf_analyzer did not finish within {timeout_s:.0f} s"
        if why:
            process.kill()
            out, err = process.communicate()
            return why, out or "", err or ""


def run_point(
    args: list[str],
    timeout_s: float,
    server: TritonServer,
    started: Callable[[], None] | None = None,
) -> tuple[str, dict[str, str], str]:
    """Run perf_analyzer once; return (status, its CSV row, its output). A call past timeout_s is
    unstable; one whose memory passes client_memory_limit_mb is stopped and client_behind (the
    client cannot issue that load: unanswered requests pile up in it). started: called once
    perf_analyzer runs (the side check's threads start after the fork, never during it)."""
    csv_path = Path(args[args.index("-f") + 1])
    limit_mb = client_memory_limit_mb()
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    try:
        if started is not None:
            started()
        stopped, stdout, stderr = wait_bounded(process, timeout_s, limit_mb)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = stdout + stderr
    if stopped is not None:
        server.check_alive()
        if stopped.startswith("memory"):
            log.warning("perf_analyzer stopped: %s; the client cannot issue this load", stopped)
            return Status.CLIENT_BEHIND, {}, f"{output}\nperf_analyzer stopped: {stopped}"
        return Status.UNSTABLE, {}, stopped
    if process.returncode != 0:
        server.check_alive()  # a dead server is the cause to report, not perf_analyzer's symptom
        if any(marker in output for marker in UNSTABLE_MARKERS):
            return Status.UNSTABLE, {}, output
        if process.returncode == 127 or "error while loading shared libraries" in output:
            raise RuntimeError(  # perf_analyzer itself cannot run: no format can fix that
                f"perf_analyzer cannot run (exit {process.returncode}): {' '.join(args)}\n{output[-3000:]}"
            )
        # The server is up and answered: the model cannot take these requests (the point's failure).
        return Status.FAILED, {}, output or f"perf_analyzer exited {process.returncode}, silent"
    if any(marker in output for marker in UNSTABLE_EXIT_0):
        return Status.UNSTABLE, {}, output
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise RuntimeError(f"perf_analyzer wrote no rows to {csv_path}:\n{output[-3000:]}")
    return Status.OK, {**rows[0], **console_figures(output)}, output


def _remove_leftovers(tensors: tuple[str, ...]) -> None:
    """Unlink region files of these tensors under /dev/shm, inside their shm.turn: a perf_analyzer
    that was killed leaves them, and one outside deploysnake that uses them keeps its own mapping,
    while the call that follows makes fresh files instead of resizing theirs."""
    for path in shm.leftovers(tensors):
        log.warning(
            "shared-memory region %s exists outside a perf_analyzer call of this job (left by a "
            "killed perf_analyzer, or one outside deploysnake uses the same tensor name); unlinked, "
            "so the next call makes its own",
            path,
        )
        with contextlib.suppress(OSError):  # another user's: their perf_analyzer's to remove
            path.unlink()


def measure_point(
    executable: str,
    model_name: str,
    server: TritonServer,
    point: Point,
    settings: dict[str, Any],
    mode: str,
    csv_path: Path,
    load: Load,
    device: str = "cpu",
    within_s: float | None = None,
) -> tuple[str, dict[str, Any], str]:
    """One perf_analyzer point, inside a usage Window (deploysnake.usage): the row holds perf_analyzer's
    columns and the window's (foreign_cpu, server_cpu, client_cpu in cores, server_peak_rss_mb).

    Measured once more when it is unstable (windows twice as long, what perf_analyzer advises) or
    disturbed (foreign load above settings["max_foreign_cpu"] cores, or another process on the GPU);
    then recorded as "unstable" (no numbers) or "disturbed" (numbers and load kept, never charted).
    within_s (perf.max_job_s's seconds left for this point; None: no bound): the second measurement
    only where it fits (again_fits), else the first's status is recorded.
    With load.expected, a side client checks answers under load (deploysnake.underload.SideCheck:
    columns load_check, load_check_requests); answers that differ make the point "failed", its
    numbers dropped, the output and the difference in `reason` (and the returned text)."""
    limit = float(settings.get("max_foreign_cpu", MAX_FOREIGN_CPU))
    measured: dict[str, Any] = {}
    status: str = Status.UNSTABLE
    text = ""
    started = time.monotonic()
    for attempt in (1, 2):
        args = command(
            executable,
            model_name,
            server,
            point,
            settings,
            mode,
            csv_path,
            load.output_size,
            load.data,
            load.shapes,
            load.batched,
            load.verbose,
        )
        again: dict[str, str] = {
            Status.UNSTABLE: " (again, windows twice as long)",
            Status.DISTURBED: " (again, the window was disturbed)",
        }
        log.info(
            "perf_analyzer%s: %s",
            "" if attempt == 1 else again.get(status, " (again)"),
            " ".join(args),
        )
        # system shared memory: perf_analyzer's regions are named host-wide (deploysnake.shm)
        system_shm = (
            "--shared-memory" in args and args[args.index("--shared-memory") + 1] == "system"
        )
        with shm.turn(load.tensors if system_shm else ()):
            if system_shm:
                _remove_leftovers(load.tensors)
            with Window(
                server.process.pid if server.process else None,
                device,
                f"{server.host}:{server.metrics_port}",
            ) as window:
                try:
                    with _side_check(load, server, model_name, point) as side:
                        status, measured, text = run_point(
                            args,
                            load.timeout_s * attempt,
                            server,
                            side.start if side is not None else None,
                        )
                except ServerDied as exc:
                    if system_shm and exc.returncode == -signal.SIGBUS:
                        raise FormatFailure(
                            "tritonserver crashed (SIGBUS) while it read the model's requests from "
                            "system shared memory: another perf_analyzer on this host that takes "
                            "no turn (outside deploysnake) may have resized the regions named "
                            f"after the tensors {', '.join(load.tensors)} (deploysnake.shm); "
                            "measure again alone, or set perf.offline.shared_memory: none",
                            exc.log_tail,
                        ) from exc
                    raise
            if system_shm:
                _remove_leftovers(load.tensors)  # a perf_analyzer killed at its timeout leaves them
        measured = {**measured, **window.columns()}
        if side is not None:
            outcome = side.outcome
            measured.update(outcome.columns())
            if outcome.differed:  # wrong answers: no throughput, whatever perf_analyzer measured
                at = (
                    f"at {point.request_rate:g} requests/s"
                    if point.request_rate is not None
                    else f"concurrency {point.concurrency}"
                )
                text = outcome.reason(f"batch {point.batch}, {at}", side.expected.runtime)
                log.warning("%s", text)
                return Status.FAILED, {**outcome.columns(), "reason": text}, text
            if outcome.not_checked:
                log.warning("outputs under load %s", outcome.columns()["load_check"])
        spent = time.monotonic() - started
        if status == Status.OK and window.disturbed(limit):
            status = Status.DISTURBED
            fits = attempt == 1 and again_fits(status, spent, within_s)
            log.warning(
                "point disturbed: %.2f core(s) of foreign CPU load (limit perf.max_foreign_cpu %.2f)%s",
                window.result["foreign_cpu"],
                limit,
                "; measuring again"
                if fits
                else "; recorded as disturbed"
                + ("" if attempt == 2 else " (measuring again would pass perf.max_job_s)"),
            )
            text = f"foreign CPU load {window.result['foreign_cpu']:.2f} cores"
            if not fits:
                break
            continue
        if status in (
            Status.OK,
            Status.FAILED,
            Status.CLIENT_BEHIND,
        ):  # measured, failed or beyond the client: measuring again gives nothing new
            break
        if attempt == 1 and not again_fits(status, spent, within_s):
            log.warning(
                "point unstable; not measured again: windows twice as long would pass "
                "perf.max_job_s (%.0f s spent on it, %.0f s left)",
                spent,
                within_s or 0.0,
            )
            break
        settings = {
            **settings,
            "measurement_interval_ms": 2 * settings["measurement_interval_ms"],
            "measurement_request_count": 2 * settings["measurement_request_count"],
        }
    return status, measured, text


@contextlib.contextmanager
def _side_check(
    load: Load, server: TritonServer, model_name: str, point: Point
) -> Iterator[SideCheck | None]:
    """A SideCheck around one perf_analyzer call where load.expected is set, else None."""
    if load.expected is None:
        yield None
        return
    with SideCheck(
        load.expected, server.grpc_url, model_name, point.batch, max(1, point.concurrency)
    ) as side:
        yield side


def again_fits(status: str, spent_s: float, within_s: float | None) -> bool:
    """Whether a point's second measurement fits in within_s seconds (None: always), its first
    having taken spent_s: a disturbed point's again takes as long, an unstable one's (windows twice
    as long) twice as long."""
    if within_s is None:
        return True
    again_s = (2.0 if status == Status.UNSTABLE else 1.0) * spent_s
    return spent_s + again_s <= within_s


def repeat_best(
    rows: list[dict[str, Any]],
    repeats: int,
    run: Callable[[int, Point, dict[str, Any]], tuple[str, dict[str, Any], str]],
    settings_of: dict[Point, dict[str, Any]],
) -> None:
    """perf.repeats: the sweep's best "ok" point (highest infer/s) measured `repeats` more times
    with the same settings, one perf_analyzer run each (`run(k, point, settings)` returns
    measure_point's (status, measured, output)); its row gets run_infer_s and run_p99_us, the
    runs' figures (";"-separated, the sweep's own first; runs that came out other than "ok" are
    left out and counted in repeats_not_ok). Nothing where repeats is 0 or no point is "ok"."""
    ok = [
        r for r in rows if r["status"] == Status.OK and r.get(Header.THROUGHPUT) not in (None, "")
    ]
    if repeats <= 0 or not ok:
        return
    best = max(ok, key=lambda r: float(r[Header.THROUGHPUT]))
    point = Point(int(best["batch"]), int(best["concurrency"]))
    throughputs, p99s, not_ok = [str(best[Header.THROUGHPUT])], [str(best[Header.P99])], 0
    for k in range(1, repeats + 1):
        log.info(
            "repeat %d of %d of the best point (batch %d, concurrency %d)",
            k,
            repeats,
            point.batch,
            point.concurrency,
        )
        status, measured, _ = run(k, point, settings_of[point])
        if status != Status.OK:
            not_ok += 1
            continue
        throughputs.append(str(measured[Header.THROUGHPUT]))
        p99s.append(str(measured[Header.P99]))
    best.update(run_infer_s=";".join(throughputs), run_p99_us=";".join(p99s), repeats_not_ok=not_ok)


def _samples(text: Any) -> list[float]:
    return [float(v) for v in str(text or "").split(";") if v.strip()]


def spread_columns(row: dict[str, Any]) -> dict[str, Any]:
    """The spread of a measured row (deploysnake.spread), as CSV columns:

    - infer_s_n, infer_s_mean, infer_s_cv, infer_s_low, infer_s_high, infer_s_from: the 95 %
      interval of infer/s from the repeated runs (run_infer_s, perf.repeats, "runs") where the
      point was repeated, else from perf_analyzer's stable windows (window_infer_s, "windows":
      consecutive windows that perf_analyzer kept because they agreed within
      perf.stability_percentage, so they understate the spread between runs);
    - p99_n, p99_mean, p99_cv, p99_low, p99_high (µs): from the repeated runs only (the windows'
      p99s are not printed);
    - p99_enough, p99_margin, p99_supported: the requests behind the p99 against MLPerf
      Inference's minimum (deploysnake.spread.percentile_support).

    Both figures are never negative: an interval's low end is cut at 0 (two runs far apart give
    a t-interval wider than the mean). Empty for a row without numbers."""
    out: dict[str, Any] = {}
    runs, windows = _samples(row.get("run_infer_s")), _samples(row.get("window_infer_s"))
    samples, source = (runs, "runs") if len(runs) >= 2 else (windows, "windows")
    if samples and row.get("status") in (Status.OK, Status.DISTURBED):
        out.update(interval_columns("infer_s", samples, 3), infer_s_from=source)
    p99s = _samples(row.get("run_p99_us"))
    if len(p99s) >= 2:
        out.update(interval_columns("p99", p99s, 1))
    if row.get("requests") not in (None, ""):
        support = percentile_support(int(row["requests"]), 99.0)
        out.update(
            p99_enough=support.enough,
            p99_margin=round(support.margin, 3),
            p99_supported=round(support.supported, 1),
        )
    return out


@dataclass(frozen=True)
class Load:
    """What perf_analyzer sends for one model under some perf settings, and how long a call may run."""

    data: str | Path | None  # the --input-data file; None: perf_analyzer's random data
    shapes: dict[str, list[int]]  # --shape of the inputs with dynamic dims
    output_size: int  # bytes of one sample's outputs (shared-memory buffers)
    timeout_s: float
    batched: bool = True  # False: max_batch_size 0, no -b
    verbose: bool = False  # perf_analyzer -v: each window's figures (the sweeps' spread)
    tensors: tuple[str, ...] = ()  # the model's input and output names (shm.turn's region names)
    # the in-process outputs of the perf samples: each point's answers under load are checked
    # against them (deploysnake.underload); None: not checked
    expected: Expected | None = None


def plan_load(
    io: dict[str, Any],
    settings: dict[str, Any],
    input_data: str | Path | None,
    max_batch_size: int = 1,
) -> Load:
    """What to send: max_batch_size is the served config's (0: whole samples, no -b)."""
    data = input_data if settings.get("input_data", "dataloader") == "dataloader" else None
    shapes = dynamic_shapes(io, input_data, max_batch_size) if input_data else {}
    longest = max((d for shape in shapes.values() for d in shape), default=4096)
    # Bound each call: at most max_trials windows plus start-up, whatever perf_analyzer does.
    timeout_s = 60.0 + 3 * settings["measurement_interval_ms"] / 1000.0 * int(
        settings["max_trials"]
    )
    tensors = tuple(t["name"] for t in io["inputs"] + io["outputs"])
    return Load(
        data,
        shapes,
        output_bytes(io, longest, max_batch_size),
        timeout_s,
        max_batch_size > 0,
        tensors=tensors,
    )


# A point whose window would hold fewer requests than this (one after another, at the probed latency)
# gets a longer window (perf.sizing probe): Model Navigator profiles in windows of 25 requests
# (triton-inference-server/model_navigator, its performance profiling's default window).
MIN_WINDOW_REQUESTS = 25
# ... but a window of 25 requests longer than WINDOW_CAP_S is cut to WINDOW_CAP_S, and never below
# SLOW_WINDOW_REQUESTS requests, so a point costs a bounded multiple of its request latency (about
# 4 windows: 40 latencies) instead of 100 (a ResNet-18 batch of 256, 4.3 s a request on 2 cores,
# took 440 s a point with windows of 25). A time window of N requests one after another counts N or
# N + 1 of them: at 10 that is at most 10 % apart between windows, inside perf.stability_percentage
# (20), and the figure perf_analyzer merges from its 3 stable windows is within 1 / 30 (3.3 %), under
# the 5 % the sweep's stop rule (perf.stop_gain) tells apart.
WINDOW_CAP_S = 10.0
SLOW_WINDOW_REQUESTS = 10
# A lengthened window's point gets at most this many of them (perf_analyzer's stable measurement is
# 3 windows in a row; one spare): 4 windows, not perf.max_trials' 6, of 10 request latencies or more.
SIZED_MAX_TRIALS = 4
# A probe request that takes longer than this is given up (the sweep's own timeouts then apply).
PROBE_TIMEOUT_S = 300.0
# Requests slower than this (warm-up and first timed) are timed once, not twice: a ResNet-18 batch
# of 256 costs the probe 10 s instead of 15 on 2 cores, and a second request of seconds differs
# from the first by less than the windows' own spread.
PROBE_ONCE_S = 1.0


def probe_latency(
    server: TritonServer,
    model_name: str,
    io: dict[str, Any],
    input_data: str | Path,
    batch_sizes: list[int],
    batched: bool = True,
    server_s: dict[int, float] | None = None,
) -> dict[int, float]:
    """Seconds one request takes at each batch size, measured before a sweep: the perf input data's
    first request at that batch (perfdata.batches; unbatched: one whole sample) sent three times over
    gRPC, the first a warm-up, the faster of the other two kept (twice where both took more than
    PROBE_ONCE_S: one timed). server_s, where given, is filled
    with the server's own seconds of the same requests (server_seconds: Triton's statistics, the
    gRPC transfer left out), where the server reports them. Raises what tritonclient raises where
    the server refuses the request."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    samples = read_samples(input_data, {t["name"]: t["dtype"] for t in io["inputs"]}, limit=256)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    latencies: dict[int, float] = {}
    try:
        for batch in sorted(set(batch_sizes)):
            request = batches(samples, batch, max_bytes=0)[0] if batched else samples[0]
            inputs = []
            for name, array in request.items():
                tensor = grpcclient.InferInput(
                    name, list(array.shape), np_to_triton_dtype(array.dtype)
                )
                tensor.set_data_from_numpy(array)
                inputs.append(tensor)
            times: list[float] = []
            on_server: list[float] = []
            for k in range(3):
                if k == 2 and min(times) > PROBE_ONCE_S:
                    break  # seconds a request: one timed after the warm-up is enough
                before = server_seconds(client, model_name) if k and server_s is not None else None
                started = time.perf_counter()
                client.infer(model_name, inputs, client_timeout=PROBE_TIMEOUT_S)
                times.append(time.perf_counter() - started)
                if before is not None and (after := server_seconds(client, model_name)):
                    requests, seconds = after[0] - before[0], after[1] - before[1]
                    if requests > 0:
                        on_server.append(seconds / requests)
            latencies[batch] = min(times[1:])
            if server_s is not None and on_server:
                server_s[batch] = min(on_server)
    finally:
        client.close()
    return latencies


# Triton's inference statistics whose sum is a request's time inside the server (its queue, the
# copies into and out of the backend, the model's compute): perf_analyzer's server-side columns.
SERVER_PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


def server_seconds(client: Any, model_name: str) -> tuple[int, float] | None:
    """(successful requests, seconds spent in SERVER_PHASES) of the model so far, from Triton's
    statistics extension (tritonclient.grpc get_inference_statistics, summed over the model's
    versions); None where the server gives none (the probe then sizes from the client's times)."""
    try:
        stats = client.get_inference_statistics(model_name, as_json=True)
    except Exception as exc:  # tritonclient raises its own and gRPC errors alike
        log.debug("no inference statistics for %s: %s", model_name, exc)
        return None
    requests, nanoseconds = 0, 0
    for version in stats.get("model_stats", []):
        inference = version.get("inference_stats", {})
        requests += int(inference.get("success", {}).get("count", 0))
        nanoseconds += sum(int(inference.get(k, {}).get("ns", 0)) for k in SERVER_PHASES)
    return requests, nanoseconds / 1e9


def latency_at(probed: dict[int, float], batch: int) -> float | None:
    """A request's seconds at `batch`: the probe's, else linear between the probed batch sizes
    (a request costs a fixed part plus a part per sample), None without a probe."""
    if not probed:
        return None
    if batch in probed:
        return probed[batch]
    known = sorted(probed)
    low = max([b for b in known if b <= batch], default=known[0])
    high = min([b for b in known if b >= batch], default=known[-1])
    if low == high:
        return probed[low] * batch / low
    share = (batch - low) / (high - low)
    return probed[low] + share * (probed[high] - probed[low])


def window_requests_s(latency_s: float) -> float:
    """Seconds of a time window sized for requests of latency_s seconds one after another:
    MIN_WINDOW_REQUESTS of them, or where that passes WINDOW_CAP_S, WINDOW_CAP_S but at least
    SLOW_WINDOW_REQUESTS of them (0.1 s -> 2.5 s; 1.1 s -> 11 s; 4.3 s -> 43 s)."""
    need_s = MIN_WINDOW_REQUESTS * latency_s
    if need_s > WINDOW_CAP_S:
        need_s = max(WINDOW_CAP_S, SLOW_WINDOW_REQUESTS * latency_s)
    return need_s


def sized(settings: dict[str, Any], latency_s: float | None) -> dict[str, Any]:
    """The settings of one point: with perf.sizing "probe" (the default) and a probed latency, a time
    window of window_requests_s(latency_s) (never shorter than the configured
    measurement_interval_ms, which small models keep as it is, max_trials too); a lengthened window
    gets at most SIZED_MAX_TRIALS trials. "fixed" keeps the settings as given."""
    if settings.get("sizing", "probe") != "probe" or latency_s is None:
        return settings
    if settings["measurement_mode"] != "time_windows":
        return settings  # count windows hold measurement_request_count requests whatever they cost
    need_ms = int(np.ceil(window_requests_s(latency_s) * 1000.0))
    if need_ms <= int(settings["measurement_interval_ms"]):
        return settings
    trials = int(settings.get("max_trials", SIZED_MAX_TRIALS))
    return {
        **settings,
        "measurement_interval_ms": need_ms,
        "max_trials": min(trials, SIZED_MAX_TRIALS),
    }


# perf.capacity.start_rate 0 (the default): the search starts at this share of the throughput one
# request at a time gives at the probed latency (1 / latency requests/s): below what the server holds
# with one instance and no batching, so the first step is usually within and the bracket grows by
# doubling; without a probe it starts at DEFAULT_START_RATE.
START_SHARE = 0.5
DEFAULT_START_RATE = 100


def start_rate(configured: int, latency_s: float | None, max_rate: int) -> int:
    """Requests/s of the capacity search's first step: `configured` (perf.capacity.start_rate) as it
    is where it is set (> 0); else START_SHARE / latency_s (the probed seconds of one request at the
    search's batch size), rounded down, at least 1 and at most max_rate; DEFAULT_START_RATE (at most
    max_rate) without a probe (latency_s None: perf.sizing fixed, no input data, the probe failed)."""
    if configured > 0:
        return int(configured)
    if latency_s is None or latency_s <= 0:
        return min(DEFAULT_START_RATE, int(max_rate))
    return max(1, min(int(max_rate), int(START_SHARE / latency_s)))


def open_loop_window_ms(
    settings: dict[str, Any], configured_ms: int, rate: float, latency_s: float | None
) -> int:
    """perf_analyzer's time window (ms) for an open-loop point at `rate` requests/s: with perf.sizing
    probe (settings["sizing"], the default) long enough for MIN_WINDOW_REQUESTS arrivals
    (MIN_WINDOW_REQUESTS / rate s) and, with a probed latency (s per request), for
    MIN_WINDOW_REQUESTS request latencies, never shorter than `configured_ms`
    (perf.capacity.measurement_interval_ms); perf.sizing fixed: configured_ms as it is. The
    latencies' part follows window_requests_s: past WINDOW_CAP_S, at least SLOW_WINDOW_REQUESTS."""
    if settings.get("sizing", "probe") != "probe" or rate <= 0:
        return int(configured_ms)
    need_s = MIN_WINDOW_REQUESTS / rate
    if latency_s is not None:
        need_s = max(need_s, window_requests_s(latency_s))
    return max(int(configured_ms), int(np.ceil(need_s * 1000.0)))


def probe_one(
    server: TritonServer,
    model_name: str,
    io: dict[str, Any],
    input_data: str | Path | None,
    settings: dict[str, Any],
    batch: int,
    batched: bool = True,
) -> float | None:
    """probe_latency at one batch size where perf.sizing is probe and the perf input data exists
    (seconds of one request), else None; a probe the server refuses is logged and gives None (the
    measurement's own requests then say why they fail)."""
    if (
        settings.get("sizing", "probe") != "probe"
        or not input_data
        or not Path(input_data).is_file()
    ):
        return None
    try:
        return probe_latency(server, model_name, io, input_data, [batch], batched)[batch]
    except Exception as exc:
        server.check_alive()
        log.warning("latency probe failed, sizing as configured: %s", str(exc)[:500])
        return None


class SweepStop:
    """Where a sweep stops before its listed end (Model Navigator's rule: throughput that grows less
    than perf.stop_gain over the best so far, perf.stop_after more steps without it, then give up;
    triton-inference-server/model_navigator, throughput_cutoff_threshold and throughput_backoff_limit):
    offline, along the batch sizes at each concurrency; online, along the concurrencies. A point
    whose p99 passes perf.max_p99_ms ends its sweep too (larger batches or more requests in flight
    only wait longer). stop_gain 0 and max_p99_ms 0 measure every listed point. Only "ok" points
    count towards the rule.

    predicted (offline, perf.sizing probe): batch size -> the infer/s the probe predicts there
    (predicted_throughput); a batch size whose prediction is less than stop_gain over the
    prediction at the batch of the sweep's best measured point (ok or disturbed: only its batch is
    used) cannot gain what the rule asks, and is left out without being measured (the ratio of two
    predictions, so a probe that is off by the same factor everywhere decides alike)."""

    def __init__(
        self, settings: dict[str, Any], predicted: Callable[[int], float | None] | None = None
    ) -> None:
        self.gain = float(settings.get("stop_gain", 0.05) or 0.0)
        self.after = int(settings.get("stop_after", 2))
        self.max_p99_ms = float(settings.get("max_p99_ms", 0) or 0.0)
        self.predicted = predicted
        self.best: dict[int, float] = {}
        self.best_batch: dict[int, int] = {}  # batch of the highest infer/s, ok or disturbed
        self.seen: dict[int, float] = {}  # that infer/s
        self.stalls: dict[int, int] = {}
        self.stopped: dict[int, str] = {}

    @staticmethod
    def _key(point: Point, mode: str) -> int:
        return point.concurrency if mode == "offline" else point.batch

    def reason(self, point: Point, mode: str) -> str:
        """Why this point is left out ("" where it is measured)."""
        key = self._key(point, mode)
        if key in self.stopped:
            return self.stopped[key]
        if mode != "offline" or not self.gain or self.predicted is None:
            return ""
        if key not in self.best_batch or point.batch == self.best_batch[key]:
            return ""
        best_batch = self.best_batch[key]
        here, there = self.predicted(point.batch), self.predicted(best_batch)
        if here is None or there is None or here >= there * (1.0 + self.gain):
            return ""
        return (
            f"left out: the probe predicts {here:.4g} infer/s at batch {point.batch} against "
            f"{there:.4g} at batch {best_batch}, the best measured so far at concurrency "
            f"{point.concurrency} ({self.seen[key]:.4g} infer/s): less than perf.stop_gain "
            f"{100 * self.gain:g} % more"
        )

    def update(self, point: Point, mode: str, status: str, measured: dict[str, Any]) -> None:
        """Count a measured point towards its sweep's stop. A disturbed point's figures only name the
        batch the prediction compares with (its best measured), as the probe's ratio decides."""
        if status not in (Status.OK, Status.DISTURBED):
            return
        key, step = self._key(point, mode), f"batch {point.batch}, concurrency {point.concurrency}"
        try:
            throughput = float(measured[Header.THROUGHPUT])
            p99_ms = float(measured[Header.P99]) / 1000.0
        except (KeyError, TypeError, ValueError):
            return
        if throughput > self.seen.get(key, 0.0):
            self.seen[key] = throughput
            self.best_batch[key] = point.batch
        if status != Status.OK:
            return
        if self.max_p99_ms and p99_ms > self.max_p99_ms:
            self.stopped[key] = (
                f"left out: p99 {p99_ms:.1f} ms at {step} passed perf.max_p99_ms "
                f"{self.max_p99_ms:g}"
            )
            return
        if not self.gain:
            self.best[key] = max(self.best.get(key, 0.0), throughput)
            return
        best = self.best.get(key, 0.0)
        if throughput >= best * (1.0 + self.gain):
            self.stalls[key] = 0
        else:
            self.stalls[key] = self.stalls.get(key, 0) + 1
        self.best[key] = max(best, throughput)
        if self.stalls[key] > self.after:
            self.stopped[key] = (
                f"left out: throughput stopped growing (less than {100 * self.gain:g} % over "
                f"{self.best[key]:.0f} infer/s in {self.stalls[key]} steps up to {step})"
            )


def through_shared_memory(
    client_s: dict[int, float], server_s: dict[int, float]
) -> dict[int, float]:
    """Seconds a request takes through system shared memory, from the probe's gRPC requests: the
    server's own seconds (server_seconds) plus what the smallest batch's request took outside the
    server (the client's and the transport's fixed part, with one small request's copy). A large
    request's tensors are not copied through gRPC there: 0.5 s of the 4.8 s a ResNet-18 batch of
    256 took over gRPC on 2 cores, where perf_analyzer's points through shared memory took 4.3 s as
    the server's statistics did. Empty where either is."""
    if not client_s or not server_s:
        return {}
    low = min(client_s)
    outside = max(0.0, client_s[low] - server_s.get(low, client_s[low]))
    return {b: t + outside for b, t in server_s.items()}


def _per_batch(values: dict[int, float], scale: float, unit: str) -> str:
    """ "batch 1: 19.5 ms, batch 256: 4809.7 ms" of {batch: value} (value x scale, 4 digits)."""
    return ", ".join(f"batch {b}: {scale * v:.5g} {unit}" for b, v in values.items())


def predicted_throughput(probed: dict[int, float], batch: int) -> float | None:
    """Inferences/s one request at a time gives at `batch`, from the probe: batch over latency_at
    (a request costs a fixed part plus a part per sample, linear between the probed batch sizes,
    so the prediction grows with the batch towards 1 / the per-sample part). None without a probe."""
    latency = latency_at(probed, batch)
    return batch / latency if latency else None


# perf.max_job_s auto: seconds of measuring one perf job may spend (after its probe).
AUTO_JOB_S = 150.0


@dataclass(frozen=True)
class JobBudget:
    """perf.max_job_s of one job: seconds (0: no bound), each planned point's estimate (estimate_s's
    about, s) and the points measured whatever the bound (auto: each sweep's first)."""

    seconds: float
    about_s: tuple[float, ...]
    always: frozenset[int] = frozenset()

    def left_s(self, spent_s: float) -> float | None:
        """Seconds of the bound left after spent_s (None: no bound): what a point started now may
        spend measuring again (measure_point's within_s)."""
        return max(0.0, self.seconds - spent_s) if self.seconds else None

    def reason(self, index: int, spent_s: float) -> str:
        """Why point `index` (0-based, planned order) is left out after spent_s seconds of measuring
        ("" where it is measured): it would end past the bound."""
        if not self.seconds or index in self.always:
            return ""
        if spent_s + self.about_s[index] <= self.seconds:
            return ""
        return (
            f"left out: perf.max_job_s {self.seconds:.0f} s would be passed (spent "
            f"{spent_s:.0f} s, this point takes about {self.about_s[index]:.0f} s)"
        )


def job_budget(configured: Any, points: list[Point], about_s: list[float], mode: str) -> JobBudget:
    """perf.max_job_s for a job's planned points (about_s: each one's estimate, s). A number is taken
    as it is (0: no bound); "auto" is AUTO_JOB_S or, for a model whose first point of each sweep
    (offline: its smallest batch at each concurrency; online: its first concurrency) alone takes
    longer, their sum: those are always measured, what does not fit after them is left out.
    AUTO_JOB_S fits issue 29's 20 minutes for the whole pipeline of a ResNet-18-sized model's four
    ONNX formats on 2 cores: four offline jobs at most 10 minutes together, beside about 30 s each
    for the online sweeps, their serving floors and the native baselines (batch-1 requests of
    about 20 ms keep the configured 1 s windows) and about 2 minutes of jobs that measure
    nothing."""
    if configured != "auto":
        return JobBudget(float(configured or 0), tuple(about_s))
    firsts = {SweepStop._key(p, mode): k for k, p in reversed(list(enumerate(points)))}
    first_s = sum(about_s[k] for k in firsts.values())
    return JobBudget(max(AUTO_JOB_S, first_s), tuple(about_s), frozenset(firsts.values()))


def estimate_s(settings: dict[str, Any], latency_s: float | None) -> tuple[float, float]:
    """(about, at most) seconds one point takes: perf_analyzer needs three stable windows after a
    warm-up window; at most max_trials windows, then once more with windows twice as long."""
    if settings["measurement_mode"] == "time_windows":
        window = settings["measurement_interval_ms"] / 1000.0
    else:
        window = settings["measurement_request_count"] * (latency_s or 0.01)
    about = 4 * window + 2.0
    return about, 3 * window * int(settings["max_trials"]) + 4.0


def measure(
    executable: str,
    server: TritonServer,
    model: str,
    fmt: str,
    device: str,
    model_name: str,
    io_json: str | Path,
    settings: dict[str, Any],
    mode: str,
    output: str | Path,
    provenance: dict[str, str] | None = None,
    input_data: str | Path | None = None,
    instances: int = 1,
    max_batch_size: int = 1,
    expected: Expected | None = None,
) -> list[dict[str, Any]]:
    """One sweep against the running server; max_batch_size: the served config's (0: every request
    one whole sample, no -b, batch 1 in the rows). Writes the CSV whole at the end; returns its rows.
    expected (deploysnake.underload.prepare): every point's answers are checked under load.

    Before the sweep, probe_latency at its smallest and largest batch sizes (perf.sizing probe, with
    input data) sizes each point's window (sized); the job then logs its plan (points, windows, about
    how long). Offline through shared memory the probe's server-side seconds (server_seconds) stand
    for a request's: the points do not pay the probe's gRPC copies of the tensors. perf.max_job_s
    (job_budget; 0: no bound, auto: AUTO_JOB_S) bounds the measuring: a point that would end past
    it is not measured, its row's status "left out" (Status.LEFT_OUT) with the reason; so is one
    that SweepStop leaves out (offline, with the probe: one whose predicted throughput cannot gain
    perf.stop_gain). The job logs what it left out at the end."""
    io = json.loads(Path(io_json).read_text())
    load = replace(
        plan_load(io, settings, input_data, max_batch_size), verbose=True, expected=expected
    )
    if (
        mode == "offline"
        and settings["offline"].get("shared_memory", "none") != "none"
        and load.data
        and max_batch_size > 0
    ):
        # Output regions hold what the model returns for the data sent, measured, not guessed.
        per_sample = measured_output_bytes(server, model_name, io, load.data)
        if per_sample:
            log.info("outputs: at most %d bytes per sample (measured)", per_sample)
            load = replace(load, output_size=per_sample)
    described = {
        "instances": instances,
        "input_data": "dataloader" if load.data else "random",
        "input_shapes": input_shapes(input_data if load.shapes else load.data, io, max_batch_size),
    }
    points = sweep(mode, settings, instances, max_batch_size)
    probed: dict[int, float] = {}
    on_server: dict[int, float] = {}
    if settings.get("sizing", "probe") == "probe" and input_data and Path(input_data).is_file():
        ends = sorted({points[0].batch, max(p.batch for p in points)}) if points else []
        try:
            probed = probe_latency(
                server, model_name, io, input_data, ends, load.batched, on_server
            )
        except Exception as exc:  # the sweep's own points say why requests fail; size nothing here
            server.check_alive()
            log.warning("latency probe failed, windows as configured: %s", str(exc)[:500])
    shared = (
        mode == "offline"
        and settings["offline"].get("shared_memory", "none") != "none"
        and max_batch_size > 0
    )
    timing = (
        through_shared_memory(probed, on_server)
        if shared and load.data and on_server and on_server.keys() == probed.keys()
        else probed
    )
    planned = [(p, sized(settings, latency_at(timing, p.batch))) for p in points]
    estimates = [estimate_s(s, latency_at(timing, p.batch)) for p, s in planned]
    budget = job_budget(settings.get("max_job_s", 0), points, [e[0] for e in estimates], mode)
    plan = [
        f"plan ({mode}): {len(points)} point(s)",
        "probe "
        + (", ".join(f"batch {b}: {1000 * t:.1f} ms" for b, t in probed.items()) or "none"),
    ]
    if timing is not probed:
        plan[-1] += " (through shared memory " + _per_batch(timing, 1000.0, "ms") + ")"
    if mode == "offline" and timing:
        predicted = {
            b: predicted_throughput(timing, b) or 0.0 for b in sorted({p.batch for p in points})
        }
        plan.append("predicted " + _per_batch(predicted, 1.0, "infer/s"))
    plan += [
        f"windows {sorted({s['measurement_interval_ms'] for _, s in planned})} ms",
        f"about {sum(e[0] for e in estimates):.0f} s, at most {sum(e[1] for e in estimates):.0f} s "
        "for every point",
    ]
    if budget.seconds:
        plan.append(f"perf.max_job_s {settings.get('max_job_s')}: {budget.seconds:.0f} s")
    log.info("; ".join(plan))
    job_started = time.monotonic()
    stops = SweepStop(settings, (lambda b: predicted_throughput(timing, b)) if timing else None)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="deploysnake-perf-") as tmp:
        for k, (point, point_settings) in enumerate(planned, start=1):
            server.check_alive()
            spent = time.monotonic() - job_started
            reason = stops.reason(point, mode) or budget.reason(k - 1, spent)
            if reason:
                log.warning(
                    "point %d of %d (batch %d, concurrency %d) %s",
                    k,
                    len(points),
                    point.batch,
                    point.concurrency,
                    reason,
                )
                rows.append(
                    {
                        "model": model,
                        "format": fmt,
                        "device": device,
                        "mode": mode,
                        "batch": point.batch,
                        "concurrency": point.concurrency,
                        "status": Status.LEFT_OUT,
                        **described,
                        **(provenance or {}),
                        "reason": reason,
                    }
                )
                continue
            # Bound each call as plan_load does, from the point's own (sized) window.
            point_load = replace(
                load,
                timeout_s=60.0
                + 3
                * point_settings["measurement_interval_ms"]
                / 1000.0
                * int(point_settings["max_trials"]),
            )
            log.info(
                "point %d of %d (%s): batch %d, concurrency %d",
                k,
                len(points),
                mode,
                point.batch,
                point.concurrency,
            )
            started = time.monotonic()
            status, measured, text = measure_point(
                executable,
                model_name,
                server,
                point,
                point_settings,
                mode,
                Path(tmp) / f"point{k}.csv",
                point_load,
                device,
                budget.left_s(spent),
            )
            server.check_alive()
            stops.update(point, mode, status, measured)
            row = {
                "model": model,
                "format": fmt,
                "device": device,
                "mode": mode,
                "batch": point.batch,
                "concurrency": point.concurrency,
                "status": status,
                **measured,
                **described,
                **(provenance or {}),
            }
            if status == Status.FAILED:
                row.update(stage=f"perf_{mode}", reason=error_lines(text), log_excerpt=text[-2000:])
            rows.append(row)
            if status in (Status.OK, Status.DISTURBED):
                log.info(
                    "point %d of %d: %s%s infer/s, p99 %s us (%.1f s); server %s cores, client %s "
                    "cores, foreign %s cores, server peak %s MiB",
                    k,
                    len(points),
                    "DISTURBED " if status == Status.DISTURBED else "",
                    measured.get(Header.THROUGHPUT),
                    measured.get(Header.P99),
                    time.monotonic() - started,
                    measured.get("server_cpu"),
                    measured.get("client_cpu"),
                    measured.get("foreign_cpu"),
                    measured.get("server_peak_rss_mb"),
                )
            elif status == Status.FAILED:
                log.warning(
                    "%s/%s point %d of %d (batch %d, concurrency %d) cannot be measured, recorded as "
                    "failed: %s",
                    model,
                    fmt,
                    k,
                    len(points),
                    point.batch,
                    point.concurrency,
                    row["reason"],
                )
            else:
                log.warning(
                    "point %d of %d: unstable measurement, recorded as unstable:\n%s",
                    k,
                    len(points),
                    text[-1500:],
                )
        repeat_best(
            rows,
            int(settings.get("repeats", 0) or 0),
            lambda k, point, s: measure_point(
                executable,
                model_name,
                server,
                point,
                s,
                mode,
                Path(tmp) / f"repeat{k}.csv",
                replace(
                    load,
                    timeout_s=60.0
                    + 3 * s["measurement_interval_ms"] / 1000.0 * int(s["max_trials"]),
                ),
                device,
            ),
            dict(planned),
        )
        server.check_alive()
    left_out = [r for r in rows if r["status"] == Status.LEFT_OUT]
    log.info(
        "measured %d of %d point(s) in %.0f s%s",
        len(rows) - len(left_out),
        len(rows),
        time.monotonic() - job_started,
        "; left out (not measured, each row's reason says why): "
        + ", ".join(f"batch {r['batch']} concurrency {r['concurrency']}" for r in left_out)
        if left_out
        else "",
    )
    for row in rows:
        row.update(spread_columns(row))
    known = COLUMNS + PERF_ANALYZER_COLUMNS + USAGE_COLUMNS
    columns = known + [c for c in dict.fromkeys(k for r in rows for k in r) if c not in known]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(output)  # only a complete sweep becomes the output
    return rows
