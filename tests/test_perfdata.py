"""perf_analyzer's input data (deploysnake.perfdata): both of its tensor forms decode to the same
arrays, float16 and large tensors are written as base64, and the native baseline runs the samples
and shapes perf_analyzer is sent (issue 29, item 3)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from deploysnake import perfdata
from deploysnake.contracts import ServedSettings, Status, Target
from deploysnake.measuring import native, perf, sizing, workload
from deploysnake.plugins import Recipe

from .conftest import MEASURED, PARAMS

DIGITS_ONNX = Target("digits", "onnx", "cpu")


@pytest.mark.parametrize(
    ("dtype", "shape"),
    [
        ("float32", (3, 8)),
        ("float16", (64,)),
        ("int64", (20,)),
        ("uint8", (8, 8, 1)),
        ("bool", (5,)),
        ("float32", (3, 40, 40)),  # 4,800 values: base64 by size
    ],
)
def test_b64_and_decimal_forms_decode_to_the_same_array(dtype: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    array = (rng.random(shape) * 16).astype(dtype)
    decimal = {"content": array.ravel().tolist(), "shape": list(shape)}
    raw = {"b64": base64.b64encode(array.astype(array.dtype.newbyteorder("<")).tobytes()).decode()}
    b64 = {**raw, "shape": list(shape)}
    for form in (decimal, b64, perfdata.encode(array)):
        got = perfdata.decode(json.loads(json.dumps(form)), dtype)
        assert got.dtype == np.dtype(dtype) and got.shape == shape
        np.testing.assert_array_equal(got, array)
    written = perfdata.encode(array)
    large = array.size > perfdata.B64_MIN_ELEMENTS
    assert ("b64" in written) == (dtype == "float16" or large), written.keys()
    # base64 is of the little-endian bytes, whatever the machine
    if "b64" in written:
        assert base64.b64decode(written["b64"]) == array.astype(f"<{array.dtype.str[1:]}").tobytes()


def test_bfloat16_is_written_as_base64() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    array = np.arange(6, dtype=np.float32).astype(ml_dtypes.bfloat16)
    written = perfdata.encode(array)
    assert set(written) == {"b64", "shape"} and len(base64.b64decode(written["b64"])) == 12
    np.testing.assert_array_equal(perfdata.decode(written, "bfloat16"), array)


def test_base64_of_another_dtype_is_refused() -> None:
    written = perfdata.encode(np.zeros(64, dtype=np.float16))
    with pytest.raises(ValueError, match="do not fill shape"):
        perfdata.decode(written, "float32")


def test_native_baseline_runs_the_perf_samples_and_shapes(
    recipe: Recipe, exported: dict[str, Path], tmp_path: Path
) -> None:
    """The in-process baseline's calls are perf_analyzer's: input.json's samples, batch consecutive
    ones per call, and its rows record the same input_shapes as the perf rows."""
    data = tmp_path / "input.json"
    workload.prepare_input_data(recipe, PARAMS, 16, data)
    io = json.loads(exported["onnx/io"].read_text())
    samples = perfdata.read_samples(data, {t["name"]: t["dtype"] for t in io["inputs"]})
    assert len(samples) == 16
    name = io["inputs"][0]["name"]
    calls = native.perf_batches(io, samples, 8)
    assert len(calls) == 2  # 16 samples, 8 per call: two distinct calls, then the data cycles
    np.testing.assert_array_equal(calls[1][name], np.stack([s[name] for s in samples[8:16]]))
    wrapped = native.perf_batches(io, samples, 12)  # 16 / gcd(16, 12) = 4 calls, wrapping around
    assert len(wrapped) == 4
    np.testing.assert_array_equal(
        wrapped[1][name], np.stack([s[name] for s in samples[12:16] + samples[0:8]])
    )
    rows = native.measure(
        DIGITS_ONNX,
        ServedSettings("digits_onnx", "cpu", max_batch_size=1, instances=1, runtime_threads=1),
        exported["onnx"],
        exported["onnx/io"],
        [1, 8],
        5.0,
        4,
        tmp_path / "n.csv",
        input_data=data,
    )
    expected = workload.input_shapes(data, io)
    assert expected == f"{name}:{'x'.join(map(str, samples[0][name].shape))}"
    assert [(r["input_shapes"], r["input_data"]) for r in rows] == [(expected, "dataloader")] * 2
    random_rows = native.measure(
        DIGITS_ONNX,
        ServedSettings("digits_onnx", "cpu", max_batch_size=1, instances=1, runtime_threads=1),
        exported["onnx"],
        exported["onnx/io"],
        [4],
        5.0,
        4,
        tmp_path / "r.csv",
        input_data=data,
        perf_input="random",
    )
    assert [(r["input_shapes"], r["input_data"]) for r in random_rows] == [(expected, "random")]


def test_sizing_lengthens_only_windows_shorter_than_25_requests() -> None:
    settings = {"measurement_mode": "time_windows", "measurement_interval_ms": 300, "max_trials": 4}
    assert sizing.sized(settings, 0.000014) == settings  # digits: 25 requests fit easily
    # 25 requests of 2 s pass 10 s: 10 requests (perf.WINDOW_CAP_S, perf.SLOW_WINDOW_REQUESTS)
    assert sizing.sized(settings, 2.0)["measurement_interval_ms"] == 20_000
    assert sizing.sized(settings, 0.2)["measurement_interval_ms"] == 5_000  # 25 requests of 0.2 s
    assert sizing.sized({**settings, "sizing": "fixed"}, 2.0) == {**settings, "sizing": "fixed"}
    assert sizing.sized(settings, None) == settings  # no probe: as configured
    probed = {1: 0.002, 65: 0.130}
    assert sizing.latency_at(probed, 33) == pytest.approx(0.066)
    assert sizing.latency_at(probed, 130) == pytest.approx(0.260)  # past the largest: per sample
    about, most = sizing.estimate_s(sizing.sized(settings, 2.0), 2.0)
    assert 80 <= about < most


def test_perf_job_probes_plans_and_leaves_out_points_past_max_job_s(
    exported: dict[str, Path], recipe: Recipe, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real server and perf_analyzer: the probe's latencies and the plan are logged before the
    first point; with perf.max_job_s too small for the second point, it is recorded "left out"."""
    import logging

    import yaml

    from deploysnake import repository, server, tools
    from deploysnake.configuration import validate

    from .conftest import ROOT

    config = validate(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    settings = {
        **config["perf"],
        "measurement_interval_ms": 300,
        "stability_percentage": 100,
        "max_trials": 3,
        "max_foreign_cpu": 100.0,
        "max_job_s": 4.0,  # the first point (about 3.2 s planned) fits, the second does not
        "offline": {"batch_sizes": [1, 8], "concurrency": [1], "shared_memory": "none"},
    }
    data = tmp_path / "input.json"
    workload.prepare_input_data(recipe, PARAMS, 16, data)
    triton = {
        "max_batch_size": 16,
        "dynamic_batching": {"preferred_batch_sizes": [8]},
        "instances": {"cpu": 1},
        "runtime_threads": 1,
    }
    model_dir = repository.write_repository(
        "digits", exported["onnx"], exported["onnx/io"], triton, "cpu", "inprocess", tmp_path / "r"
    )
    caplog.set_level(logging.INFO, logger="deploysnake.measuring.perf")
    with server.TritonServer(
        tmp_path / "r", server.locate("bundled"), tmp_path / "server.log"
    ) as running:
        rows = perf.measure(
            tools.perf_analyzer(settings["perf_analyzer"]),
            running,
            DIGITS_ONNX,
            repository.served_settings("digits", "onnx", triton, "cpu"),
            exported["onnx/io"],
            settings,
            "offline",
            tmp_path / "offline.csv",
            input_data=data,
        )
        # The same probe sizes the capacity search's start and a tuning trial's window (issue 29).
        io = json.loads(Path(exported["onnx/io"]).read_text())
        latency = sizing.probe_one(running, model_dir.name, io, data, settings, 4)
        assert latency is not None and 0 < latency < 5, latency
        assert sizing.start_rate(0, latency, 100_000) == max(1, min(100_000, int(0.5 / latency)))
        assert sizing.probe_one(running, model_dir.name, io, data, {"sizing": "fixed"}, 4) is None
        assert sizing.probe_one(running, model_dir.name, io, None, settings, 4) is None
    plan = next(r.message for r in caplog.records if r.message.startswith("plan (offline)"))
    assert "2 point(s)" in plan and "batch 1: " in plan and "batch 8: " in plan, plan
    assert [r["batch"] for r in rows] == [1, 8]
    assert rows[0]["status"] in {"ok", "unstable", "disturbed"}, rows[0]
    assert rows[1]["status"] == Status.LEFT_OUT and "perf.max_job_s" in rows[1]["reason"], rows[1]
    assert rows[1]["input_shapes"] == rows[0]["input_shapes"]
    text = (tmp_path / "offline.csv").read_text()
    assert "left out" in text


def test_a_sweep_stops_where_throughput_stops_growing_or_p99_passes_its_cap() -> None:
    stops = sizing.SweepStop({"stop_gain": 0.05, "stop_after": 2, "max_p99_ms": 0})
    sweep = [(1, 100.0), (2, 200.0), (4, 204.0), (8, 206.0), (16, 300.0), (32, 301.0)]
    measured = []
    for batch, throughput in sweep:
        point = workload.Point(batch, 1)
        if stops.reason(point, "offline"):
            break
        measured.append(batch)
        stops.update(point, "offline", "ok", {"Inferences/Second": throughput, "p99 latency": 1e3})
    # 16 (two steps after the first stall at 4) regained more than 5 %, so the sweep went on
    assert measured == [1, 2, 4, 8, 16, 32]
    flat = sizing.SweepStop({"stop_gain": 0.05, "stop_after": 2})
    for batch in (1, 2, 4, 8):
        flat.update(
            workload.Point(batch, 1),
            "offline",
            "ok",
            {"Inferences/Second": 100.0 + batch, "p99 latency": 1e3},
        )
    assert "stopped growing" in flat.reason(workload.Point(16, 1), "offline")
    assert flat.reason(workload.Point(16, 2), "offline") == ""  # another concurrency: its own sweep
    capped = sizing.SweepStop({"stop_gain": 0, "max_p99_ms": 50})
    capped.update(
        workload.Point(1, 4), "online", "ok", {"Inferences/Second": 10.0, "p99 latency": 80e3}
    )
    assert "perf.max_p99_ms 50" in capped.reason(workload.Point(1, 8), "online")
    everything = sizing.SweepStop({"stop_gain": 0})
    for batch in (1, 2, 4, 8):
        everything.update(
            workload.Point(batch, 1),
            "offline",
            "ok",
            {"Inferences/Second": 1.0, "p99 latency": 1.0},
        )
    assert everything.reason(workload.Point(16, 1), "offline") == ""


def test_native_window_sized_to_hold_25_calls_of_a_slow_model() -> None:
    """A call of about 20 ms with window_s 0.05: sized, the window holds 25 calls (about 0.5 s);
    fixed, it holds what 0.05 s gives."""
    import time

    def slow(inputs: dict[str, np.ndarray]) -> None:
        time.sleep(0.02)

    inputs = {"x": np.zeros((4, 3), dtype=np.float32)}
    sized = native.time_batch([slow], inputs, 0.05, 10_000, min_calls=25)  # type: ignore[list-item]
    assert 0.5 <= sized["window_s_planned"] < 1.0 and sized["iterations"] >= 20, sized
    fixed = native.time_batch([slow], inputs, 0.05, 10_000)  # type: ignore[list-item]
    assert fixed["window_s_planned"] == 0.05 and fixed["iterations"] <= 4, fixed


def test_native_leaves_out_the_batch_sizes_the_served_sweep_left_out(
    recipe: Recipe, exported: dict[str, Path], tmp_path: Path
) -> None:
    """A batch size with no served point (every concurrency "left out" by the offline job) is not
    run in-process: nothing to set it beside; its row says why. One measured at another
    concurrency still is."""
    import csv

    data = tmp_path / "input.json"
    workload.prepare_input_data(recipe, PARAMS, 16, data)
    served = tmp_path / "served.csv"
    why = "left out: the probe predicts 59.53 infer/s at batch 8"
    with open(served, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["batch", "concurrency", "status", "reason"])
        writer.writeheader()
        writer.writerows(
            [
                {"batch": 1, "concurrency": 1, "status": "ok", "reason": ""},
                {"batch": 4, "concurrency": 1, "status": Status.LEFT_OUT, "reason": why},
                {"batch": 4, "concurrency": 2, "status": "unstable", "reason": ""},
                {"batch": 8, "concurrency": 1, "status": Status.LEFT_OUT, "reason": why},
                {"batch": 8, "concurrency": 2, "status": Status.LEFT_OUT, "reason": why},
            ]
        )
    assert native.served_left_out([served]) == {8: why}
    rows = native.measure(
        DIGITS_ONNX,
        ServedSettings("digits_onnx", "cpu", max_batch_size=1, instances=1, runtime_threads=1),
        exported["onnx"],
        exported["onnx/io"],
        [1, 4, 8],
        5.0,
        4,
        tmp_path / "n.csv",
        served_csvs=[served],
        input_data=data,
    )
    assert [r["status"] in MEASURED for r in rows] == [True, True, False], rows
    assert rows[2]["status"] == Status.LEFT_OUT and why in rows[2]["reason"], rows[2]
    assert "throughput_infer_per_s" not in rows[2]
    with open(tmp_path / "n.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [r["batch"] for r in written] == ["1", "4", "8"]
    assert written[2]["status"] == "left out" and written[2]["throughput_infer_per_s"] == ""
    assert written[0]["reason"] == "" and float(written[0]["throughput_infer_per_s"]) > 0
