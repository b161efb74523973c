"""The capacity search and its figures: the highest open-loop request rate a deployment holds
within a p99 budget, as pure functions over measured rates (no server, no files).

The capacity search (the question of Model Analyzer's request-rate search and MLPerf's Server
scenario): bracketing from `start_rate` (0: from the latency probe, sizing.start_rate), doubling
while p99 holds (halving when the start already fails), then bisection until the bracket is
narrower than `resolution` x its lower rate, at most `max_measurements` rates (search, over a
measure callback). A rate is "within" when its point is stable, the client kept up (kept_up) and
p99 <= the budget; an unstable point (latency still growing: the queue does not drain) or a client
that fell behind bounds the search from above. summary, achieved_spread, describe and
cost_per_million turn the measured rates into the capacity's figures, its interval and its cost.
Measuring the rates on a server, the rate files and the workflow's job: open_loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..contracts import BREAKDOWN, PERF_ANALYZER_COLUMNS, REQUEST_RATE, Status, Target, number
from ..spread import interval_columns
from .perf import COLUMNS

# perf_analyzer 2.51's console lines in request-rate mode (the CSV has neither figure).
SEND_RATE = re.compile(r"Avg send request rate:\s*([0-9.]+)")

DELAYED = re.compile(r"([0-9.]+)% of the requests were delayed")

REQUESTS = re.compile(r"Client:\s*\n\s*Request count:\s*(\d+)")

# The request-rate CSV's first column is "Request Rate" where the concurrency CSV has Header.CONCURRENCY.
RATE_COLUMNS = [
    *COLUMNS,
    "request_rate",
    "distribution",
    "step",
    "within_budget",
    "achieved_rate",
    "send_rate",
    "delayed_percent",
    "kept_up",
    REQUEST_RATE,
    *PERF_ANALYZER_COLUMNS,
]

# A point whose status is one of these has no latency figures that count.
# disturbed: foreign CPU load above perf.max_foreign_cpu, twice (perf.measure_point, usage.Window)
NOT_A_RESULT = (Status.UNSTABLE, Status.CLIENT_BEHIND, Status.DISTURBED)


@dataclass(frozen=True)
class Rate:
    """One measured rate: its CSV row (perf_analyzer's columns) and what the search reads."""

    rate: int
    status: str  # ok, unstable, client_behind
    p50_us: float | None
    p99_us: float | None
    row: dict[str, Any]

    def within(self, budget_us: float) -> bool:
        return self.status == Status.OK and self.p99_us is not None and self.p99_us <= budget_us


def client_figures(output: str) -> tuple[float | None, float | None, int | None]:
    """(send rate in requests/s, % of requests sent late, requests measured) from perf_analyzer's
    console output; None where it printed none (no warning: no request was late)."""
    send = SEND_RATE.findall(output)
    delayed = DELAYED.findall(output)
    count = REQUESTS.findall(output)
    reported = "Client:" in output  # its report; without a warning, no request was late
    return (
        float(send[-1]) if send else None,
        float(delayed[-1]) if delayed else (0.0 if reported else None),
        int(count[-1]) if count else None,
    )


def kept_up(
    rate: float,
    send_rate: float | None,
    delayed_percent: float | None,
    tolerance: float,
    requests: int | None = None,
    poisson: bool = True,
) -> bool:
    """Whether the client issued the scheduled load: no request sent late, or a send rate within
    `tolerance` (a fraction) of the offered rate, widened for Poisson arrivals by three standard
    deviations of their count (3 / sqrt(requests): a Poisson schedule of 150 requests falls 8 %
    short of its mean one time in six). perf_analyzer 2.51 prints "Avg send request rate" only
    beside its warning that "N% of the requests were delayed", which counts any lateness,
    microseconds included (4 % at 200 requests/s with an idle client here): the send rate
    decides."""
    if delayed_percent == 0.0:
        return True
    if send_rate is None:
        return False
    slack = tolerance + (3.0 / requests**0.5 if poisson and requests else 0.0)
    return send_rate >= (1.0 - slack) * rate


def search(
    measure: Callable[[int, str], Rate],
    budget_us: float,
    start_rate: int,
    max_rate: int,
    resolution: float,
    max_measurements: int,
    min_rate: int = 1,
) -> dict[str, Any]:
    """The highest rate (requests/s, an integer) within the budget, by bracketing then bisection.

    measure(rate, step) measures one rate (step: "bracket" or "bisect"); it is called at most
    max_measurements times and never twice for one rate. Returns {"capacity": Rate or None,
    "upper": the lowest rate found beyond the budget or None, "status", "steps": [(step, Rate)],
    "lowest": the lowest rate measured}. status: "within_budget" (bracket narrower than
    resolution x capacity), "bounded" (max_measurements reached first), "at_max_rate" (max_rate
    itself holds: the capacity is at least that), "none_within_budget" (no rate down to min_rate
    holds)."""
    steps: list[tuple[str, Rate]] = []
    seen: set[int] = set()

    def probe(rate: int, step: str) -> Rate:
        seen.add(rate)
        found = measure(rate, step)
        steps.append((step, found))
        return found

    lo: Rate | None = None
    hi: Rate | None = None
    rate = max(min_rate, min(start_rate, max_rate))
    while len(steps) < max_measurements:  # bracketing upwards: double while the budget holds
        found = probe(rate, "bracket")
        if not found.within(budget_us):
            hi = found
            break
        lo = found
        if rate >= max_rate:
            break
        rate = min(max_rate, 2 * rate)
    if lo is None and hi is not None:  # the start fails already: halve until one holds
        rate = hi.rate // 2
        while rate >= min_rate and rate not in seen and len(steps) < max_measurements:
            found = probe(rate, "bracket")
            if found.within(budget_us):
                lo = found
                break
            hi, rate = found, rate // 2
    while (  # bisection of [lo, hi] to the resolution
        lo is not None
        and hi is not None
        and len(steps) < max_measurements
        and hi.rate - lo.rate > max(1.0, resolution * lo.rate)
    ):
        mid = (lo.rate + hi.rate) // 2
        if mid in seen:
            break
        found = probe(mid, "bisect")
        if found.within(budget_us):
            lo = found
        else:
            hi = found
    if lo is None:
        status = "none_within_budget"
    elif hi is None:
        status = Status.AT_MAX_RATE if lo.rate >= max_rate else Status.BOUNDED
    elif hi.rate - lo.rate <= max(1.0, resolution * lo.rate):
        status = "within_budget"
    else:
        status = "bounded"
    lowest = min((r for _, r in steps), key=lambda r: r.rate, default=None)
    stable = min((r for _, r in steps if r.p99_us is not None), key=lambda r: r.rate, default=None)
    return {
        "capacity": lo,
        "upper": hi,
        "status": status,
        "steps": steps,
        "lowest": lowest,
        "lowest_stable": stable,
    }


def summary(
    outcome: dict[str, Any],
    target: Target,
    settings: dict[str, Any],
    budget_ms: float,
) -> dict[str, Any]:
    """The search's result as written to <output>.json: capacity (requests/s and infer/s), p50/p99
    there (µs), the latency breakdown at that point (perf_analyzer's columns, µs), the first rate
    beyond it and why, or, with no rate within the budget, the lowest rate's p99."""
    cap: Rate | None = outcome["capacity"]
    upper: Rate | None = outcome["upper"]
    lowest: Rate | None = outcome["lowest"]
    stable: Rate | None = outcome.get("lowest_stable")
    batch = int(settings["batch_size"])
    breakdown = {c: number(cap.row.get(c)) for c in BREAKDOWN} if cap is not None else {}
    return {
        **target.columns(),
        "status": outcome["status"],
        "p99_budget_ms": budget_ms,
        "batch": batch,
        "distribution": settings["distribution"],
        "resolution": settings["resolution"],
        "capacity_rps": cap.rate if cap else None,
        "capacity_infer_per_s": cap.rate * batch if cap else None,
        "achieved_rate": number(cap.row.get("achieved_rate")) if cap else None,
        "p50_us": cap.p50_us if cap else None,
        "p99_us": cap.p99_us if cap else None,
        "breakdown_us": breakdown,
        # the achieved infer/s at the rate found, over perf_analyzer's windows there
        **(achieved_spread(cap.row) if cap is not None else {}),
        "upper_rate": upper.rate if upper else None,
        "upper_reason": (
            None
            if upper is None
            else "over_budget"
            if upper.status == Status.OK
            else upper.status  # unstable or client_behind
        ),
        "upper_p99_us": upper.p99_us if upper else None,
        "lowest_rate": lowest.rate if lowest else None,
        "lowest_status": lowest.status if lowest else None,
        "lowest_p99_us": lowest.p99_us if lowest else None,
        "lowest_stable_rate": stable.rate if stable else None,
        "lowest_stable_p99_us": stable.p99_us if stable else None,
        "measurements": len(outcome["steps"]),
        "measured_now": outcome.get("measured"),
        "from_cache": outcome.get("cached"),
        "steps": [
            {"step": step, "rate": r.rate, "status": r.status, "p99_us": r.p99_us}
            for step, r in outcome["steps"]
        ],
    }


def achieved_spread(row: dict[str, Any]) -> dict[str, Any]:
    """achieved_infer_s_n, _mean, _cv, _low, _high (deploysnake.spread.interval_columns): the
    95 % interval of the infer/s achieved at a rate, over perf_analyzer's windows there
    (window_infer_s, its last STABLE_WINDOWS); empty with fewer than two windows (a rate measured
    before the search recorded them)."""
    windows = [float(v) for v in str(row.get("window_infer_s") or "").split(";") if v.strip()]
    return interval_columns("achieved_infer_s", windows, 3) if len(windows) >= 2 else {}


def describe(result: dict[str, Any]) -> str:
    """One line: the capacity and where it stops (the search's bracket: the capacity lies between
    the rate found and the first beyond it), the infer/s achieved there with its 95 % interval over
    perf_analyzer's windows (achieved_spread; "single run, no interval" for a result without
    them), that no rate meets the budget, or why the search failed."""
    if result["status"] == Status.FAILED:
        return f"the search failed: {result['reason']}"
    budget = f"p99 ≤ {result['p99_budget_ms']:g} ms"
    if result["capacity_rps"] is None:
        p99 = result.get("lowest_p99_us")
        there = f"p99 {p99 / 1000:,.2f} ms" if p99 is not None else str(result["lowest_status"])
        lowest = result["lowest_rate"]
        text = f"no rate meets {budget}: the lowest measured, {lowest} req/s, gave {there}"
        if p99 is None and result.get("lowest_stable_p99_us") is not None:
            text += (
                f"; the lowest with a stable measurement, {result['lowest_stable_rate']} req/s, "
                f"gave p99 {result['lowest_stable_p99_us'] / 1000:,.2f} ms"
            )
        return text
    text = (
        f"{result['capacity_rps']:,} req/s at {budget} (p50 {result['p50_us'] / 1000:,.2f} ms, "
        f"p99 {result['p99_us'] / 1000:,.2f} ms)"
    )
    if result["status"] == Status.AT_MAX_RATE:
        text += ": the search's max_rate, the capacity is at least this"
    elif result["upper_rate"] is not None:
        text += f"; {result['upper_rate']:,} req/s: {result['upper_reason'].replace('_', ' ')}"
        if result["status"] == Status.BOUNDED:
            text += " (max_measurements reached before the resolution)"
        text += f"; the capacity lies in {result['capacity_rps']:,}-{result['upper_rate']:,} req/s"
    n = result.get("achieved_infer_s_n")
    if n and int(n) >= 2:
        cv = result.get("achieved_infer_s_cv")
        text += (
            f"; achieved {result['achieved_infer_s_mean']:,.0f} infer/s there, 95 % "
            f"{result['achieved_infer_s_low']:,.0f}-{result['achieved_infer_s_high']:,.0f} "
            f"(n {int(n)} windows"
            + (f", CV {100 * float(cv):.1f} %" if cv not in (None, "") else "")
            + ")"
        )
    else:
        text += "; achieved rate: single run, no interval"
    return text


def cost_per_million(
    capacity_infer_per_s: float | None, per_hour: dict[str, float], device: str
) -> float | None:
    """What a million inferences cost at the capacity: per_hour[device] (the user's price of one
    instance-hour of that device, any currency) / (capacity infer/s x 3600) x 1e6. None without a
    price for the device or without a capacity."""
    price = per_hour.get(device)
    if price is None or not capacity_infer_per_s:
        return None
    return float(price) / (float(capacity_infer_per_s) * 3600.0) * 1e6
