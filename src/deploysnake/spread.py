"""Spread of a measured figure, the requests behind a percentile, and what limits a perf point.

Pure functions on numbers (no I/O): perf.py computes the CSV's columns with them, the report and the
summary read those columns.

- spread: mean, coefficient of variation and a 95 % Student-t interval of repeated measurements
  (AIPerf reports each metric of repeated profiles this way: mean, CV, confidence interval).
- percentile_support: whether a latency percentile rests on enough requests by MLPerf Inference's
  rule, and the percentile range it does support.
- overlap / within_noise: two figures whose intervals overlap are not ranked.
- diagnose: one line on what limits a point, from perf_analyzer's latency split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from scipy import stats  # type: ignore[import-untyped]

# Confidence of the interval on repeated measurements.
CONFIDENCE = 0.95
# MLPerf Inference's confidence for a tail-latency percentile and its margin rule: margin =
# (1 - percentile) / 20, queries = NormsInv((1 - confidence) / 2)^2 * p (1 - p) / margin^2; 99 %
# confidence gives 23,886 queries for p90, 50,425 for p95 and 262,742 for p99 (margin 0.05 %)
# (mlcommons/inference_policies, inference_rules.adoc, "Appendix Number of Queries" and its table).
MLPERF_CONFIDENCE = 0.99


@dataclass(frozen=True)
class Spread:
    """Repeated measurements of one figure: n samples, their mean, coefficient of variation (sample
    standard deviation over the mean, a fraction; None for one sample or a zero mean) and the 95 %
    Student-t interval of the mean (low, high; both the mean for one sample: no interval)."""

    n: int
    mean: float
    cv: float | None
    low: float
    high: float


def spread(samples: Sequence[float], confidence: float = CONFIDENCE) -> Spread:
    """Mean, CV and the Student-t interval mean ± t(1 - (1 - confidence) / 2, n - 1) · s / sqrt(n)
    of `samples` (any unit; the result is in the same unit). Raises ValueError for no samples or a
    sample that is not finite."""
    values = [float(v) for v in samples]
    if not values:
        raise ValueError("no samples to compute a spread from")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"a sample is not a finite number: {values}")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return Spread(1, mean, None, mean, mean)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return Spread(n, mean, sd / mean if mean else None, mean - half, mean + half)


def overlap(a: Spread, b: Spread) -> bool:
    """Whether the two intervals share a value: the figures cannot be ranked at their confidence.
    Intervals of one sample (no spread known) overlap only where the values are equal."""
    return a.low <= b.high and b.low <= a.high


def mlperf_min_requests(percentile: float, confidence: float = MLPERF_CONFIDENCE) -> int:
    """Requests MLPerf Inference requires behind a latency `percentile` (0-100, e.g. 99): z² · p (1 - p)
    / margin² with margin (1 - p) / 20 and z the normal quantile of (1 - confidence) / 2 (see
    MLPERF_CONFIDENCE's source); 262,742 for p99, 23,886 for p90. Raises ValueError outside (0, 100)."""
    p = percentile / 100.0
    if not 0 < p < 1:
        raise ValueError(f"a percentile is between 0 and 100, not {percentile}")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    margin = (1 - p) / 20
    return math.ceil(z * z * p * (1 - p) / (margin * margin))


@dataclass(frozen=True)
class Support:
    """What `requests` requests support for one percentile: enough (MLPerf's minimum met), the
    margin (percentile points) of the stated percentile at MLPerf's confidence, so the figure is
    somewhere between the (percentile - margin)th and the (percentile + margin)th, and the highest
    percentile (0-100) whose MLPerf minimum those requests meet."""

    requests: int
    minimum: int
    enough: bool
    margin: float
    supported: float


def percentile_support(
    requests: int, percentile: float = 99.0, confidence: float = MLPERF_CONFIDENCE
) -> Support:
    """The percentile's support from `requests` requests (the count behind perf_analyzer's
    percentiles): margin = z · sqrt(p (1 - p) / requests) in percentile points (MLPerf's sample-size
    equation solved for the margin), supported = the highest p with requests >= z² · 400 · p / (1 - p),
    MLPerf's minimum at its own margin rule. Raises ValueError for fewer than one request."""
    if requests < 1:
        raise ValueError(f"a percentile rests on at least one request, not {requests}")
    p = percentile / 100.0
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    minimum = mlperf_min_requests(percentile, confidence)
    margin = 100.0 * z * math.sqrt(p * (1 - p) / requests)
    supported = 100.0 * requests / (requests + 400.0 * z * z)
    return Support(requests, minimum, requests >= minimum, margin, supported)


# Formats of reduced precision: the name says so (onnx_fp16, onnx_int8, tensorrt_fp16).
REDUCED = ("fp16", "bf16", "int8", "fp8")


def simplicity(fmt: str, instances: int = 1) -> tuple[int, int]:
    """Sort key, simplest first: full precision before reduced (no accuracy traded), then fewer
    model instances (less memory, fewer cores taken)."""
    return (int(any(fmt.endswith(r) for r in REDUCED)), instances)


def within_noise(fastest: Spread, other: Spread) -> bool:
    """Whether `other` cannot be told from the `fastest` figure: both intervals known (n >= 2) and
    overlapping. One-sample figures are ranked as measured (no spread to judge by)."""
    return fastest.n >= 2 and other.n >= 2 and overlap(fastest, other)


# The shares of a point's latency (perf_analyzer's split, µs) above which a part limits it.
QUEUE_SHARE = 0.3
CLIENT_SHARE = 0.5
# A point within this factor of the serving floor's latency is bound by the serving path.
FLOOR_FACTOR = 1.5
# Cores perf_analyzer may use before it is taken as the limit (its own CPU, usage's client_cpu).
CLIENT_CPU_BUSY = 0.9


def diagnose(
    mode: str,
    split: dict[str, float],
    floor_latency_us: float | None = None,
    client_cpu: float | None = None,
    client_cores: float | None = None,
) -> str:
    """One line on what limits a point, with the setting to change. split: perf_analyzer's latency
    columns in µs ("Client Send", "Network+Server Send/Recv", "Server Queue", "Server Compute Input",
    "Server Compute Infer", "Server Compute Output", "Client Recv"); floor_latency_us: the serving
    floor's latency at the same point (deploysnake.floor; None: not measured); client_cpu: cores
    perf_analyzer used, of client_cores it could have. In order: client-bound (perf_analyzer's own
    CPU busy, or client send and receive over CLIENT_SHARE of the latency), queue-bound (the batcher
    waits: Server Queue over QUEUE_SHARE), serving-path bound (the latency within FLOOR_FACTOR of a
    model that computes nothing), else compute-bound. Returns "" where the split has no latency."""
    part = {k: max(0.0, float(v)) for k, v in split.items()}
    total = sum(part.values())
    if total <= 0:
        return ""
    client = part.get("Client Send", 0.0) + part.get("Client Recv", 0.0)
    queue = part.get("Server Queue", 0.0)
    infer = part.get("Server Compute Infer", 0.0)

    def pct(x: float) -> str:
        return f"{100 * x / total:.0f} %"

    if (
        client_cpu is not None and client_cores and client_cpu >= CLIENT_CPU_BUSY * client_cores
    ) or (client > CLIENT_SHARE * total):
        cpu = f", perf_analyzer used {client_cpu:.2f} cores" if client_cpu is not None else ""
        return (
            f"client-bound: client send/receive {pct(client)} of the latency{cpu}; measure from "
            "another machine or give the client more cores (a larger batch sends fewer requests)"
        )
    if queue > QUEUE_SHARE * total:
        setting = (
            "lower triton.dynamic_batching.max_queue_delay_us or add instances (triton.instances)"
            if mode == "online"
            else "fewer requests in flight (perf.offline.concurrency) or more instances (triton.instances)"
        )
        return f"queue-bound: requests wait {pct(queue)} of the latency in the server's queue; {setting}"
    if floor_latency_us and total <= FLOOR_FACTOR * floor_latency_us:
        return (
            f"serving-path bound: latency {total:.0f} µs, within {FLOOR_FACTOR:g}x of the serving "
            f"floor's {floor_latency_us:.0f} µs (a model that computes nothing); larger batches "
            "(perf.offline.batch_sizes, triton.dynamic_batching.preferred_batch_sizes) or shared "
            "memory amortise the per-request cost"
        )
    return (
        f"compute-bound: the runtime computes {pct(infer)} of the latency; a faster format "
        "(reduced precision, an optimised graph), more instances where cores are free "
        "(triton.instances), or a larger batch"
    )
