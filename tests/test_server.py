"""The real tritonserver: readiness, inference, clean stop in every case, clear load errors."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from deploysnake import repository, server
from deploysnake.accuracy import infer_served
from deploysnake.contracts import Target
from deploysnake.runtime import ArtifactRuntime

TRITON = {
    "max_batch_size": 64,
    "dynamic_batching": {"preferred_batch_sizes": [8]},
    "instances": {"cpu": 1},
}


def port_is_free(port: int) -> bool:
    """Nobody listens there and a server (SO_REUSEADDR, as Triton's) can bind it again."""
    if any(
        c.laddr.port == port and c.status == psutil.CONN_LISTEN
        for c in psutil.net_connections(kind="tcp")
    ):
        return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# Bundled runner -> the repository flavour it serves.
RUNNERS = {"deploysnake": "inprocess", "python": "python"}


@pytest.fixture(scope="module")
def repos(exported: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per bundled runner, one repository holding both formats' models."""
    found = {}
    for runner, flavour in RUNNERS.items():
        base = tmp_path_factory.mktemp(runner)
        for fmt in ("onnx", "torchscript_trace"):
            model_dir = repository.write_repository(
                "digits", exported[fmt], exported[f"{fmt}/io"], TRITON, "cpu", flavour, base / fmt
            )
            os.replace(model_dir, base / model_dir.name)
            (base / fmt).rmdir()
        found[runner] = base
    return found


@pytest.fixture
def repo(repos: dict[str, Path]) -> Path:
    return repos["deploysnake"]


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return address.is_loopback or bool(
        getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback
    )


@pytest.mark.parametrize("runner", RUNNERS)
def test_serves_both_formats_on_loopback_and_stops(
    runner: str, repos: dict[str, Path], exported: dict[str, Path], tmp_path: Path
) -> None:
    import json

    binary = server.locate("bundled", runner)
    assert binary.flavour == RUNNERS[runner]  # the in-process backend is built by scripts/setup.sh
    repo = repos[runner]
    inputs = {"image": np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)}
    with server.TritonServer(
        repo, binary, tmp_path / "server.log", readiness_timeout_s=120
    ) as running:
        pid, ports = (
            running.process.pid,
            (running.http_port, running.grpc_port, running.metrics_port),
        )
        listening: set = set()
        deadline = (
            time.monotonic() + 10
        )  # the metrics endpoint may start listening just after readiness
        while len(listening) < 3 and time.monotonic() < deadline:
            listening = {
                c.laddr
                for c in psutil.Process(pid).net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN
            }
            time.sleep(0.1)
        assert len(listening) == 3 and all(is_loopback(a.ip) for a in listening), listening
        for fmt in ("onnx", "torchscript_trace"):
            io = json.loads(exported[f"{fmt}/io"].read_text())
            served = infer_served(running, f"digits_{fmt}", io, inputs, timeout_s=30)
            local = ArtifactRuntime(exported[fmt], fmt, ["image"], ["logits"])(inputs)
            np.testing.assert_allclose(served["logits"], local["logits"], rtol=1e-6, atol=1e-6)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert all(port_is_free(p) for p in ports)
    log = (tmp_path / "server.log").read_text()
    assert "successfully loaded" in log
    assert ("deploysnake backend: Python runner in the server process" in log) == (
        runner == "deploysnake"
    )


def test_stop_unloads_the_models_first_and_the_server_exits_at_its_first_check(
    repo: Path, tmp_path: Path
) -> None:
    """stop() unloads both models through the repository API before SIGTERM: tritonserver finds no
    live model at its first shutdown check and exits cleanly at once, instead of finding one and
    waiting out its one-second poll (what every stop cost before)."""
    log_path = tmp_path / "server.log"
    with server.TritonServer(repo, server.locate("bundled"), log_path) as running:
        process = running.process
        assert process is not None
        started = time.monotonic()
        running.stop()
        took = time.monotonic() - started
    assert process.returncode == 0
    log = log_path.read_text()
    assert "successfully unloaded 'digits_onnx'" in log, log[-3000:]
    assert "Found 0 live models" in log and not re.search(r"Found [1-9]\d* live models", log), log[
        -3000:
    ]
    assert took < 5.0, took  # the unload's own bound (server.UNLOAD_WITHIN_S) and SIGTERM's exit


def test_model_that_cannot_load_fails_with_server_error(repo: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    (broken / "digits_onnx" / "1").mkdir(parents=True)
    (broken / "digits_onnx" / "config.pbtxt").write_text(
        (repo / "digits_onnx" / "config.pbtxt").read_text()
    )
    for name in ("deploysnake_model.py", "runtime.py"):
        (broken / "digits_onnx" / "1" / name).write_bytes(
            (repo / "digits_onnx" / "1" / name).read_bytes()
        )
    (broken / "digits_onnx" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    started = time.monotonic()
    with (
        pytest.raises(RuntimeError, match="exited with code .* before it was ready") as error,
        server.TritonServer(
            broken, server.locate("bundled"), tmp_path / "server.log", readiness_timeout_s=60
        ),
    ):
        pass
    assert time.monotonic() - started < 60
    assert "digits_onnx" in str(error.value) and (
        "INVALID_PROTOBUF" in str(error.value) or "failed to load" in str(error.value)
    )


JOB = """
import sys, time
sys.path.insert(0, {src!r})
from deploysnake import server
with server.TritonServer({repo!r}, server.locate("bundled"), {log!r}) as s:
    print(s.process.pid, flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_server_dies_with_its_job(sig: signal.Signals, repo: Path, tmp_path: Path) -> None:
    src = str(Path(server.__file__).parents[1])
    code = textwrap.dedent(JOB.format(src=src, repo=str(repo), log=str(tmp_path / "server.log")))
    job = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(job.stdout.readline())
        assert psutil.pid_exists(pid)
        job.send_signal(sig)
        job.wait(timeout=30)
        deadline = time.monotonic() + 20
        while (
            psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        job.kill()
        job.wait()


def test_port_taken_before_the_server_binds_is_retried(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = server.free_ports
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        calls: list[list[int]] = []

        def first_pick_races(host: str, count: int) -> list[int]:
            # The first pick hands out a port that another process grabbed meanwhile (the race).
            ports = real(host, count)
            if not calls:
                ports[1] = taken
            calls.append(ports)
            return ports

        monkeypatch.setattr(server, "free_ports", first_pick_races)
        with server.TritonServer(
            repo, server.locate("bundled"), tmp_path / "server.log", readiness_timeout_s=60
        ) as running:
            assert running.is_ready() and running.grpc_port != taken
    assert len(calls) == 2
    assert "already in use" in (tmp_path / "server.log").read_text()


def test_inprocess_backend_answers_each_request_of_a_dynamic_batch(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    """Requests of different sizes joined into one batch come back split, each with its own rows."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    import tritonclient.http as httpclient

    # A long queue delay, so the concurrent requests below meet in the batcher.
    slow = {
        **TRITON,
        "dynamic_batching": {"preferred_batch_sizes": [], "max_queue_delay_us": 300_000},
    }
    model_dir = repository.write_repository(
        "digits", exported["onnx"], exported["onnx/io"], slow, "cpu", "inprocess", tmp_path / "repo"
    )
    io = json.loads(exported["onnx/io"].read_text())
    local = ArtifactRuntime(exported["onnx"], "onnx", ["image"], ["logits"])
    sizes = [1, 2, 3, 5, 7, 11]
    batches = [
        np.random.default_rng(size).random((size, 1, 8, 8), dtype=np.float32) for size in sizes
    ]
    with server.TritonServer(
        tmp_path / "repo",
        server.locate("bundled"),
        tmp_path / "server.log",
        readiness_timeout_s=120,
    ) as running:
        with ThreadPoolExecutor(len(sizes)) as pool:
            served = list(
                pool.map(
                    lambda x: infer_served(running, model_dir.name, io, {"image": x}, timeout_s=30),
                    batches,
                )
            )
        client = httpclient.InferenceServerClient(running.http_url)
        stats = client.get_inference_statistics(model_dir.name)["model_stats"][0]
    for x, got in zip(batches, served, strict=True):
        np.testing.assert_allclose(
            got["logits"], local({"image": x})["logits"], rtol=1e-6, atol=1e-6
        )
    assert stats["inference_count"] == sum(sizes)
    assert stats["execution_count"] < len(sizes)  # joined: fewer executions than requests


def test_inprocess_backend_returns_a_runner_error_to_its_request_and_serves_on(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    """A batch whose runner raises is answered with the Python error; the next batch is served, and
    the server stops cleanly with its responder thread."""
    import json

    from tritonclient.utils import InferenceServerException

    model_dir = repository.write_repository(
        "digits",
        exported["onnx"],
        exported["onnx/io"],
        TRITON,
        "cpu",
        "inprocess",
        tmp_path / "repo",
    )
    runner = model_dir / "1" / "deploysnake_model.py"
    # The runner refuses batches of exactly 3 rows (a fault in the model's code, not in Triton's input).
    anchor = "        batch = {\n"
    source = runner.read_text()
    assert source.count(anchor) == 1, "the runner's execute() changed: move the test's fault"
    runner.write_text(
        source.replace(
            anchor,
            "        if shapes[0][0] == 3:\n            raise ValueError('three rows refused by "
            "the test')\n" + anchor,
        )
    )
    io = json.loads(exported["onnx/io"].read_text())
    local = ArtifactRuntime(exported["onnx"], "onnx", ["image"], ["logits"])
    x3, x4 = (np.random.default_rng(n).random((n, 1, 8, 8), dtype=np.float32) for n in (3, 4))
    with server.TritonServer(
        tmp_path / "repo",
        server.locate("bundled"),
        tmp_path / "server.log",
        readiness_timeout_s=120,
    ) as running:
        with pytest.raises(
            InferenceServerException,
            match="deploysnake backend, execute: ValueError: three rows refused by the test",
        ):
            infer_served(running, model_dir.name, io, {"image": x3}, timeout_s=30)
        got = infer_served(running, model_dir.name, io, {"image": x4}, timeout_s=30)
        pid = running.process.pid if running.process else -1
    np.testing.assert_allclose(got["logits"], local({"image": x4})["logits"], rtol=1e-6, atol=1e-6)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "three rows refused by the test" in (tmp_path / "server.log").read_text()  # logged too


def test_offline_sweep_fills_every_instance(exported: dict[str, Path], tmp_path: Path) -> None:
    """A model with two instances is measured offline at two requests per instance too (4 in flight),
    by the real perf_analyzer, besides the configured concurrency."""
    import csv

    import yaml

    from deploysnake import tools
    from deploysnake.configuration import validate
    from deploysnake.measuring import perf

    config = validate(
        yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    )
    settings = {
        **config["perf"],
        "measurement_interval_ms": 300,
        "stability_percentage": 50,
        "repeats": 1,  # the best point measured once more: its spread from two runs
        # foreign load is not what this test checks (a shared machine would record 'disturbed')
        "max_foreign_cpu": 64,
        "offline": {"batch_sizes": [8], "concurrency": [1], "shared_memory": "system"},
    }
    two = {**TRITON, "instances": {"cpu": 2}}
    model_dir = repository.write_repository(
        "digits", exported["onnx"], exported["onnx/io"], two, "cpu", "inprocess", tmp_path / "repo"
    )
    written = repository.read_config(model_dir / "config.pbtxt").instance_group
    served = repository.served_settings("digits", "onnx", two, "cpu")
    assert sum(group.count for group in written) == served.instances == 2
    with server.TritonServer(
        tmp_path / "repo",
        server.locate("bundled"),
        tmp_path / "server.log",
        readiness_timeout_s=120,
    ) as running:
        rows = perf.measure(
            tools.perf_analyzer(settings["perf_analyzer"]),
            running,
            Target("digits", "onnx", "cpu"),
            served,
            exported["onnx/io"],
            settings,
            "offline",
            tmp_path / "offline.csv",
        )
    assert [(r["batch"], r["concurrency"], r["status"]) for r in rows] == [
        (8, 1, "ok"),
        (8, 4, "ok"),
    ]
    with open(tmp_path / "offline.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [row["Concurrency"] for row in written] == [
        "1",
        "4",
    ]  # perf_analyzer's own column: what it kept in flight
    assert all(float(row["Inferences/Second"]) > 0 for row in written)
    # Issue 32: the requests behind the percentiles, the batch the server ran, the spread.
    for row in written:
        assert int(row["requests"]) > 0 and row["p99_enough"] == "False"  # a 0.3 s window
        assert float(row["p99_margin"]) > 0 and float(row["p99_supported"]) < 99
        # static batches of 8 (two requests may be merged by the dynamic batcher)
        assert 8 <= float(row["server_batch"]) <= 16
        assert len(row["window_infer_s"].split(";")) == 3 and row["infer_s_from"] in (
            "windows",
            "runs",
        )
        assert float(row["infer_s_low"]) <= float(row["infer_s_mean"]) <= float(row["infer_s_high"])
    best = max(written, key=lambda r: float(r["Inferences/Second"]))
    runs = best["run_infer_s"].split(";")
    assert len(runs) + int(best["repeats_not_ok"]) == 2
    if len(runs) == 2:  # the repeat was ok: the interval is the runs'
        assert best["infer_s_from"] == "runs" and best["p99_n"] == "2"
