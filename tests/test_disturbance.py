"""A measured window that ran beside foreign load is recorded as disturbed, with its load: the real
tritonserver and perf_analyzer, and a real busy loop outside the job's process tree."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import yaml

from deploysnake import repository, server, tools
from deploysnake.configuration import validate
from deploysnake.contracts import ServedSettings, Target
from deploysnake.measuring import native, perf

ROOT = Path(__file__).resolve().parents[1]
DIGITS_ONNX = Target("digits", "onnx", "cpu")
TRITON = {
    "max_batch_size": 16,
    "dynamic_batching": {"preferred_batch_sizes": [8]},
    "instances": {"cpu": 1},
    "runtime_threads": 1,
}
BUSY_S = 90  # the loop's own bound: it ends by itself even if the test is killed


@contextmanager
def busy_loop() -> Iterator[int]:
    """One core kept busy by a process outside this process's tree (started through a shell that
    exits at once, so it is nobody's child here), bounded in time and stopped at the end."""
    code = f"import time\nend = time.monotonic() + {BUSY_S}\nwhile time.monotonic() < end: pass"
    done = subprocess.run(
        ["sh", "-c", f'"{sys.executable}" -c "$0" >/dev/null 2>&1 & echo $!', code],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    pid = int(done.stdout.strip())
    me = psutil.Process()
    assert pid not in {p.pid for p in me.children(recursive=True)}
    try:
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_busy_loop_beside_a_perf_job_is_recorded_disturbed(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    config = validate(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    settings = {
        **config["perf"],
        "measurement_interval_ms": 300,
        "stability_percentage": 100,
        "max_trials": 8,
        "offline": {"batch_sizes": [8], "concurrency": [1], "shared_memory": "system"},
    }
    assert settings["max_foreign_cpu"] == 0.25  # the schema's default
    repository.write_repository(
        "digits", exported["onnx"], exported["onnx/io"], TRITON, "cpu", "inprocess", tmp_path / "r"
    )
    with (
        server.TritonServer(
            tmp_path / "r", server.locate("bundled"), tmp_path / "server.log"
        ) as running,
        busy_loop(),
    ):
        rows = perf.measure(
            tools.perf_analyzer(settings["perf_analyzer"]),
            running,
            DIGITS_ONNX,
            repository.served_settings("digits", "onnx", TRITON, "cpu"),
            exported["onnx/io"],
            settings,
            "offline",
            tmp_path / "offline.csv",
        )
        nat = native.measure(
            DIGITS_ONNX,
            ServedSettings("digits_onnx", "cpu", max_batch_size=1, instances=1, runtime_threads=1),
            exported["onnx"],
            exported["onnx/io"],
            [8],
            0.5,
            100_000,
            tmp_path / "native.csv",
        )
    [row] = rows
    assert row["status"] == "disturbed", row
    assert float(row["foreign_cpu"]) >= 0.5, row
    # The figures beside it: what the server and perf_analyzer used, the server's memory.
    assert float(row["server_cpu"]) > 0 and float(row["client_cpu"]) > 0, row
    assert float(row["server_peak_rss_mb"]) > 10, row
    assert nat[0]["status"] == "disturbed" and nat[0]["foreign_cpu"] >= 0.5, nat[0]
    assert nat[0]["job_cpu"] > 0 and nat[0]["native_cpu_ms_per_1k"] > 0, nat[0]
    text = (tmp_path / "offline.csv").read_text()
    assert "disturbed" in text and "foreign_cpu" in text.splitlines()[0]
