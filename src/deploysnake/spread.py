"""Spread of a measured figure, the requests behind a percentile, and what limits a perf point.

Pure functions on numbers (no I/O): perf.py computes the CSV's columns with them, the report and the
summary read those columns.

- spread: mean, coefficient of variation and a 95 % Student-t interval of repeated measurements
  (AIPerf reports each metric of repeated profiles this way: mean, CV, confidence interval).
- percentile_support: whether a latency percentile rests on enough requests by MLPerf Inference's
  rule, and the percentile range it does support.
- ratio: a ratio of two independently measured figures (served/native, served/floor,
  tuned/untuned, search quality) with its 95 % interval (delta method on the log ratio,
  Welch-Satterthwaite degrees of freedom).
- overlap / within_noise: two figures whose intervals overlap are not ranked.
- diagnose: one line on what limits a point, from perf_analyzer's latency split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from .contracts import Header, number


def _t_quantile(q: float, df: float) -> float:
    """Student's t quantile: scipy.stats.t.ppf(q, df), which is scipy.special.stdtrit(df, q).
    Imported here, and from scipy.special only: scipy.stats costs every workflow job that imports
    this module (a fresh Python process per job) most of a second, scipy.special a fifth of it."""
    from scipy.special import stdtrit  # type: ignore[import-untyped]

    return float(stdtrit(df, q))


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
    half = _t_quantile(1 - (1 - confidence) / 2, n - 1) * sd / math.sqrt(n)
    return Spread(n, mean, sd / mean if mean else None, mean - half, mean + half)


def of_columns(row: Mapping[str, Any], prefix: str = "infer_s") -> Spread | None:
    """The Spread written as `<prefix>_n/_mean/_cv/_low/_high` columns (interval_columns; perf.py's
    and native.py's CSVs), or None where the row has no such columns (an older result, a point
    without numbers). An empty CV (one sample, or a zero mean) reads as None."""

    n, mean, cv, low, high = (
        number(row.get(f"{prefix}_{k}")) for k in ("n", "mean", "cv", "low", "high")
    )
    if not n or mean is None or low is None or high is None:
        return None
    return Spread(int(n), mean, cv, low, high)


def at_figure(value: float, measured: Spread | None) -> Spread:
    """The figure as reported (perf_analyzer's merged windows, the in-process run's whole window)
    with the repeats and CV of its measured spread, for ratio: the ratio is then the reported
    figures' ratio and its interval their spreads'. measured None: one sample, no spread."""
    if measured is None or measured.n < 2:
        return Spread(1, value, None, value, value)
    return Spread(measured.n, value, measured.cv, measured.low, measured.high)


def interval_columns(prefix: str, samples: Sequence[float], digits: int) -> dict[str, Any]:
    """<prefix>_n, _mean, _cv, _low, _high of samples (spread), rounded to `digits` decimals (CV to
    4); the low end cut at 0 (throughputs and latencies are never negative, and two samples far
    apart give a t-interval wider than the mean). Raises as spread does."""
    s = spread(samples)
    return {
        f"{prefix}_n": s.n,
        f"{prefix}_mean": round(s.mean, digits),
        f"{prefix}_cv": round(s.cv, 4) if s.cv is not None else "",
        f"{prefix}_low": round(max(0.0, s.low), digits),
        f"{prefix}_high": round(s.high, digits),
    }


@dataclass(frozen=True)
class Ratio:
    """A ratio of two measured figures, numerator over denominator: value, the ratio of their means;
    n and n_den, the repeats behind each; cv, the coefficient of variation of one measured ratio
    (sqrt(cv_num² + cv_den²), a fraction; None where neither figure has a spread); low, high, the
    95 % interval (both the value where neither has a spread); df, the interval's
    Welch-Satterthwaite degrees of freedom (None without an interval)."""

    value: float
    n: int
    n_den: int
    cv: float | None
    low: float
    high: float
    df: float | None


def ratio(num: Spread, den: Spread, confidence: float = CONFIDENCE) -> Ratio:
    """The ratio num.mean / den.mean of two independently measured figures and its confidence
    interval, by the delta method on the log ratio: var(ln(mean_a / mean_b)) ~ cv_a² / n_a +
    cv_b² / n_b (the delta method, e.g. Casella & Berger, Statistical Inference, 2nd ed., 5.5.4,
    applied to each log mean), with the Welch-Satterthwaite degrees of freedom of that sum
    (Satterthwaite 1946, Welch 1947: df = (Σ v_i)² / Σ v_i² / (n_i - 1)), and the interval
    exp(ln value ± t(1 - (1 - confidence) / 2, df) · se): never below 0, asymmetric about the value
    as a ratio's spread is. A figure of one sample (n 1, no CV) counts as exact: the interval is the
    other's alone; both of one sample: no interval (low = high = value, cv None). Each figure's CV
    is its sample standard deviation over its mean (Spread.cv). Paired rounds (a side by side) are
    treated as independent, which is conservative: the pairing's cancelling of drift is not
    credited. Raises ValueError for a mean that is not positive."""
    if num.mean <= 0 or den.mean <= 0:
        raise ValueError(f"a ratio needs positive means, not {num.mean} / {den.mean}")
    value = num.mean / den.mean
    parts = [
        (s.cv * s.cv / s.n, s.n) for s in (num, den) if s.n >= 2 and s.cv is not None and s.cv > 0
    ]
    cvs = [s.cv for s in (num, den) if s.n >= 2 and s.cv is not None]
    cv = math.sqrt(sum(c * c for c in cvs)) if cvs else None
    if not parts:
        return Ratio(value, num.n, den.n, cv, value, value, None)
    var = sum(v for v, _ in parts)
    df = var * var / sum(v * v / (n - 1) for v, n in parts)
    half = _t_quantile(1 - (1 - confidence) / 2, df) * math.sqrt(var)
    return Ratio(value, num.n, den.n, cv, value * math.exp(-half), value * math.exp(half), df)


def ratio_of_samples(num: Sequence[float], den: Sequence[float]) -> Ratio:
    """ratio(spread(num), spread(den)): the ratio of two sets of repeated measurements."""
    return ratio(spread(num), spread(den))


def describe_ratio(r: Ratio | Mapping[str, Any] | None, digits: int = 3, what: str = "") -> str:
    """A ratio's interval as a report cell: "95 % 0.871-0.955 (n 3/5 runs, CV 2.1 %)" (n: the
    numerator's and the denominator's repeats; what: what a repeat is, e.g. "rounds"), from a
    Ratio or a mapping with its low, high, n, n_den and cv (ratio_fields, tuning.gain); "single
    run, no interval" where neither figure has a spread (df or low missing); "" for None."""
    if r is None:
        return ""
    low: Any
    high: Any
    n: Any
    n_den: Any
    cv: Any
    if isinstance(r, Ratio):
        low, high = (r.low, r.high) if r.df is not None else (None, None)
        n, n_den, cv = r.n, r.n_den, r.cv
    else:
        low, high, n, n_den, cv = (r.get(k) for k in ("low", "high", "n", "n_den", "cv"))
    if low is None or high is None:
        return "single run, no interval"
    about = f"n {n}/{n_den}" + (f" {what}" if what else "")
    if cv is not None:
        about += f", CV {100 * float(cv):.1f} %"
    return f"95 % {float(low):.{digits}f}-{float(high):.{digits}f} ({about})"


def ratio_text(
    num: float | None,
    num_n: float | None,
    num_cv: float | None,
    den: float | None,
    den_n: float | None,
    den_cv: float | None,
    digits: int = 3,
) -> str:
    """describe_ratio of num / den, two reported figures each with the repeats (n) and CV of its
    measured spread (a table's columns: infer_s_n, infer_s_cv; None or n < 2: one sample, exact).
    "" where either figure is missing or not positive."""
    if not num or not den or num <= 0 or den <= 0:
        return ""

    def side(value: float, n: float | None, cv: float | None) -> Spread:
        return at_figure(
            value, Spread(int(n), value, cv, value, value) if n and n >= 2 and cv else None
        )

    return describe_ratio(ratio(side(num, num_n, num_cv), side(den, den_n, den_cv)), digits)


def ratio_fields(r: Ratio) -> dict[str, Any]:
    """The ratio's spread as summary.json's spread object (method ratio, summary.schema.json)."""
    return {
        "method": "ratio",
        "relative": (r.high - r.low) / 2 / r.value if r.value else None,
        "low": r.low,
        "high": r.high,
        "n": r.n,
        "n_den": r.n_den,
        "cv": r.cv,
        "level": CONFIDENCE,
    }


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
    floor's latency at the same point (deploysnake.measuring.floor; None: not measured); client_cpu: cores
    perf_analyzer used, of client_cores it could have. In order: client-bound (perf_analyzer's own
    CPU busy, or client send and receive over CLIENT_SHARE of the latency), queue-bound (the batcher
    waits: Server Queue over QUEUE_SHARE), serving-path bound (the latency within FLOOR_FACTOR of a
    model that computes nothing), else compute-bound. Returns "" where the split has no latency."""
    part = {k: max(0.0, float(v)) for k, v in split.items()}
    total = sum(part.values())
    if total <= 0:
        return ""
    client = part.get(Header.CLIENT_SEND, 0.0) + part.get(Header.CLIENT_RECV, 0.0)
    queue = part.get(Header.SERVER_QUEUE, 0.0)
    infer = part.get(Header.COMPUTE_INFER, 0.0)

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


# summary.json's spread objects (summary.schema.json's spread): which method, the relative
# half-width, the bounds.
def stability_spread(value: float | None, percentage: float) -> dict[str, Any] | None:
    """perf_analyzer's criterion as a spread: its windows agreed within +-percentage % of value."""
    if value is None:
        return None
    rel = percentage / 100.0
    return {
        "method": "stability_percentage",
        "relative": rel,
        "low": value * (1 - rel),
        "high": value * (1 + rel),
    }


def interval_spread(row: Mapping[str, Any], prefix: str) -> dict[str, Any] | None:
    """A 95 % Student-t interval from perf.py's `<prefix>_n/_mean/_low/_high` columns (method
    interval); None without one (fewer than two samples)."""
    n, mean, low, high = (number(row.get(f"{prefix}_{k}")) for k in ("n", "mean", "low", "high"))
    if not n or n < 2 or mean is None or low is None or high is None:
        return None
    return {
        "method": "interval",
        "relative": (high - low) / 2 / mean if mean else None,
        "low": low,
        "high": high,
        "n": int(n),
        "level": CONFIDENCE,
        "mean": mean,
        "cv": number(row.get(f"{prefix}_cv")),
    }


def p99_spread(
    p95_us: float | None, p99_us: float | None, percentage: float
) -> dict[str, Any] | None:
    """The spread of a point's p99 latency: perf_analyzer's stability band (its criterion holds the
    last 3 windows' throughput and AVERAGE latency within +-percentage %; p99 is not part of it
    unless --percentile is given, which deploysnake does not) widened by the run's own tail term,
    (p99 - p95) / p99. Why that term: a p99 rests on the slowest 1 % of the requests, a handful per
    window; the distribution-free 95 % confidence interval of the 99th percentile of n samples
    (order statistics, e.g. Conover, Practical Nonparametric Statistics, 3rd ed., section 3.2:
    ranks n*0.99 -+ 1.96*sqrt(n*0.99*0.01)) reaches down no further than the 95th percentile from
    n >= 24 requests on, so the p95-to-p99 distance bounds how far below its estimate the p99 may
    lie, and is taken as the half-width both ways. None without a p99; p95 unknown (older
    summaries): the stability band alone."""
    if p99_us is None or p99_us <= 0:
        return None
    tail = max(0.0, (p99_us - p95_us) / p99_us) if p95_us is not None else 0.0
    rel = percentage / 100.0 + tail
    return {
        "method": "stability_percentage",
        "relative": rel,
        "low": p99_us * max(0.0, 1 - rel),
        "high": p99_us * (1 + rel),
    }


def capacity_spread(result: Mapping[str, Any], resolution: float) -> dict[str, Any] | None:
    """The capacity's spread: the true capacity lies between the rate found within the SLA and the
    first rate found beyond it (the search's bracket); without a rate beyond it, the search's
    resolution stands for the bracket. relative: the bracket's width over the capacity. achieved:
    the infer/s achieved at the rate found, n windows' mean, CV and 95 % interval
    (capacity.achieved_spread; None where not recorded)."""
    rps = number(result.get("capacity_rps"))
    if not rps:
        return None
    upper = number(result.get("upper_rate"))
    rel = (upper - rps) / rps if upper else resolution
    return {
        "method": "bracket",
        "relative": rel,
        "low": rps,
        "high": upper or rps * (1 + rel),
        # the infer/s achieved at that rate: its interval over perf_analyzer's windows there
        "achieved": interval_spread(result, "achieved_infer_s"),
    }
