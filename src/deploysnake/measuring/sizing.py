"""Sizing the measurement from the model: the latency probe before a sweep (probe_latency,
probe_one: one request per batch size over gRPC, and the server's own seconds of it), the windows
sized from it (sized, window_requests_s, open_loop_window_ms), the capacity search's first rate
(start_rate), where a sweep stops (SweepStop: Model Navigator's rule and the probe's prediction) and
how much one job may spend (job_budget, estimate_s: perf.max_job_s)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..contracts import Header, Status
from ..perfdata import batches, read_samples
from ..server import TritonServer
from .workload import Point

log = logging.getLogger(__name__)


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
