"""Planning many models: every model's first phase is in the DAG from the start, and a model's
measuring phase joins it as soon as that model's verdicts exist (issue #23). Dry runs of the real
workflow only: nothing is trained or measured."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ROOT, snakemake

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_dag import (
    data_only,
    planned_jobs,
    prepare_first_phase,
    same_dag,
    shape_matched,
    touch_script,
)

FORMATS = ["torchscript_trace", "onnx"]
CONFIG = {
    "models": {
        name: {"recipe": str(ROOT / "recipes" / "digits"), "params": {"channels": 8, "seed": i}}
        for i, name in enumerate(("digits", "second", "third"))
    },
    "formats": FORMATS,
    "devices": ["cpu"],
}
FIRST_PHASE = {
    "torch_train": 1,
    "torch_export_torchscript": 1,
    "torch_export_onnx": 1,
    "runtime_check_correctness": len(FORMATS),
    "python_collect_verdicts": 1,
}
MEASURING = {
    "triton_write_repository": len(FORMATS),
    "tritonclient_accuracy": len(FORMATS),
    "perf_analyzer_offline": len(FORMATS),
    "perf_analyzer_online": len(FORMATS),
    "runtime_native_baseline": len(FORMATS),
    "python_prepare_perf_data": 1,
}

# the jobs of no one model that results/report.html needs (the gate's summary and comparison too)
RUN_WIDE = [
    "python_describe_environment",
    "triton_write_deploy",
    "python_write_summary",
    "python_compare_baseline",
    "altair_report",
]


def jobs_per_model(output: str) -> dict[str, Counter[str]]:
    """{model: Counter(rule: jobs)} from a dry run's job listing (bench_dag.planned_jobs)."""
    found: dict[str, Counter[str]] = {}
    for job in planned_jobs(output):
        if "model" in job["wildcards"]:
            found.setdefault(job["wildcards"]["model"], Counter())[job["rule"]] += 1
    return found


def dry_run(workdir: Path) -> dict[str, Counter[str]]:
    done = snakemake(
        "results/report.html", "--dry-run", "--cores", "2", "--configfile", "three.yaml",
        cwd=workdir,
    )  # fmt: skip
    return jobs_per_model(done.stdout + done.stderr)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "three.yaml").write_text(yaml.safe_dump(CONFIG))
    return tmp_path


def test_every_models_first_phase_is_planned_from_the_start(workdir: Path) -> None:
    planned = dry_run(workdir)
    assert planned == {model: Counter(FIRST_PHASE) for model in CONFIG["models"]}, planned


def test_a_models_measuring_phase_is_planned_once_its_own_verdicts_exist(workdir: Path) -> None:
    prepare_first_phase(workdir, CONFIG, ["second"])
    planned = dry_run(workdir)
    # second's verdicts are in: its measuring jobs are planned, while the others still train
    assert planned["second"] == Counter(MEASURING), planned["second"]
    assert planned["digits"] == planned["third"] == Counter(FIRST_PHASE), planned


def test_bench_dags_bare_snakefile_of_the_same_files_plans_the_same_jobs(workdir: Path) -> None:
    """make bench-dag's third yardstick: bare rules over the very files the workflow's jobs read and
    write, with the jobs already done (a measured model's first phase) in its DAG as in the
    workflow's. Its dry run must plan what the workflow's did, job for job, or the ratio means
    nothing."""

    def plan(*args: str) -> str:
        done = snakemake(
            "results/report.html", "--dry-run", "--cores", "2", *args, cwd=workdir
        )  # fmt: skip
        return done.stdout + done.stderr

    first = plan("--configfile", "three.yaml")
    prepare_first_phase(workdir, CONFIG, ["second"])  # both phases at once: one model measured
    ours = planned_jobs(plan("--configfile", "three.yaml"))
    dag = same_dag(ours, planned_jobs(first))
    bare = workdir / "bare"
    bare.mkdir()
    (bare / "Snakefile").write_text(shape_matched(dag))
    touch_script(bare / "touch.py")
    theirs = planned_jobs(plan("--snakefile", str(bare / "Snakefile")))
    whole = planned_jobs(plan("--snakefile", str(bare / "Snakefile"), "--forceall"))

    def listing(jobs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
        # a rule of several shapes is one bare rule per shape: name_0, name_1, ...
        return sorted(
            (
                re.sub(r"_\d+$", "", j["rule"]),
                *(", ".join(j[f]) for f in ("input", "output", "log")),
            )
            for j in jobs
        )

    # besides the models' jobs: the environment, the deploy archive, the summary, the gate, the report
    assert Counter(j["rule"] for j in ours if "model" not in j["wildcards"]) == Counter(RUN_WIDE)
    assert len(ours) == sum(FIRST_PHASE.values()) * 2 + sum(MEASURING.values()) + len(RUN_WIDE)
    assert listing(theirs) == listing(ours)
    # second's first phase is in the bare DAG too, up to date: run only when forced
    assert len(dag) == len(ours) + sum(FIRST_PHASE.values())
    assert listing(whole) == listing(dag)

    # the fourth yardstick: the same jobs with their data files only (no log, no source file)
    (bare / "Snakefile").write_text(shape_matched(data_only(dag)))
    lean = planned_jobs(plan("--snakefile", str(bare / "Snakefile")))
    assert listing(lean) == listing(data_only(ours))
    assert not any(j["log"] for j in lean)
    assert all(p.startswith("results/") for j in lean for p in j["input"])
    assert sum(len(j["input"]) for j in lean) < sum(len(j["input"]) for j in theirs)
