"""Fault suite fixtures: one tiny finished run that each destructive test copies and breaks."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from ..conftest import ROOT, snakemake

TINY = {
    "models": {
        "digits": {
            "recipe": str(ROOT / "recipes" / "digits"),
            "params": {"channels": 8, "epochs": 2, "seed": 0},
        }
    },
    "formats": ["torchscript_trace", "onnx"],
    "devices": ["cpu"],
    "correctness": {"batches": 1},
    "accuracy": {"batch_size": 32},
    "triton": {"max_batch_size": 32, "readiness_timeout_s": 60},
    "perf": {
        "measurement_interval_ms": 300,
        "stability_percentage": 50,
        "max_trials": 4,
        # one point per sweep: the faults are about failures and processes, not about numbers
        "offline": {"batch_sizes": [16]},
        "online": {"concurrency": [2]},
    },
    "native": {"window_s": 0.2},
}


def write_config(workdir: Path, config: dict, name: str = "tiny.yaml") -> str:
    (workdir / name).write_text(yaml.safe_dump(config))
    return name


def run(
    workdir: Path,
    *targets: str,
    config: str = "tiny.yaml",
    check: bool = True,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    return snakemake(
        *(targets or ("results/report.html",)),
        "--cores",
        "2",
        "--configfile",
        config,
        cwd=workdir,
        check=check,
        timeout=timeout,
    )


def start(workdir: Path, *targets: str, config: str = "tiny.yaml") -> subprocess.Popen[str]:
    """snakemake in the background, in its own session (as a terminal would run it)."""
    exe = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    args = [
        exe,
        "--snakefile",
        str(ROOT / "Snakefile"),
        *(targets or ("results/report.html",)),
        "--cores",
        "2",
        "--configfile",
        config,
    ]
    # Output to a file, not a pipe: an unread pipe fills up and blocks snakemake.
    with open(workdir / "snakemake.out", "w") as out:
        return subprocess.Popen(
            args,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def processes_in(workdir: Path) -> list[str]:
    """Processes (other than this test's) whose working directory is inside workdir: jobs, servers, perf_analyzer."""
    found = []
    for proc in psutil.process_iter(["pid", "name", "cwd"]):
        try:
            if (
                proc.pid != psutil.Process().pid
                and proc.info["cwd"]
                and Path(proc.info["cwd"]).is_relative_to(workdir)
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(f"{proc.pid} {proc.info['name']}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_until(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def no_processes_left(workdir: Path, timeout_s: float = 30) -> None:
    wait_until(
        lambda: not processes_in(workdir),
        timeout_s,
        f"the run's processes to end: {processes_in(workdir)}",
    )


@pytest.fixture(scope="package")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("finished")
    write_config(workdir, TINY)
    run(workdir)
    return workdir


@pytest.fixture
def copy_of_finished(finished: Path, tmp_path: Path) -> Iterator[Path]:
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir, symlinks=True)  # copy2 keeps mtimes: nothing is out of date
    yield workdir
    for line in processes_in(workdir):  # never leave a process behind, even when a test fails
        psutil.Process(int(line.split()[0])).kill()
