"""Cold start and memory on the real tritonserver: load time and first request without and with
model_warmup, memory net of an empty server's, the warmup block Triton loads, and
selection.max_memory_mb on the measured figures."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from deploysnake import coldstart, repository, selection, server
from deploysnake.accuracy import infer_served
from deploysnake.contracts import Target
from deploysnake.failures import FormatFailure, classify
from deploysnake.report import best_html
from deploysnake.report.coldstart import load, path_of, section
from deploysnake.runtime import ArtifactRuntime

from .conftest import processes_named

DIGITS_ONNX = Target("digits", "onnx", "cpu")

WARMUP = {"enabled": True, "data": "zero", "batch_size": 2, "count": 1}
TRITON = {
    "max_batch_size": 64,
    "dynamic_batching": {"preferred_batch_sizes": [8]},
    "instances": {"cpu": 1},
}
# onnx's repository carries model_warmup (triton.warmup.enabled); torchscript_trace's does not, so
# the measurement adds the block for its second load and reloads the plain config after.
WARMED = {"onnx": True, "torchscript_trace": False}


@pytest.fixture(scope="module")
def measured(exported: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Per format, one server started with no model (server.EXPLICIT), its cold start measured and
    written as the accuracy job writes it (results/accuracy/m/<format>/cpu.coldstart.json); then
    the model, left loaded with the repository's config, answers as the artifact in process."""
    root = tmp_path_factory.mktemp("coldstart")
    inputs = {"image": np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)}
    for fmt, warmed in WARMED.items():
        settings = {**TRITON, "warmup": {**WARMUP, "enabled": warmed}}
        base = root / "repository" / fmt
        model_dir = repository.write_repository(
            "digits", exported[fmt], exported[f"{fmt}/io"], settings, "cpu", "inprocess", base / "x"
        )
        os.replace(model_dir, base / model_dir.name)
        (base / "x").rmdir()
        io = json.loads(exported[f"{fmt}/io"].read_text())
        log = root / f"{fmt}.server.log"
        with server.TritonServer(
            base, server.locate("bundled"), log, extra_args=server.EXPLICIT
        ) as running:
            figures = coldstart.measure(
                running, Target("digits", fmt, "cpu"), base / model_dir.name, io, inputs, WARMUP
            )
            served = infer_served(running, model_dir.name, io, inputs, 30.0, 64)
        local = ArtifactRuntime(exported[fmt], fmt, ["image"], ["logits"])(inputs)
        np.testing.assert_allclose(served["logits"], local["logits"], rtol=1e-6, atol=1e-6)
        assert f"successfully loaded '{model_dir.name}'" in log.read_text()
        coldstart.write(figures, path_of(root / "accuracy" / "digits" / fmt / "cpu.csv"))
    assert not processes_named("tritonserver", under=root)
    return root


def _csvs(root: Path) -> list[Path]:
    return [root / "accuracy" / "digits" / fmt / "cpu.csv" for fmt in WARMED]


def test_load_and_first_request_are_measured_with_and_without_warmup(measured: Path) -> None:
    rows = {r["format"]: r for r in load(_csvs(measured))}
    assert set(rows) == set(WARMED)
    for fmt, row in rows.items():
        assert row["status"] == "ok" and row["reason"] == "" and row["warmup_error"] == ""
        assert row["warmup_in_repository"] is WARMED[fmt]
        for field in (
            "load_ms",
            "first_request_ms",
            "steady_ms",
            "load_warmup_ms",
            "first_request_warmup_ms",
        ):
            assert isinstance(row[field], float) and row[field] > 0, (fmt, field, row)
        # one validation sample per request (the model batches); the load takes longer than a request
        assert row["request_batch"] == 1 and row["load_ms"] > row["steady_ms"]
        # the runtime loaded into the server process is memory an empty server does not hold
        assert row["memory_empty_mb"] > 10 and row["memory_net_mb"] > 1, row
        assert row["gpu_memory_net_mb"] is None  # cpu
    # the repository with warmup: Triton parsed and ran the block that config.pbtxt carries
    cfg = repository.read_config(measured / "repository" / "onnx" / "digits_onnx" / "config.pbtxt")
    [warm] = cfg.model_warmup
    assert warm.batch_size == 2 and warm.count == 1
    assert list(warm.inputs["image"].dims) == [1, 8, 8] and warm.inputs["image"].zero_data
    plain = measured / "repository" / "torchscript_trace" / "digits_torchscript_trace"
    assert not repository.read_config(plain / "config.pbtxt").model_warmup


def test_an_answer_later_than_request_timeout_s_is_the_formats_failure(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    """A request the server holds past its deadline: the dynamic batcher waits up to
    max_queue_delay_us (3 s here) for a preferred batch (8) that one request of 5 never fills, so
    the answer comes after the 0.5 s deadline whatever the machine's speed. The failure names the
    limit and the key to raise; the server keeps running and answers within a longer deadline."""
    settings = {
        **TRITON,
        "dynamic_batching": {"preferred_batch_sizes": [8], "max_queue_delay_us": 3_000_000},
    }
    model_dir = repository.write_repository(
        "digits", exported["onnx"], exported["onnx/io"], settings, "cpu", "inprocess", tmp_path
    )
    io = json.loads(exported["onnx/io"].read_text())
    inputs = {"image": np.zeros((5, 1, 8, 8), np.float32)}
    with server.TritonServer(
        model_dir.parent, server.locate("bundled"), tmp_path / "server.log"
    ) as running:
        with pytest.raises(
            FormatFailure, match=r"within 0\.5 s \(triton\.request_timeout_s\)"
        ) as failure:
            infer_served(running, model_dir.name, io, inputs, 0.5, 64)
        assert str(tmp_path / "server.log") in failure.value.reason
        assert infer_served(running, model_dir.name, io, inputs, 30.0, 64)["logits"].shape[0] == 5
    assert not processes_named("tritonserver", under=tmp_path)


def test_warmup_sample_follows_the_served_shapes() -> None:
    io = {
        "format": "onnx",
        "artifact": "model.onnx",
        "inputs": [
            {"name": "tokens", "dtype": "int64", "dims": [-1, -1], "batch_axis": 0},
            {"name": "text", "dtype": "object", "dims": [-1], "batch_axis": 0},
        ],
        "outputs": [{"name": "y", "dtype": "float32", "dims": [-1, 4], "batch_axis": 0}],
    }
    warm = repository.warmup_sample(io, 8, {"data": "random", "batch_size": 32, "count": 3})
    assert (warm.batch_size, warm.count) == (8, 3)  # capped at max_batch_size
    # a dynamic sequence gets size 1; a [batch] tensor its declared [1]; no random strings
    assert list(warm.inputs["tokens"].dims) == [1] and warm.inputs["tokens"].random_data
    assert list(warm.inputs["text"].dims) == [1] and warm.inputs["text"].zero_data
    unbatched = repository.warmup_sample(io, 0, {"batch_size": 32})
    assert unbatched.batch_size == 1 and list(unbatched.inputs["tokens"].dims) == [1, 1]
    cfg = repository.build_config(
        "m_onnx", io, {**TRITON, "warmup": {"enabled": True}}, "cpu", "native"
    )
    assert len(cfg.model_warmup) == 1 and not repository.without_warmup(cfg).model_warmup
    assert not repository.build_config("m_onnx", io, TRITON, "cpu", "native").model_warmup


def _perf_csv(path: Path, fmt: str, throughput: float) -> Path:
    row = {
        "model": "digits",
        "format": fmt,
        "device": "cpu",
        "mode": "offline",
        "batch": "32",
        "concurrency": "1",
        "status": "ok",
        "Inferences/Second": str(throughput),
        "p99 latency": "900",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    return path


def test_max_memory_mb_below_a_formats_memory_leaves_it_out_with_the_reason(
    measured: Path, tmp_path: Path
) -> None:
    figures = load(_csvs(measured))
    heavy, light = sorted(figures, key=lambda r: r["memory_net_mb"], reverse=True)
    assert heavy["memory_net_mb"] > light["memory_net_mb"]
    # the heavier format reads faster: without a limit it is the best
    perf = [
        _perf_csv(tmp_path / "a.csv", heavy["format"], 5000.0),
        _perf_csv(tmp_path / "b.csv", light["format"], 1000.0),
    ]
    assert selection.over_memory(figures, 0) == {}
    [row] = selection.best(perf, 10_000.0, over_limit={})
    assert row["format"] == heavy["format"] and row["memory"] == ""
    # a limit just below its measured memory: the lighter format is chosen, and the row says why
    limit = heavy["memory_net_mb"] - 0.5
    over = selection.over_memory(figures, limit)
    assert set(over) == {("digits", heavy["format"], "cpu")}
    [row] = selection.best(perf, 10_000.0, over_limit=over)
    assert row["format"] == light["format"]
    assert row["memory"].startswith(f"{heavy['format']} not chosen: its server needs ")
    assert f"over selection.max_memory_mb {limit:g}" in row["memory"]
    html = best_html(perf, 10.0, [], over_limit=over)
    assert f"{heavy['format']} not chosen" in html
    table = section(figures, over, limit)
    assert "Cold start and memory" in table and "not chosen" in table
    # below both: no format is chosen, and the best table says it is the memory limit
    both = selection.over_memory(figures, light["memory_net_mb"] - 0.5)
    assert selection.best(perf, 10_000.0, over_limit=both) == []
    html = best_html(perf, 10.0, [], measured={("digits", "cpu")}, over_limit=both)
    assert f"{light['format']} not chosen" in html and "no stable point" not in html


def test_a_model_the_server_cannot_load_is_the_formats_failure(
    measured: Path, tmp_path: Path
) -> None:
    """Refused by the load call (the server keeps running in explicit mode): the same failure as a
    server that cannot load the model at start, with Triton's message; the figures' file says so."""
    served = measured / "repository" / "onnx" / "digits_onnx"
    broken = tmp_path / "repository"
    shutil.copytree(served, broken / "digits_onnx")
    (broken / "digits_onnx" / "1" / "model.onnx").unlink()
    (broken / "digits_onnx" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    io = {"inputs": [{"name": "image", "dtype": "float32", "dims": [-1, 1, 8, 8]}]}
    inputs = {"image": np.zeros((1, 1, 8, 8), np.float32)}
    with (
        server.TritonServer(
            broken, server.locate("bundled"), tmp_path / "server.log", extra_args=server.EXPLICIT
        ) as running,
        pytest.raises(FormatFailure) as failure,
    ):
        coldstart.measure(running, DIGITS_ONNX, broken / "digits_onnx", io, inputs)
    assert classify(failure.value) is failure.value
    assert failure.value.reason.startswith("the server cannot load the model: ")
    assert "digits_onnx" in failure.value.reason and failure.value.log_excerpt
    out = path_of(tmp_path / "accuracy" / "cpu.csv")
    coldstart.write_failure(DIGITS_ONNX, failure.value, out)
    [row] = load([tmp_path / "accuracy" / "cpu.csv"])
    assert row["status"] == "failed" and row["load_ms"] is None
    assert row["reason"] == failure.value.reason
    assert not processes_named("tritonserver", under=tmp_path)
