"""perf.sizing probe beyond the sweeps (issue 29): the capacity search's start rate and open-loop
windows, and a tuning trial's window, from the probed latency; values set in the config taken as
they are."""

from __future__ import annotations

import pytest

from deploysnake.measuring import perf, sizing, workload

TIME = {"measurement_mode": "time_windows", "measurement_interval_ms": 500, "sizing": "probe"}


@pytest.mark.parametrize(
    ("configured", "latency_s", "max_rate", "expected"),
    [
        (0, 0.050, 100_000, 10),  # a ResNet-sized request of 50 ms: half of 20 req/s
        (0, 0.0004, 100_000, 1250),  # a small model: starts high, fewer doublings
        (0, 0.0004, 1000, 1000),  # never above max_rate
        (0, 3.0, 100_000, 1),  # a request of seconds: at least 1 req/s
        (0, None, 100_000, sizing.DEFAULT_START_RATE),  # nothing probed: the former default
        (0, None, 40, 40),
        (300, 0.050, 100_000, 300),  # set in the config: as it is
    ],
)
def test_start_rate(configured: int, latency_s: float | None, max_rate: int, expected: int) -> None:
    assert sizing.start_rate(configured, latency_s, max_rate) == expected


def test_open_loop_window_holds_25_arrivals_and_25_latencies() -> None:
    # 10 req/s: 25 arrivals take 2.5 s, beyond the configured 2 s
    assert sizing.open_loop_window_ms(TIME, 2000, 10, 0.05) == 2500
    # 1000 req/s of 10 ms requests: 25 latencies, 250 ms, within the configured 2 s
    assert sizing.open_loop_window_ms(TIME, 2000, 1000, 0.01) == 2000
    # 100 req/s of 200 ms requests (batched on the server): 25 latencies, 5 s
    assert sizing.open_loop_window_ms(TIME, 2000, 100, 0.2) == 5000
    # no probe: the arrivals alone
    assert sizing.open_loop_window_ms(TIME, 100, 20, None) == 1250
    # perf.sizing fixed: as configured
    assert sizing.open_loop_window_ms({**TIME, "sizing": "fixed"}, 2000, 1, 3.0) == 2000


def test_trial_window_is_the_sweeps_rule() -> None:
    # a tuning trial's point is sized as a perf point: 25 request latencies, never shorter
    assert sizing.sized(TIME, 0.1)["measurement_interval_ms"] == 2500
    assert sizing.sized(TIME, 0.001)["measurement_interval_ms"] == 500
    assert sizing.sized({**TIME, "sizing": "fixed"}, 0.1)["measurement_interval_ms"] == 500
    counted = {**TIME, "measurement_mode": "count_windows"}
    assert sizing.sized(counted, 0.1) == counted


# The ResNet-18-sized model of tests/realsize on 2 quiet cores (issue 29, the lead's run of
# 2026-12-07 at 96e700a): the offline probe over gRPC, the same requests' time on the server
# (perf_analyzer's Server Queue + Compute Input/Infer/Output of the points), and the points' infer/s
# through shared memory, batch 1, 16, 64, 256 at concurrency 1.
RESNET_GRPC = {1: 0.0195, 256: 4.8097}
RESNET_SERVER = {1: 0.01917, 256: 4.2997}
RESNET_MEASURED = {1: 51.87, 16: 57.23, 64: 57.93, 256: 59.73}
# The digits CNN (channels 16): microseconds on the server, a request's cost outside it dominates.
DIGITS_GRPC = {1: 0.00060, 256: 0.00120}
DIGITS_SERVER = {1: 0.00015, 256: 0.00060}
DIGITS_MEASURED = {1: 1665.0, 16: 28992.0, 64: 60000.0, 256: 90000.0}
OFFLINE = {"stop_gain": 0.05, "stop_after": 2, "max_p99_ms": 0}


def _sweep(stops: sizing.SweepStop, measured: dict[int, float], concurrency: int = 1) -> dict:
    """What the offline loop does with SweepStop: each batch measured unless left out."""
    outcome = {}
    for batch, throughput in measured.items():
        point = workload.Point(batch, concurrency)
        reason = stops.reason(point, "offline")
        outcome[batch] = reason or "measured"
        if not reason:
            stops.update(
                point, "offline", "ok", {"Inferences/Second": throughput, "p99 latency": 1}
            )
    return outcome


@pytest.mark.parametrize(
    ("latency_s", "window_s"),
    [
        (0.000014, 0.00035),  # digits: 25 requests
        (0.1, 2.5),  # 25 requests, within 10 s
        (0.5, 10.0),  # 25 would be 12.5 s: 10 s (20 requests)
        (1.1, 11.0),  # ResNet batch 64: 10 requests
        (4.3, 43.0),  # ResNet batch 256: 10 requests, not 25 (107.5 s)
    ],
)
def test_a_window_holds_25_requests_up_to_10_s_and_never_fewer_than_10(
    latency_s: float, window_s: float
) -> None:
    assert sizing.window_requests_s(latency_s) == pytest.approx(window_s)
    # a point costs about 4 windows: a bounded multiple of its request latency
    about, _ = sizing.estimate_s(sizing.sized({**TIME, "max_trials": 6}, latency_s), latency_s)
    assert about <= 4 * max(0.5, 25 * latency_s) + 2.01
    assert about <= 4 * max(10.0, 10 * latency_s) + 2.01


def test_shared_memory_timing_is_the_servers_plus_the_smallest_requests_outside_part() -> None:
    timing = sizing.through_shared_memory(RESNET_GRPC, RESNET_SERVER)
    assert timing[1] == pytest.approx(0.0195)
    # the 0.5 s gRPC copy of a 154 MB batch is gone: the points measured 256 / 59.73 = 4.29 s
    assert timing[256] == pytest.approx(4.3000, abs=1e-3)
    assert sizing.through_shared_memory(RESNET_GRPC, {}) == {}


def test_the_probe_leaves_out_resnet_batches_that_cannot_gain_5_percent() -> None:
    """With the server-side probe the ResNet's sweep measures batch 1 and 16 and leaves out 64 and
    256 (predicted 0.8 % and 0.9 % over batch 16; measured they gave 1.2 % and 4.4 %): the 550 s
    of the two largest points saved. The gRPC probe (0.5 s of copies at 256) would predict too
    little gain to measure even batch 16, which gave 10 %: it is not what the points see."""
    timing = sizing.through_shared_memory(RESNET_GRPC, RESNET_SERVER)
    outcome = _sweep(
        sizing.SweepStop(OFFLINE, lambda b: sizing.predicted_throughput(timing, b)), RESNET_MEASURED
    )
    assert outcome[1] == outcome[16] == "measured"
    for batch in (64, 256):
        assert outcome[batch].startswith("left out: the probe predicts"), outcome
        assert "perf.stop_gain 5 % more" in outcome[batch] and "batch 16" in outcome[batch]
    # Model Navigator's rule alone (no probe) stops nothing in a sweep of 4: all measured
    assert set(_sweep(sizing.SweepStop(OFFLINE), RESNET_MEASURED).values()) == {"measured"}
    grpc = _sweep(
        sizing.SweepStop(OFFLINE, lambda b: sizing.predicted_throughput(RESNET_GRPC, b)),
        RESNET_MEASURED,
    )
    assert [b for b, o in grpc.items() if o == "measured"] == [1]
    # perf.stop_gain 0: every listed point, whatever the probe predicts
    everything = sizing.SweepStop(
        {**OFFLINE, "stop_gain": 0}, lambda b: sizing.predicted_throughput(timing, b)
    )
    assert set(_sweep(everything, RESNET_MEASURED).values()) == {"measured"}


def test_the_probe_leaves_out_nothing_of_a_model_whose_batches_pay() -> None:
    """The digits CNN: a request's fixed cost dominates, every batch is predicted far above the
    last, so the sweep is the one it was (the default `make run`)."""
    timing = sizing.through_shared_memory(DIGITS_GRPC, DIGITS_SERVER)
    stops = sizing.SweepStop(OFFLINE, lambda b: sizing.predicted_throughput(timing, b))
    assert set(_sweep(stops, DIGITS_MEASURED).values()) == {"measured"}
    assert set(_sweep(stops, DIGITS_MEASURED, concurrency=2).values()) == {"measured"}


def test_the_prediction_compares_with_the_best_measured_batch_at_its_own_concurrency() -> None:
    flat = {1: 0.010, 64: 0.6089}  # 100 infer/s at 1, 105.1 at 64: 5.1 % more
    stops = sizing.SweepStop(OFFLINE, lambda b: sizing.predicted_throughput(flat, b))
    # nothing measured yet at this concurrency: nothing to compare with, so measured
    assert stops.reason(workload.Point(16, 1), "offline") == ""
    stops.update(workload.Point(1, 1), "offline", "ok", {"Inferences/Second": 98, "p99 latency": 1})
    assert stops.reason(workload.Point(64, 1), "offline") == ""  # 5.1 % predicted: measured
    assert "left out" in stops.reason(workload.Point(16, 1), "offline")  # 16 / 0.1526 s: 4.8 %
    assert stops.reason(workload.Point(16, 2), "offline") == ""  # concurrency 2: its own sweep
    # an unstable or disturbed point is no best to compare with
    fresh = sizing.SweepStop(OFFLINE, lambda b: sizing.predicted_throughput(flat, b))
    fresh.update(workload.Point(1, 1), "offline", "unstable", {})
    assert fresh.reason(workload.Point(16, 1), "offline") == ""
    # online sweeps (concurrencies) are not predicted: Model Navigator's rule only
    assert stops.reason(workload.Point(1, 8), "online") == ""


def test_max_job_s_auto_bounds_a_job_but_always_measures_each_sweeps_first_point() -> None:
    points = [workload.Point(b, c) for b in (1, 16, 64, 256) for c in (1, 2)]
    about = [6.0, 6.0, 30.0, 30.0, 46.0, 46.0, 174.0, 174.0]
    budget = sizing.job_budget("auto", points, about, "offline")
    assert budget.seconds == sizing.AUTO_JOB_S and budget.always == {0, 1}
    assert budget.reason(2, 12.0) == ""  # 12 + 30 s fits in 150
    assert "perf.max_job_s 150 s would be passed" in budget.reason(6, 120.0)
    # a model whose first points alone take longer: they are the bound, and always measured
    slow = sizing.job_budget("auto", points, [100.0, 100.0, *about[2:]], "offline")
    assert slow.seconds == 200.0 and slow.reason(1, 100.0) == ""
    assert slow.reason(2, 200.0) != ""
    # set in the config: as it is, the first point included; 0: no bound
    fixed = sizing.job_budget(4.0, points, about, "offline")
    assert fixed.seconds == 4.0 and "would be passed" in fixed.reason(0, 0.0)
    assert sizing.job_budget(0, points, about, "offline").reason(7, 1e9) == ""
    # online: one sweep along the concurrencies, its first point always measured
    online = [workload.Point(1, c) for c in (1, 2, 4, 8)]
    assert sizing.job_budget("auto", online, [200.0] * 4, "online").always == {0}


@pytest.mark.parametrize(
    ("min_calls", "call_s", "window_s"),
    [
        (25, 0.02, 0.5),  # 25 calls
        (25, 0.3, 7.5),  # ResNet batch 16: 25 calls within 10 s
        (25, 1.1, 11.0),  # ResNet batch 64: 10 calls, not 27.5 s
        (25, 4.3, 43.0),  # ResNet batch 256: 10 calls, not 107.5 s
        (50, 1.1, 22.0),  # measured again twice as long: twice of each
    ],
)
def test_native_windows_follow_the_perf_rule(
    min_calls: int, call_s: float, window_s: float
) -> None:
    from deploysnake.measuring import native

    assert native.sized_window_s(min_calls, call_s) == pytest.approx(window_s)
    assert native.WINDOW_CAP_S == sizing.WINDOW_CAP_S
    assert native.SLOW_WINDOW_CALLS == sizing.SLOW_WINDOW_REQUESTS
    assert native.MIN_WINDOW_CALLS == sizing.MIN_WINDOW_REQUESTS


def test_open_loop_window_of_slow_requests_follows_the_sweeps_cap() -> None:
    # 1 req/s of 4.3 s requests: 25 arrivals (25 s) beside 10 latencies (43 s), not 25 (107.5 s)
    assert sizing.open_loop_window_ms(TIME, 2000, 1, 4.3) == 43_000


def test_a_disturbed_point_names_the_batch_the_prediction_compares_with() -> None:
    """On a loaded machine every point may come out disturbed: its figures never count towards the
    stop rule, but the best of them names the batch whose prediction the next ones must beat by
    5 %, so the probe's prediction still bounds a disturbed run."""
    timing = sizing.through_shared_memory(RESNET_GRPC, RESNET_SERVER)
    stops = sizing.SweepStop(OFFLINE, lambda b: sizing.predicted_throughput(timing, b))
    for batch, throughput in ((1, 30.0), (16, 40.0)):
        point = workload.Point(batch, 1)
        assert stops.reason(point, "offline") == ""
        stops.update(
            point, "offline", "disturbed", {"Inferences/Second": throughput, "p99 latency": 1}
        )
    assert "against 58.98 at batch 16" in stops.reason(workload.Point(64, 1), "offline")
    assert stops.stalls == {} and stops.best == {}  # the rule itself counts ok points only


def test_a_slow_points_trials_and_second_measurement_are_bounded() -> None:
    """A lengthened window's point gets 4 trials (3 stable windows and one spare), not 6; a
    configured window keeps its settings whole. The second measurement of an unstable point
    (windows twice as long) or a disturbed one happens only where perf.max_job_s leaves room."""
    slow = sizing.sized({**TIME, "max_trials": 6}, 0.3)
    assert slow["measurement_interval_ms"] == 7500 and slow["max_trials"] == 4
    fast = {**TIME, "max_trials": 6}
    assert sizing.sized(fast, 0.001) == fast
    assert sizing.sized({**TIME, "max_trials": 3}, 0.3)["max_trials"] == 3  # fewer: as set
    # 70 s spent on an unstable point: twice as long again needs 140 s more
    assert not perf.again_fits("unstable", 70.0, 150.0)
    assert perf.again_fits("unstable", 40.0, 150.0)
    assert perf.again_fits("disturbed", 70.0, 150.0) and not perf.again_fits(
        "disturbed", 80.0, 150.0
    )
    assert perf.again_fits("unstable", 1e6, None)  # no bound
    budget = sizing.job_budget("auto", [workload.Point(1, 1)], [6.0], "offline")
    assert budget.left_s(100.0) == 50.0 and budget.left_s(400.0) == 0.0
    assert sizing.job_budget(0, [workload.Point(1, 1)], [6.0], "offline").left_s(100.0) is None
