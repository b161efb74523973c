"""Thread pools sized from the CPUs a job may use, never from Snakemake's --cores: read back from
the started processes (/proc environ and thread counts, the runtimes' own settings), not timings."""

from __future__ import annotations

import os
import re
from pathlib import Path

import psutil
import pytest

from deploysnake import processes, repository, server
from deploysnake.contracts import ServedSettings, Target
from deploysnake.measuring import native

from .conftest import ROOT, snakemake

CPUS = processes.usable_cpus()[0]
TRITON = {
    "max_batch_size": 64,
    "dynamic_batching": {"preferred_batch_sizes": [8]},
    "runtime_threads": 0,
}


def test_usable_cpus_follow_affinity_and_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    count, how = processes.usable_cpus()
    assert 1 <= count <= len(os.sched_getaffinity(0)) and "affinity" in how
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "1")
    assert processes.usable_cpus()[0] == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "64")  # what Snakemake exports: never a source
    monkeypatch.delenv("SLURM_CPUS_ON_NODE")
    assert processes.usable_cpus()[0] == count


def test_cgroup_quota_files_are_read_as_cores(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert processes._read_quota(tmp_path, ("cpu.max",)) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert processes._read_quota(tmp_path, ("cpu.max",)) is None
    (tmp_path / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu.cfs_period_us").write_text("100000\n")
    files = ("cpu.cfs_quota_us", "cpu.cfs_period_us")
    assert processes._read_quota(tmp_path, files) == 3.0
    (tmp_path / "cpu.cfs_quota_us").write_text("-1\n")
    assert processes._read_quota(tmp_path, files) is None


@pytest.mark.parametrize(("runner", "instances"), [("deploysnake", 1), ("python", 2)])
def test_server_and_its_runtimes_get_the_jobs_cpus(
    runner: str,
    instances: int,
    exported: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As in a Snakemake job with --cores 8: OMP_NUM_THREADS and its siblings say 8. The server's
    environment and each runtime's threads (read back from ONNX Runtime's session options and
    torch.get_num_threads in the server process) come from the job's CPUs instead."""
    for name in processes.THREAD_VARIABLES:
        monkeypatch.setenv(name, "8")
    monkeypatch.delenv(processes.CPUS_VARIABLE, raising=False)
    flavour = {"deploysnake": "inprocess", "python": "python"}[runner]
    triton = {**TRITON, "instances": {"cpu": instances}}
    repo = tmp_path / "repo"
    for fmt in ("onnx", "torchscript_trace"):
        model_dir = repository.write_repository(
            "digits", exported[fmt], exported[f"{fmt}/io"], triton, "cpu", flavour, tmp_path / fmt
        )
        repo.mkdir(exist_ok=True)
        os.replace(model_dir, repo / model_dir.name)
    expected = max(1, CPUS // instances)
    with server.TritonServer(
        repo, server.locate("bundled", runner), tmp_path / "server.log", readiness_timeout_s=120
    ) as running:
        assert running.process is not None
        got = processes.thread_settings(running.process.pid)
        threads = psutil.Process(running.process.pid).num_threads()
    assert {k: got[k] for k in processes.THREAD_VARIABLES} == dict.fromkeys(
        processes.THREAD_VARIABLES, str(CPUS)
    )
    assert got[processes.CPUS_VARIABLE] == str(CPUS) and threads > 0
    log = (tmp_path / "server.log").read_text()
    onnx = re.findall(r"deploysnake runner digits_onnx: .*intra_op_num_threads=(\d+)", log)
    torch = re.findall(r"deploysnake runner digits_torchscript_trace: .* num_threads=(\d+)", log)
    assert onnx == [str(expected)] * instances, log[-3000:]
    assert torch == [str(expected)] * instances, log[-3000:]


def test_native_baseline_uses_the_served_threads(
    exported: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    monkeypatch.delenv(processes.CPUS_VARIABLE, raising=False)
    rows = native.measure(
        Target("digits", "onnx", "cpu"),
        # runtime_threads 0: the job's CPUs over the instances, as the served runner resolves it
        ServedSettings("digits_onnx", "cpu", max_batch_size=1, instances=2, runtime_threads=0),
        exported["onnx"],
        exported["onnx/io"],
        [4],
        5.0,
        3,
        tmp_path / "n.csv",
    )
    assert rows[0]["runtime_threads"] == max(1, CPUS // 2)


TINY = {
    "models": {
        "digits": {
            "recipe": str(ROOT / "recipes" / "digits"),
            "params": {"channels": 4, "epochs": 1, "batch_size": 64, "seed": 0},
        }
    },
    "formats": ["onnx"],
    "devices": ["cpu"],
    "correctness": {"batch_size": 64, "batches": 1},
    "triton": {"max_batch_size": 16, "dynamic_batching": {"preferred_batch_sizes": [8]}},
    "accuracy": {"batch_size": 16},
    "perf": {
        "measurement_interval_ms": 200,
        "stability_percentage": 90,
        "max_trials": 3,
        "max_foreign_cpu": 2.0,
        "offline": {"batch_sizes": [8], "concurrency": [1]},
        "online": {"concurrency": [1]},
    },
    "native": {"window_s": 0.2},
}
THREAD_LINES = re.compile(
    r"(CPUs this job may use: \d+|tritonserver \(pid \d+\) got: .*|intra_op_num_threads=\d+)"
)


@pytest.mark.e2e
def test_cores_8_and_cores_2_give_the_same_thread_settings(tmp_path: Path) -> None:
    """On this machine (fewer than 8 CPUs), `--cores 8` makes Snakemake export OMP_NUM_THREADS=8
    into each job: the measuring jobs' logs state the same settings as with --cores 2."""
    import yaml

    assert CPUS < 8
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    targets = ["results/native/digits/onnx/cpu.csv", "results/perf_online/digits/onnx/cpu.csv"]
    logs = ["logs/native/digits/onnx/cpu.log", "logs/perf_online/digits/onnx/cpu.log"]
    seen = {}
    for cores in ("8", "2"):
        for log in logs:
            (tmp_path / log).unlink(missing_ok=True)
        snakemake(
            *targets,
            "--cores",
            cores,
            "--configfile",
            "tiny.yaml",
            "--forcerun",
            "runtime_native_baseline",
            "perf_analyzer_online",
            cwd=tmp_path,
        )
        seen[cores] = [
            re.sub(r"pid \d+|'threads': '\d+'", "N", m)
            for log in logs
            for m in THREAD_LINES.findall((tmp_path / log).read_text())
        ]
    assert seen["8"] == seen["2"]
    assert f"CPUs this job may use: {CPUS}" in seen["8"]
    assert f"intra_op_num_threads={CPUS}" in seen["8"]
    assert any(f"'OMP_NUM_THREADS': '{CPUS}'" in line for line in seen["8"]), seen["8"]
