"""One perf_analyzer call: its command line (command), running it bounded in time and memory with
its output kept (run_point, wait_bounded, client_memory_limit_mb), what its console says
(console_figures: each window's throughput, the server's request, inference and execution counts)
and what it failed on (error_lines, UNSTABLE_MARKERS)."""

from __future__ import annotations

import contextlib
import csv
import logging
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import shm
from ..contracts import Status
from ..processes import die_with_parent
from ..server import TritonServer
from .workload import Point

log = logging.getLogger(__name__)


# "No valid requests": not one request finished inside a window (a loaded machine, or a window too short).
UNSTABLE_MARKERS = (
    "Failed to obtain stable measurement",
    "Failed to get stable",
    "No valid requests recorded within time interval",
)

# Request-rate mode (open loop) exits 0 with a CSV row when no window was stable: no result.
UNSTABLE_EXIT_0 = ("Request latency is not stabilizing",)


def error_lines(output: str, count: int = 3) -> str:
    """The last `count` lines of perf_analyzer's output that say what failed (else its last line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"error|fail|invalid|out of", line, re.I)]
    return " | ".join((errors or lines[-1:])[-count:])[-1500:]


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


def remove_leftovers(tensors: tuple[str, ...]) -> None:
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
