"""perf.sizing probe beyond the sweeps (issue 29): the capacity search's start rate and open-loop
windows, and a tuning trial's window, from the probed latency; values set in the config taken as
they are."""

from __future__ import annotations

import pytest

from deploysnake import perf

TIME = {"measurement_mode": "time_windows", "measurement_interval_ms": 500, "sizing": "probe"}


@pytest.mark.parametrize(
    ("configured", "latency_s", "max_rate", "expected"),
    [
        (0, 0.050, 100_000, 10),  # a ResNet-sized request of 50 ms: half of 20 req/s
        (0, 0.0004, 100_000, 1250),  # a small model: starts high, fewer doublings
        (0, 0.0004, 1000, 1000),  # never above max_rate
        (0, 3.0, 100_000, 1),  # a request of seconds: at least 1 req/s
        (0, None, 100_000, perf.DEFAULT_START_RATE),  # nothing probed: the former default
        (0, None, 40, 40),
        (300, 0.050, 100_000, 300),  # set in the config: as it is
    ],
)
def test_start_rate(configured: int, latency_s: float | None, max_rate: int, expected: int) -> None:
    assert perf.start_rate(configured, latency_s, max_rate) == expected


def test_open_loop_window_holds_25_arrivals_and_25_latencies() -> None:
    # 10 req/s: 25 arrivals take 2.5 s, beyond the configured 2 s
    assert perf.open_loop_window_ms(TIME, 2000, 10, 0.05) == 2500
    # 1000 req/s of 10 ms requests: 25 latencies, 250 ms, within the configured 2 s
    assert perf.open_loop_window_ms(TIME, 2000, 1000, 0.01) == 2000
    # 100 req/s of 200 ms requests (batched on the server): 25 latencies, 5 s
    assert perf.open_loop_window_ms(TIME, 2000, 100, 0.2) == 5000
    # no probe: the arrivals alone
    assert perf.open_loop_window_ms(TIME, 100, 20, None) == 1250
    # perf.sizing fixed: as configured
    assert perf.open_loop_window_ms({**TIME, "sizing": "fixed"}, 2000, 1, 3.0) == 2000


def test_trial_window_is_the_sweeps_rule() -> None:
    # a tuning trial's point is sized as a perf point: 25 request latencies, never shorter
    assert perf.sized(TIME, 0.1)["measurement_interval_ms"] == 2500
    assert perf.sized(TIME, 0.001)["measurement_interval_ms"] == 500
    assert perf.sized({**TIME, "sizing": "fixed"}, 0.1)["measurement_interval_ms"] == 500
    counted = {**TIME, "measurement_mode": "count_windows"}
    assert perf.sized(counted, 0.1) == counted
