"""The workflow on a real SLURM: Debian's slurm-wlm and munge, one node on this machine's loopback.

The module starts the daemons (scripts/slurm_local.sh, which installs the packages when missing),
runs `snakemake --profile profiles/slurm` on two tiny models at once, and stops the daemons it
started. SLURM's own records (squeue of finished jobs: start and end times, the comment naming each
job's rule and wildcards) show that jobs of different models ran at the same time. The slurm
executor plugin sits in .venv/slurm-plugin (make test installs it), on PYTHONPATH here only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from itertools import combinations
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, processes_named

pytestmark = pytest.mark.e2e

PLUGIN = ROOT / ".venv" / "slurm-plugin"
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")
# Two tiny models (one named digits: the default config's model merges into any --configfile; two
# are what jobs of different models at once needs, and as many as a 2-core node runs side by side),
# one format, one point per sweep: the test is about scheduling, not about the numbers. Every job
# but the local rules is an sbatch submission (the slurm executor waits 5 s before each), so each
# job counts.
MODELS = ("digits", "beta")
FORMAT = "onnx"
TWO = {
    "models": {
        name: {
            "recipe": str(ROOT / "recipes" / "digits"),
            "params": {"channels": 4, "epochs": 1, "batch_size": 64, "seed": i},
        }
        for i, name in enumerate(MODELS)
    },
    "formats": [FORMAT],
    "devices": ["cpu"],
    "correctness": {"batches": 1},
    "accuracy": {"batch_size": 16},
    "triton": {"max_batch_size": 16, "readiness_timeout_s": 120},
    "perf": {
        "measurement_interval_ms": 200,
        "stability_percentage": 50,
        "max_trials": 3,
        "offline": {"batch_sizes": [16], "concurrency": [1]},
        "online": {"concurrency": [1]},
    },
    "native": {"window_s": 0.1},
}


# The jobs of this DAG that run on the submitting host (the Snakefile's localrules).
LOCAL = {
    "python_collect_verdicts",
    "triton_write_repository",
    "python_write_summary",
    "python_compare_baseline",
    "altair_report",
}


def slurm_run(*args: str, cwd: Path, timeout: float = 2400) -> subprocess.CompletedProcess[str]:
    """snakemake TARGET --profile profiles/slurm, as a cluster user types it (targets first)."""
    exe = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGIN), os.environ.get("PYTHONPATH")])),
    }
    # --max-threads caps the measuring rules' threads to what the node can grant; one thread a job lets
    # the node's cores run jobs of several models at once, and keeps this test short.
    cmd = [
        exe,
        "results/report.html",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--configfile",
        "two.yaml",
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--max-threads",
        "1",
        # The plugin checks job states init seconds after a check that saw a job finish, and 10 s
        # later after each that saw none; every job here runs a few seconds, so the profile's 5 s
        # made each step of the DAG wait about 25 s. One node on loopback answers squeue at once.
        "--slurm-init-seconds-before-status-checks",
        "1",
        *args,
    ]
    with open(cwd / "snakemake.out", "w") as out:  # a file, never an unread pipe
        code = subprocess.run(
            cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout
        ).returncode
    return subprocess.CompletedProcess(cmd, code, (cwd / "snakemake.out").read_text(), "")


def slurm_records() -> dict[str, dict[str, str]]:
    """{job id: {comment, start, end}} from the controller's records of every job it still knows:
    the slurm executor's comment reads rule_<rule>_wildcards_<values joined by _>."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i|%k|%S|%e"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    records = {}
    for line in out.splitlines():
        if line.strip():
            job, comment, start, end = line.split("|")
            records[job] = {"comment": comment, "start": start, "end": end}
    return records


def slurm_jobs() -> dict[str, str]:
    """{job id: state} of every job the controller still knows (finished ones stay MinJobAge = 300 s)."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i %T"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip(
            "the SLURM test installs and starts slurmctld, slurmd and munged: it must run as root (CI does)"
        )
    if not (PLUGIN / "snakemake_executor_plugin_slurm").is_dir():
        pytest.fail(
            f"the slurm executor plugin is missing from {PLUGIN}: run scripts/setup.sh test (make test does)"
        )
    state = tmp_path_factory.mktemp("slurm")
    start = subprocess.run(
        [str(ROOT / "scripts" / "slurm_local.sh"), "start", str(state)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if start.returncode == 3:
        pytest.skip(f"this machine runs its own SLURM: {start.stderr.strip()}")
    try:
        assert start.returncode == 0, f"SLURM did not start:\n{start.stderr[-4000:]}"
        yield
    finally:
        subprocess.run(
            [str(ROOT / "scripts" / "slurm_local.sh"), "stop", str(state)], timeout=120, check=True
        )
    for daemon in ("slurmctld", "slurmd"):
        assert not processes_named(daemon), f"{daemon} still runs after stop"


@pytest.fixture(scope="module")
def finished(slurm: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    workdir = tmp_path_factory.mktemp("on_slurm")
    (workdir / "two.yaml").write_text(yaml.safe_dump(TWO))
    done = slurm_run(cwd=workdir)
    assert done.returncode == 0, f"the workflow failed on SLURM:\n{done.stdout[-8000:]}"
    return workdir, done.stdout


def test_every_job_but_the_local_rules_went_through_sbatch(finished: tuple[Path, str]) -> None:
    """Each job went through sbatch and completed there, but those of the Snakefile's localrules
    (small files in, small files out), which ran on the submitting host; no job that loads a model,
    trains, measures or describes the machine did."""
    _, output = finished
    submitted = SUBMITTED.findall(output)
    local = re.findall(r"^local(?:rule|checkpoint) (\w+):", output, re.MULTILINE)
    steps = re.findall(r"(\d+) of (\d+) steps \(100%\) done", output)
    assert steps and len(submitted) + len(local) == int(steps[-1][1]), (
        f"{len(submitted)} sbatch submissions and {len(local)} local jobs for {steps} jobs"
    )
    assert set(local) == LOCAL, local
    known = slurm_jobs()
    assert {known.get(job) for job in submitted} == {"COMPLETED"}, {
        job: known.get(job) for job in submitted
    }


def test_the_report_is_complete(finished: tuple[Path, str]) -> None:
    workdir, _ = finished
    html = (workdir / "results" / "report.html").read_text()
    for model in MODELS:
        for stage in ("accuracy", "perf_offline", "perf_online", "native"):
            assert (workdir / "results" / stage / model / FORMAT / "cpu.csv").stat().st_size > 0
        assert f"<h2>Model: {model}</h2>" in html
    assert 'id="best"' in html and 'data-table="hardware"' in html
    # measured on the node, by jobs that started their own server on its loopback
    server_log = (
        workdir / "logs" / "perf_offline" / "digits" / FORMAT / "cpu.server.log"
    ).read_text()
    assert "Started GRPCInferenceService at 127.0.0.1:" in server_log


def test_jobs_of_different_models_ran_at_the_same_time(finished: tuple[Path, str]) -> None:
    _, output = finished
    records = slurm_records()
    spans: dict[str, list[tuple[datetime, datetime, str]]] = {m: [] for m in MODELS}
    for job in SUBMITTED.findall(output):
        record = records[job]
        match = re.fullmatch(r"rule_(\w+?)_wildcards_([^_]+)(?:_.*)?", record["comment"])
        if match and match.group(2) in spans:
            start, end = (datetime.fromisoformat(record[k]) for k in ("start", "end"))
            spans[match.group(2)].append((start, end, match.group(1)))
    assert all(spans.values()), spans
    overlaps = [
        (a, ra, b, rb)
        for (a, one), (b, other) in combinations(spans.items(), 2)
        for s1, e1, ra in one
        for s2, e2, rb in other
        if s1 < e2 and s2 < e1  # both running during the same second(s), as SLURM records them
    ]
    assert overlaps, f"no two jobs of different models overlapped in SLURM's records: {spans}"


def test_a_rerun_does_nothing(finished: tuple[Path, str]) -> None:
    workdir, _ = finished
    again = slurm_run(cwd=workdir)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout
    assert not SUBMITTED.findall(again.stdout)


def test_a_gpu_the_cluster_lacks_fails_before_submission(finished: tuple[Path, str]) -> None:
    workdir, _ = finished
    before = set(slurm_jobs())
    done = slurm_run("--config", "devices=[cpu,a100]", cwd=workdir)
    assert done.returncode != 0
    assert "no SLURM node has ['gpu:a100']" in done.stdout, done.stdout[-3000:]
    assert not SUBMITTED.findall(done.stdout) and set(slurm_jobs()) == before


def test_a_request_no_node_can_meet_fails_before_submission(finished: tuple[Path, str]) -> None:
    """A measuring job asking for more CPUs than the node has (the profile's set-threads on a small
    node): the run stops before it submits, naming the rule, the figure and the fix, instead of jobs
    pending forever (SLURM's reason PartitionConfig)."""
    workdir, _ = finished
    before = set(slurm_jobs())
    node_cpus = max(
        int(c)
        for c in subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%c"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split()
    )
    asked = node_cpus + 1
    done = slurm_run(
        "--max-threads",
        str(asked),
        "--set-threads",
        f"perf_analyzer_offline={asked}",
        "--forcerun",
        "perf_analyzer_offline",
        cwd=workdir,
    )
    assert done.returncode != 0
    said = " ".join(done.stdout.split())
    assert (
        f"rule perf_analyzer_offline asks for {asked} CPUs a job, but no node of the default "
        f"partition has more than {node_cpus}; its jobs would stay pending forever. Pass "
        f"--max-threads {node_cpus}"
    ) in said, done.stdout[-3000:]
    assert not SUBMITTED.findall(done.stdout) and set(slurm_jobs()) == before
