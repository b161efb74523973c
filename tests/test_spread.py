"""deploysnake.spread on figures: the interval of repeated measurements, the requests behind a p99,
the best-format rule when two formats are within the noise, and the one-line diagnosis of a point."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from deploysnake import selection, spread


def test_spread_of_a_known_set_gives_the_known_interval() -> None:
    # mean 10, sample sd 1; t(0.975, 2) = 4.302653 (any t table): half width 4.302653 / sqrt(3)
    s = spread.spread([9.0, 10.0, 11.0])
    assert (s.n, s.mean) == (3, 10.0)
    assert s.cv == pytest.approx(0.1)
    assert s.low == pytest.approx(10 - 4.302653 / math.sqrt(3), abs=1e-5)
    assert s.high == pytest.approx(10 + 4.302653 / math.sqrt(3), abs=1e-5)
    # ten samples: sd 1, t(0.975, 9) = 2.262157
    ten = spread.spread([9.0, 11.0] * 5)
    assert ten.high - ten.mean == pytest.approx(2.262157 * math.sqrt(10 / 9) / math.sqrt(10), 1e-5)
    one = spread.spread([5.0])
    assert (one.cv, one.low, one.high) == (None, 5.0, 5.0)
    with pytest.raises(ValueError, match="no samples"):
        spread.spread([])
    with pytest.raises(ValueError, match="finite"):
        spread.spread([1.0, float("nan")])


def test_mlperf_minimum_requests_match_its_table() -> None:
    # mlcommons/inference_policies inference_rules.adoc: 23,886 (p90), 50,425 (p95), 262,742 (p99)
    assert spread.mlperf_min_requests(90) == pytest.approx(23_886, abs=2)
    assert spread.mlperf_min_requests(95) == pytest.approx(50_425, abs=3)
    assert spread.mlperf_min_requests(99) == pytest.approx(262_742, abs=10)
    few = spread.percentile_support(2_000, 99)
    assert not few.enough and few.margin == pytest.approx(0.573, abs=0.005)
    assert few.supported < 50  # 2,000 requests do not even meet MLPerf's rule for a median
    plenty = spread.percentile_support(300_000, 99)
    assert plenty.enough and plenty.margin < 0.05 and plenty.supported > 99
    with pytest.raises(ValueError, match="at least one request"):
        spread.percentile_support(0)


def _perf_csv(path: Path, fmt: str, samples: list[float]) -> Path:
    s = spread.spread(samples)
    row = {
        "model": "m",
        "format": fmt,
        "device": "cpu",
        "mode": "offline",
        "batch": "64",
        "concurrency": "2",
        "status": "ok",
        "Inferences/Second": str(s.mean),
        "p99 latency": "900",
        "infer_s_n": str(s.n),
        "infer_s_low": str(s.low),
        "infer_s_high": str(s.high),
    }
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    return path


def test_formats_within_the_noise_are_not_ranked_and_the_simpler_wins(tmp_path: Path) -> None:
    # onnx_fp16 reads 3 % faster, but the two intervals overlap: full precision is chosen.
    paths = [
        _perf_csv(tmp_path / "a.csv", "onnx", [1000.0, 1100.0, 1050.0]),
        _perf_csv(tmp_path / "b.csv", "onnx_fp16", [1040.0, 1130.0, 1080.0]),
    ]
    [row] = selection.best(paths, 10_000.0)
    assert row["format"] == "onnx" and row["fastest"] == "onnx_fp16"
    assert "within the noise" in row["noise"] and "full precision" in row["noise"]
    # The report's best table says so and shows the intervals.
    from deploysnake.report import best_html

    html = best_html(paths, 10.0, [])
    assert "within the noise" in html and "full precision preferred" in html
    assert "925.8-1,174 (n 3)" in html  # onnx's interval: mean 1,050, sd 50, t(0.975, 2)
    # Far apart: the faster format is chosen, nothing said about noise.
    paths[1] = _perf_csv(tmp_path / "b.csv", "onnx_fp16", [2000.0, 2010.0, 1990.0])
    [row] = selection.best(paths, 10_000.0)
    assert row["format"] == "onnx_fp16" and row["noise"] == ""


def test_diagnosis_names_the_limit_and_the_setting() -> None:
    split = {
        "Client Send": 5.0,
        "Network+Server Send/Recv": 20.0,
        "Server Queue": 10.0,
        "Server Compute Input": 5.0,
        "Server Compute Infer": 400.0,
        "Server Compute Output": 5.0,
        "Client Recv": 5.0,
    }
    assert spread.diagnose("offline", split).startswith("compute-bound")
    queued = {**split, "Server Queue": 600.0}
    line = spread.diagnose("online", queued)
    assert line.startswith("queue-bound") and "max_queue_delay_us" in line
    assert "perf.offline.concurrency" in spread.diagnose("offline", queued)
    # a model that computes little: the latency sits near the floor's
    light = {**split, "Server Compute Infer": 20.0}
    assert spread.diagnose("online", light, floor_latency_us=60.0).startswith("serving-path")
    assert spread.diagnose("online", light, floor_latency_us=20.0).startswith("compute-bound")
    busy = spread.diagnose("online", split, client_cpu=0.95, client_cores=1.0)
    assert busy.startswith("client-bound") and "0.95 cores" in busy
    assert spread.diagnose("online", dict.fromkeys(split, 0.0)) == ""


def test_summary_point_carries_the_interval_and_served_over_native() -> None:
    from jsonschema import Draft202012Validator

    from deploysnake import summary

    s = spread.spread([900.0, 1000.0, 1100.0])
    row = {
        "batch": "64",
        "concurrency": "2",
        "status": "ok",
        "Inferences/Second": "1000",
        "p50 latency": "500",
        "p99 latency": "900",
        "infer_s_n": "3",
        "infer_s_mean": str(s.mean),
        "infer_s_cv": str(s.cv),
        "infer_s_low": str(s.low),
        "infer_s_high": str(s.high),
        "requests": "2000",
        "p99_enough": "False",
        "p99_margin": "0.573",
        "server_batch": "64.0",
    }
    point = summary._with_native(
        summary._point(row, 20.0), {("m", "onnx", "cpu", 64): 2000.0}, ("m", "onnx", "cpu")
    )
    assert point is not None
    assert point["spread"]["method"] == "interval" and point["spread"]["n"] == 3
    assert point["spread"]["low"] == pytest.approx(s.low)
    assert point["requests"] == 2000 and point["p99_enough"] is False
    assert point["served_over_native"] == 0.5
    # the ratio's interval (delta method on the log ratio): the in-process reading of one sample
    # counts as exact, so it is the served figure's own interval in log space
    want = spread.ratio(spread.at_figure(1000.0, s), spread.spread([2000.0]))
    ratio_spread = point["served_over_native_spread"]
    assert ratio_spread["method"] == "ratio" and ratio_spread["high"] == pytest.approx(want.high)
    assert (ratio_spread["n"], ratio_spread["n_den"]) == (3, 1)
    # with the in-process run's sub-windows, both spreads count
    both = summary._with_native(
        summary._point(row, 20.0),
        {("m", "onnx", "cpu", 64): 2000.0},
        ("m", "onnx", "cpu"),
        {
            ("m", "onnx", "cpu", 64): spread.spread([1900.0, 2000.0, 2100.0, 2000.0, 2000.0])
        },  # mean 2000
    )
    assert both is not None and both["served_over_native_spread"]["n_den"] == 5
    native = spread.spread([1900.0, 2000.0, 2100.0, 2000.0, 2000.0])
    want = spread.ratio(spread.at_figure(1000.0, s), spread.at_figure(2000.0, native))
    assert both["served_over_native_spread"]["high"] == pytest.approx(want.high)
    schema = summary.load_schema()
    point_schema = {**schema["$defs"]["point"], "$defs": schema["$defs"]}
    Draft202012Validator(point_schema).validate(point)
    # a served figure above the in-process one is never a ratio (the report's baseline suspect)
    fast = summary._with_native(
        summary._point(row, 20.0), {("m", "onnx", "cpu", 64): 900.0}, ("m", "onnx", "cpu")
    )
    assert fast is not None and fast["served_over_native"] is None


def test_ratio_of_known_spreads_gives_the_hand_computed_interval() -> None:
    from scipy import stats

    # num: mean 10, sd 1 (CV 0.1), n 3; den: mean 20, sd 1 (CV 0.05), n 3. By hand: the log
    # ratio's variance 0.1²/3 + 0.05²/3 = 0.0125/3; Welch-Satterthwaite df =
    # (0.0125/3)² / ((0.01/3)²/2 + (0.0025/3)²/2) = 2.941, t(0.975, 2.941) = 3.2188, se = 0.06455:
    # 0.5 · exp(±0.2078) = 0.4062 to 0.6155
    r = spread.ratio_of_samples([9.0, 10.0, 11.0], [19.0, 20.0, 21.0])
    var = 0.0125 / 3
    df = var**2 / ((0.01 / 3) ** 2 / 2 + (0.0025 / 3) ** 2 / 2)
    assert df == pytest.approx(2.941, abs=1e-3) and r.df == pytest.approx(df)
    half = stats.t.ppf(0.975, df) * math.sqrt(var)
    assert r.value == 0.5 and (r.n, r.n_den) == (3, 3)
    assert r.low == pytest.approx(0.5 * math.exp(-half)) and r.low == pytest.approx(
        0.4062, abs=1e-4
    )
    assert r.high == pytest.approx(0.5 * math.exp(half)) and r.high == pytest.approx(
        0.6155, abs=1e-4
    )
    assert r.cv == pytest.approx(math.sqrt(0.01 + 0.0025))
    assert spread.describe_ratio(r, 3, "runs") == "95 % 0.406-0.615 (n 3/3 runs, CV 11.2 %)"
    # a denominator read once counts as exact: the numerator's own t-interval, scaled
    exact = spread.ratio(spread.spread([9.0, 10.0, 11.0]), spread.spread([20.0]))
    t2 = stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert exact.df == pytest.approx(2) and exact.high == pytest.approx(0.5 * math.exp(t2))
    # both read once: no interval, said so
    single = spread.ratio(spread.spread([10.0]), spread.spread([20.0]))
    assert single.df is None and single.low == single.high == 0.5
    assert spread.describe_ratio(single) == "single run, no interval"
    assert spread.ratio_text(10.0, None, None, 20.0, 1, None) == "single run, no interval"
    assert spread.ratio_text(None, 3, 0.1, 20.0, 3, 0.05) == ""
    with pytest.raises(ValueError, match="positive"):
        spread.ratio(spread.spread([0.0, 0.0]), spread.spread([1.0]))


def test_ratio_interval_covers_the_true_ratio_95_times_in_100() -> None:
    import numpy as np

    # synthetic measurements of known spread: 5 runs of a figure of mean 1000, sd 50, against 4
    # of mean 500, sd 40; the true ratio 2 falls in the interval about 95 % of the time
    rng = np.random.default_rng(7)
    trials = 3000
    hits = 0
    for _ in range(trials):
        r = spread.ratio_of_samples(list(rng.normal(1000, 50, 5)), list(rng.normal(500, 40, 4)))
        hits += r.low <= 2.0 <= r.high
    assert 0.93 <= hits / trials <= 0.97


def test_native_sub_windows_give_the_in_process_spread() -> None:
    import numpy as np

    from deploysnake.measuring import native

    # 100 calls of batch 4 ending evenly over 1 s: five windows of 20 calls, 80 infer/s each
    ends = np.linspace(0.005, 0.995, 100)
    assert native.subwindow_throughputs(ends, 1.0, 4) == pytest.approx([400.0] * 5)
    # a slower second half: the windows see it
    uneven = np.concatenate([np.linspace(0.01, 0.5, 60), np.linspace(0.51, 0.99, 20)])
    windows = native.subwindow_throughputs(uneven, 1.0, 1)
    assert sum(w * 0.2 for w in windows) == pytest.approx(80) and windows[0] > windows[-1]
    assert native.subwindow_throughputs(ends[:20], 1.0, 4) == []  # too few calls to split


def test_report_cells_show_the_ratio_intervals_and_a_compact_p99_cell() -> None:
    import polars as pl

    from deploysnake.report.best import spread_cells as _spread_cells
    from deploysnake.report.frames import served_vs_floor as _served_vs_floor

    served = spread.spread([900.0, 1000.0, 1100.0])  # CV 0.1
    row = {
        "throughput": 1000.0,
        "infer_s_n": 3,
        "infer_s_low": served.low,
        "infer_s_high": served.high,
        "infer_s_cv": 0.1,
        "requests": 2000,
    }
    cells = _spread_cells(row, 2000.0, 5, 0.05)
    expected = spread.ratio(
        spread.at_figure(1000.0, served), spread.at_figure(2000.0, spread.Spread(5, 1, 0.05, 1, 1))
    )
    assert cells["served/native 95 %"] == spread.describe_ratio(expected)
    assert (
        cells["served/native 95 %"].startswith("95 % 0.")
        and "(n 3/5, CV 11.2 %)" in cells["served/native 95 %"]
    )
    # the requests behind the p99, compact: n, MLPerf's minimum, what n supports, the p99's range
    assert (
        cells["p99 requests"] == "n=2,000 (p99 needs 262,742; supports p43; p99 is p98.43-p99.57)"
    )
    assert _spread_cells({**row, "requests": 300_000}, None)["p99 requests"] == (
        "n=300,000 (p99 needs 262,742: enough)"
    )
    # a single in-process reading: the served interval alone, the denominator exact
    alone = _spread_cells(row, 2000.0)["served/native 95 %"]
    assert alone.startswith("95 % ") and "(n 3/1, CV 10.0 %)" in alone

    def perf(status: str, tput: float, n: int, cv: float) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "model": ["m"],
                "format": ["onnx"],
                "device": ["cpu"],
                "concurrency": [4],
                "status": [status],
                "Inferences/Second": [tput],
                "p99 latency": [900.0],
                "infer_s_n": [n],
                "infer_s_cv": [cv],
            }
        )

    table = _served_vs_floor(perf("ok", 1000.0, 3, 0.1), perf("ok", 4000.0, 3, 0.02))
    [cell] = table["served/floor 95 %"].to_list()
    assert cell == spread.ratio_text(1000.0, 3, 0.1, 4000.0, 3, 0.02) and cell.startswith("95 % 0.")
    assert not any(c.startswith("_") for c in table.columns)
    unstable = _served_vs_floor(perf("unstable", 1000.0, 3, 0.1), perf("ok", 4000.0, 3, 0.02))
    assert unstable["served/floor 95 %"].to_list() == [""]


def test_tuned_over_untuned_and_capacity_carry_their_intervals(tmp_path: Path) -> None:
    from deploysnake import tuning
    from deploysnake.measuring import capacity
    from deploysnake.report import side_by_side_gain as _side_by_side_gain

    side = tmp_path / "side_by_side.csv"
    rows = [("A", r, t) for r, t in enumerate([1300.0, 1250.0, 1400.0])] + [
        ("U", r, t) for r, t in enumerate([1000.0, 900.0, 1100.0])
    ]
    with open(side, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=tuning.SIDE_BY_SIDE_COLUMNS, restval="")
        writer.writeheader()
        for trial, r, t in rows:
            writer.writerow(
                {"trial": trial, "round": r, "status": "ok", "throughput": t, "p99_us": 900}
            )
    summary = tuning.summarize_side_by_side(side)
    assert summary["A"]["samples"] == [1300.0, 1250.0, 1400.0]
    g = tuning.gain(summary, "A", "U")
    assert g is not None and g["value"] == pytest.approx(1300 / 1000)
    a, u = spread.spread([1300.0, 1250.0, 1400.0]), spread.spread([1000.0, 900.0, 1100.0])
    want = spread.ratio(spread.at_figure(1300.0, a), spread.at_figure(1000.0, u))
    assert (g["low"], g["high"], g["n"], g["n_den"]) == (want.low, want.high, 3, 3)
    text = _side_by_side_gain(
        {
            "trial": "A",
            "naive": "U",
            "naive_throughput": 1000.0,
            "measured_by": "side_by_side",
            "side_by_side": summary,
            "over_untuned": g,
        }
    )
    assert f"<b>×1.30</b> (95 % {want.low:.2f}-{want.high:.2f} (n 3/3 rounds, CV" in text
    # the capacity: its bracket and the achieved rate's interval over perf_analyzer's windows
    result = {
        "status": "within_budget",
        "p99_budget_ms": 10.0,
        "capacity_rps": 1200,
        "p50_us": 2000.0,
        "p99_us": 8000.0,
        "upper_rate": 1300,
        "upper_reason": "over_budget",
        **capacity.achieved_spread({"window_infer_s": "1190;1210;1200"}),
    }
    line = capacity.describe(result)
    assert "the capacity lies in 1,200-1,300 req/s" in line
    s = spread.spread([1190.0, 1210.0, 1200.0])
    assert (
        f"achieved 1,200 infer/s there, 95 % {s.low:,.0f}-{s.high:,.0f} (n 3 windows, CV 0.8 %)"
        in line
    )
    assert "single run, no interval" in capacity.describe({**result, "achieved_infer_s_n": None})
    from deploysnake.summary import capacity_spread

    cap = capacity_spread(result, 0.1)
    assert cap is not None and cap["achieved"]["n"] == 3
    assert cap["achieved"]["low"] == pytest.approx(round(s.low, 3))


def test_make_bench_prints_each_headline_ratio_with_its_interval() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import realsize_ratio
    import tuning_bench

    served, native = [2800.0, 2900.0, 3000.0, 2950.0, 2850.0], [21000.0, 21500.0, 20500.0]
    r = tuning_bench.of_rounds(served, native)
    assert r is not None and r.value == pytest.approx(2900 / 21000)
    want = spread.ratio(
        spread.at_figure(2900.0, spread.spread(served)),
        spread.at_figure(21000.0, spread.spread(native)),
    )
    assert (r.low, r.high) == (pytest.approx(want.low), pytest.approx(want.high))
    line = tuning_bench.bench_line(r, r, tuning_bench.interval(1.0, None, 1.0, None), 0.085, None)
    fields = dict(kv.split("=") for kv in line.removeprefix("bench: ").split())
    # the old keys keep their meaning; each ratio has _lo and _hi beside it
    assert {
        "offline_ratio",
        "online_ratio",
        "search_quality",
        "search_cost",
        "tuned_over_naive",
    } <= (set(fields))
    assert float(fields["offline_ratio"]) == pytest.approx(r.value, abs=5e-4)
    assert float(fields["offline_ratio_lo"]) == pytest.approx(r.low, abs=5e-4)
    assert float(fields["offline_ratio_hi"]) == pytest.approx(r.high, abs=5e-4)
    assert fields["search_quality_lo"] == "nan" and fields["tuned_over_naive"] == "0.000"
    assert tuning_bench.shown(r).startswith(f"{r.value:.3f} (95 % {r.low:.3f}-{r.high:.3f} (n 5/3")
    # realsize_ratio: from the perf row's and the native row's interval columns
    perf_row = {
        "Inferences/Second": "2900",
        "infer_s_n": "3",
        "infer_s_mean": "2900",
        "infer_s_cv": "0.02",
        "infer_s_low": "2800",
        "infer_s_high": "3000",
    }
    native_row = {
        "throughput_infer_per_s": "21000",
        "infer_s_n": "5",
        "infer_s_mean": "21000",
        "infer_s_cv": "0.03",
        "infer_s_low": "20000",
        "infer_s_high": "22000",
    }
    rr = realsize_ratio.interval(perf_row, native_row)
    assert rr is not None and (rr.n, rr.n_den) == (3, 5) and rr.low < 2900 / 21000 < rr.high
    line = realsize_ratio.bench_line(
        {"ratio": rr.value, "batch": 64, "low": rr.low, "high": rr.high},
        {"ratio": 0.5, "batch": 256},
    )
    assert f"resnet_ratio_lo={rr.low:.3f}" in line and "digits_ratio_hi=nan" in line
