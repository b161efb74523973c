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
    assert point["served_over_native_spread"]["high"] == pytest.approx(s.high / 2000)
    schema = summary.load_schema()
    point_schema = {**schema["$defs"]["point"], "$defs": schema["$defs"]}
    Draft202012Validator(point_schema).validate(point)
    # a served figure above the in-process one is never a ratio (the report's baseline suspect)
    fast = summary._with_native(
        summary._point(row, 20.0), {("m", "onnx", "cpu", 64): 900.0}, ("m", "onnx", "cpu")
    )
    assert fast is not None and fast["served_over_native"] is None
