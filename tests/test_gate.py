"""The deployment gate (issue 33): results/summary.json and its schema, the comparison with a
baseline run's summary (results/gate.json, a failing run's non-zero exit after its report), the
capacity plan, and the CI examples' command lines.

End to end, small workflow runs of the digits model (onnx only, one perf point each, a short
capacity search): the first is the baseline (the run test_capacity shares, tests/served_run.py);
the second serves a checkpoint with perturbed weights
and must fail the gate on accuracy; a third measures the same model again (a copy of the first run
whose perf and capacity jobs re-run) against the first run's release archive and must pass, every
difference within its threshold or its noise. The CI examples' commands then run the first run's
copy against its own summary (only summary, gate and report are redone) and pass."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from deploysnake import gate, summary
from deploysnake.contracts import Status
from deploysnake.errors import UserError
from deploysnake.spread import capacity_spread, p99_spread, stability_spread

from . import served_run
from .conftest import ROOT, snakemake
from .faults.conftest import no_processes_left

# the first run's config (test_capacity's too): digits, onnx only, one offline and one online point,
# a capacity search, a cost and a plan for 300 req/s as instances on one server
CONFIG: dict[str, Any] = served_run.CONFIG
CI_FILES = {
    "github": ROOT / "examples" / "ci" / "github-actions.yml",
    "gitlab": ROOT / "examples" / "ci" / "gitlab-ci.yml",
}


def _summaries(*workdirs: Path) -> list[Path]:
    return [w / "results" / "summary.json" for w in workdirs]


@pytest.fixture(scope="module")
def first(capacity_and_gate_run: Path) -> Path:
    """The baseline run (default target: report, summary, gate without baseline, gate check,
    release), shared with test_capacity: the tests here copy it before running anything in it."""
    return capacity_and_gate_run


@pytest.fixture(scope="module")
def degraded(first: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A copy of the first run whose checkpoint has perturbed weights, gated against the first."""
    workdir = tmp_path_factory.mktemp("gate_degraded")
    shutil.copytree(first, workdir, symlinks=True, dirs_exist_ok=True)
    state = torch.load(first / "results" / "checkpoint" / "digits" / "model.pt", weights_only=True)
    generator = torch.Generator().manual_seed(0)
    # the last layer's weights scrambled: the logits mostly noise, top-1 accuracy far down
    last = [k for k, v in state.items() if k.endswith("weight") and v.ndim == 2][-1]
    state[last] = torch.randn(state[last].shape, generator=generator) * state[last].abs().max() * 3
    torch.save(state, workdir / "degraded.pt")
    config = copy.deepcopy(CONFIG)
    config["models"]["digits"]["checkpoint"] = str(workdir / "degraded.pt")
    config["baseline"] = str(first / "results" / "summary.json")
    done = served_run.run(workdir, config, check=False)
    no_processes_left(workdir)
    return workdir, done


# the perf jobs a second measurement of the same model re-runs
PERF_RULES = ["perf_analyzer_offline", "perf_analyzer_online", "perf_analyzer_capacity"]


@pytest.fixture(scope="module")
def again(first: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The same model measured a second time: a copy of the first run whose perf and capacity jobs
    run again (--forcerun), gated against the first run's release archive (baseline: an archive)."""
    workdir = tmp_path_factory.mktemp("gate_again")
    shutil.copytree(first, workdir, symlinks=True, dirs_exist_ok=True)
    config = copy.deepcopy(CONFIG)
    config["baseline"] = str(first / "results" / "release" / "cpu.tar.gz")
    (workdir / "c.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(
        "--cores",
        "2",
        "--configfile",
        "c.yaml",
        "--forcerun",
        *PERF_RULES,
        cwd=workdir,
        check=False,
        timeout=1200,
    )
    no_processes_left(workdir)
    return workdir, done


def test_the_first_run_writes_a_valid_summary_and_plans_its_instances(first: Path) -> None:
    doc = summary.read(first / "results" / "summary.json")  # validates against the schema
    (entry,) = [e for e in doc["entries"] if e["device"] == "cpu"]
    assert (entry["model"], entry["format"]) == ("digits", "onnx")
    assert entry["correctness"]["passed"] is True
    assert entry["served_stages"]["accuracy"] == "ok"
    metrics = {m["metric"]: m for m in entry["accuracy"]}
    assert metrics["accuracy"]["served"] > 0.5
    assert doc["provenance"]["config_hashes"] and doc["provenance"]["hardware"]["cpu"]
    cap = entry["capacity"]
    assert cap is not None and cap["rps"] and cap["spread"]["method"] == "bracket"
    # the plan: instances on one server for 300 req/s from the capacity less its bracket
    plan = entry["plan"]
    assert plan["usable_rps"] == pytest.approx(cap["rps"] / (1 + cap["spread"]["relative"]))
    assert plan["instances"] == math.ceil(300 * cap["instances"] / plan["usable_rps"])
    assert plan["cost_per_month"] == pytest.approx(0.10 * 730)
    pbtxt = next((first / "results" / "deploy" / "cpu").rglob("config.pbtxt")).read_text()
    assert re.search(rf"count: {plan['instances']}\b", pbtxt), pbtxt
    gate_doc = json.loads((first / "results" / "gate.json").read_text())
    assert gate_doc["status"] == Status.NO_BASELINE
    assert (first / "results" / "gate" / "passed.txt").read_text().strip() == Status.NO_BASELINE
    assert 'id="plan"' in (first / "results" / "report.html").read_text()


def test_a_degraded_checkpoint_fails_the_gate_after_writing_the_report(
    first: Path, degraded: tuple[Path, Any]
) -> None:
    workdir, done = degraded
    assert done.returncode != 0
    console = done.stdout + done.stderr
    assert re.search(r"gate failed.*\n.*digits/onnx on cpu: accuracy: accuracy", console), console[
        -3000:
    ]
    doc = json.loads((workdir / "results" / "gate.json").read_text())
    assert doc["status"] == Status.FAILED
    failed = {(r["model"], r["figure"]) for r in doc["failures"]}
    assert ("digits", "accuracy: accuracy") in failed
    (row,) = [r for r in doc["failures"] if r["figure"] == "accuracy: accuracy"]
    assert row["baseline"] - row["current"] > CONFIG.get("gate", {}).get("max_accuracy_drop", 0.01)
    assert row["noise"] < row["baseline"] - row["current"]
    html = (workdir / "results" / "report.html").read_text()
    assert 'id="gate"' in html and "FAILED" in html and "accuracy: accuracy" in html
    assert not (workdir / "results" / "gate" / "passed.txt").exists()
    for path in _summaries(first, workdir):
        summary.read(path)


def test_the_release_archive_carries_the_summary_and_serves_as_baseline(
    first: Path, tmp_path: Path
) -> None:
    release = first / "results" / "release" / "cpu.tar.gz"
    deployed = first / "results" / "deploy" / "cpu.tar.gz"
    with tarfile.open(release) as tar, tarfile.open(deployed) as dep:
        names = tar.getnames()
        # the deploy archive's repository, unchanged, plus cpu/summary.json beside MODELS.json
        assert set(names) == {*dep.getnames(), "cpu/summary.json"}
        for member in dep.getmembers():
            if member.isfile():
                got, want = tar.extractfile(member.name), dep.extractfile(member)
                assert got is not None and want is not None and got.read() == want.read()
    # the summary read from the archive is the run's, for this device
    inside = summary.read(release)
    whole = summary.read(first / "results" / "summary.json")
    assert inside == summary.for_device(whole, "cpu") and inside["entries"]
    # as a baseline it judges like the summary itself
    settings = {"max_accuracy_drop": 0.01}
    assert gate.compare(whole, inside, settings) == gate.compare(whole, whole, settings)
    # a deploy archive carries no summary: a clear error naming it and what to give instead
    with pytest.raises(UserError, match=r"cpu\.tar\.gz holds 0 summary\.json.*release archive"):
        summary.read(deployed)
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(release.read_bytes()[:200])
    with pytest.raises(UserError, match="cannot read the summary"):
        summary.read(broken)


def test_the_same_model_measured_again_passes_the_gate_within_noise(
    first: Path, again: tuple[Path, Any]
) -> None:
    workdir, done = again
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    # a real second measurement: every perf and capacity job ran again
    ran = set(re.findall(r"^(?:local)?rule (\w+):", done.stdout + done.stderr, re.M))
    assert set(PERF_RULES) <= ran, ran
    doc = json.loads((workdir / "results" / "gate.json").read_text())
    assert doc["baseline"].endswith("release/cpu.tar.gz")
    assert doc["status"] == Status.PASSED and not doc["failures"], gate.failures_text(doc)
    rows = doc["comparisons"]
    assert {r["verdict"] for r in rows} <= {gate.OK, gate.NOISE, gate.NOT_COMPARABLE}, rows
    by_figure = {r["figure"]: r for r in rows}
    assert by_figure["accuracy: accuracy"]["verdict"] == gate.OK
    assert by_figure["accuracy: accuracy"]["change"] == 0  # the same model, the same data
    # each perf figure both runs measured is judged against a band, never zero, or (measured beside
    # foreign CPU load on a shared machine) reported not comparable, saying why
    limit = 0.25  # gate.max_foreign_cpu's default
    perf_rows = [r for r in rows if r["unit"] == "ratio" and r["current"] is not None]
    assert perf_rows, rows
    for r in perf_rows:
        if r["verdict"] == gate.NOT_COMPARABLE:
            assert "foreign CPU load" in r["note"], r
        else:
            assert r["noise"] > 0 and not r["note"], r
    old_entry, new_entry = (
        summary.read(w / "results" / "summary.json")["entries"][0] for w in (first, workdir)
    )
    p99s = [r for r in perf_rows if r["figure"] == "p99 at concurrency 1"]
    loads = [e["online_points"][0]["foreign_cpu"] for e in (old_entry, new_entry)]
    if p99s and max(loads) > limit:
        assert p99s[0]["verdict"] == gate.NOT_COMPARABLE, (p99s, loads)
    new = summary.read(workdir / "results" / "summary.json")
    for point in new_entry["online_points"]:
        if point["status"] == "ok":
            # p99's band is wider than throughput's: the tail term on top of the stability band
            assert point["p99_spread"]["relative"] >= point["spread"]["relative"]
    # the second run, its gate passed, is packed for release in turn
    assert summary.read(workdir / "results" / "release" / "cpu.tar.gz") == summary.for_device(
        new, "cpu"
    )


def _ci_commands(name: str) -> list[str]:
    """The gate command lines of a CI example: GitHub's "Run the workflow with its gate" step,
    GitLab's gate job script."""
    doc = yaml.safe_load(CI_FILES[name].read_text())
    if name == "github":
        (step,) = [
            s
            for s in doc["jobs"]["gate"]["steps"]
            if s.get("name") == "Run the workflow with its gate"
        ]
        lines = [line for line in step["run"].splitlines() if line.strip()]
    else:
        lines = list(doc["gate"]["script"])
    return lines


def test_the_ci_examples_run_the_same_commands_and_a_run_against_its_own_summary_passes(
    first: Path, tmp_path: Path
) -> None:
    github, gitlab = _ci_commands("github"), _ci_commands("gitlab")
    assert github == gitlab
    assert any(line.startswith("snakemake ") for line in github)
    # both publish the report, summary and gate even when the gate failed
    gh = yaml.safe_load(CI_FILES["github"].read_text())
    (publish,) = [s for s in gh["jobs"]["gate"]["steps"] if s.get("name") == "Publish the report"]
    assert publish["if"] == "always()" and "results/report.html" in publish["with"]["path"]
    gl = yaml.safe_load(CI_FILES["gitlab"].read_text())
    assert gl["gate"]["artifacts"]["when"] == "always"
    assert "results/report.html" in gl["gate"]["artifacts"]["paths"]

    workdir = tmp_path / "run"
    shutil.copytree(first, workdir, symlinks=True)
    baseline = tmp_path / "baseline" / "summary.json"
    baseline.parent.mkdir()
    shutil.copy(first / "results" / "summary.json", baseline)
    (workdir / "c.yaml").write_text(yaml.safe_dump(CONFIG))
    env = {
        **os.environ,
        "DEPLOYSNAKE_CONFIG": str(workdir / "c.yaml"),
        "RUN_DIR": str(workdir),
        "BASELINE": str(baseline),
    }
    # the repository's .venv is what `source .venv/bin/activate` finds: run from the project root
    done = subprocess.run(
        ["bash", "-ec", "\n".join(github)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    # nothing measured again: only the summary, the gate, the report and what reads them re-ran
    ran = set(re.findall(r"^(?:local)?rule (\w+):", done.stdout + done.stderr, re.M))
    assert ran <= {
        "python_write_summary",
        "python_compare_baseline",
        "triton_write_deploy",
        "tar_pack_release",
        "altair_report",
        "python_check_gate",
        "all",
    }, ran
    doc = json.loads((workdir / "results" / "gate.json").read_text())
    assert doc["status"] == Status.PASSED and doc["comparisons"] and not doc["failures"]
    assert {r["verdict"] for r in doc["comparisons"]} <= {gate.OK, gate.NOISE, gate.NOT_COMPARABLE}
    assert 'id="gate"' in (workdir / "results" / "report.html").read_text()
    summary.read(workdir / "results" / "summary.json")
    no_processes_left(workdir)


# ---------------------------------------------------------------- unit tests, no server


def _doc(accuracy: float = 0.9, p99: float = 1000.0, infer: float = 500.0) -> dict[str, Any]:
    spread = stability_spread(infer, 20)
    point = {
        "batch": 1,
        "concurrency": 2,
        "infer_per_s": infer,
        "p50_us": p99 / 2,
        "p99_us": p99,
        "status": "ok",
        "spread": spread,
    }
    cap = {
        "status": "within_budget",
        "rps": 400.0,
        "infer_per_s": 400.0,
        "batch": 1,
        "p50_us": 900.0,
        "p99_us": 5000.0,
        "p99_budget_ms": 10.0,
        "upper_rps": 440.0,
        "instances": 1,
        "spread": capacity_spread({"capacity_rps": 400, "upper_rate": 440}, 0.1),
    }
    return {
        "schema_version": summary.SCHEMA_VERSION,
        "provenance": {
            "deploysnake": "0",
            "git_commit": None,
            "config_hashes": ["h"],
            "code_versions": ["c"],
            "hardware": {"cpu": "x86"},
            "packages": [],
        },
        "settings": {
            "p99_budget_ms": 10.0,
            "capacity_p99_budget_ms": 10.0,
            "perf_stability_percentage": 20.0,
            "capacity_stability_percentage": 5.0,
            "cost_per_hour": {"cpu": 0.1},
        },
        "entries": [
            {
                "model": "m",
                "format": "onnx",
                "device": "cpu",
                "correctness": {"passed": True, "reason": ""},
                "served_stages": dict.fromkeys(summary.STAGES, "ok"),
                "failures": [],
                "accuracy": [
                    {
                        "metric": "accuracy",
                        "source": accuracy,
                        "exported": accuracy,
                        "served": accuracy,
                        "samples": 100.0,
                        "spread": {"method": "numeric", "relative": 0.0},
                    },
                    {
                        "metric": "cross_entropy",
                        "source": 0.3,
                        "exported": 0.3,
                        "served": 0.3,
                        "samples": 100.0,
                        "spread": {"method": "numeric", "relative": 0.0},
                    },
                ],
                "offline_best": point,
                "online_best": point,
                "online_points": [point],
                "side_by_side": None,
                "capacity": cap,
                "cost": {"per_hour": 0.1, "per_million_inferences": 0.07},
                "plan": summary.plan(cap, {"target_rps": 1000}, 0.1),
            }
        ],
    }


def test_the_gate_judges_each_figure_against_its_threshold_and_the_spread() -> None:
    base = _doc()
    summary.validate(base)
    settings = {"max_accuracy_drop": 0.01, "lower_is_better": ["cross_entropy"]}
    same = gate.evaluate(_doc(), base, settings, "b.json")
    assert same["status"] == Status.PASSED and not same["failures"]
    # accuracy down 0.2 (no numeric spread): fails, naming the model and metric
    worse = gate.evaluate(_doc(accuracy=0.7), base, settings, "b.json")
    assert worse["status"] == Status.FAILED
    assert gate.failures_text(worse).startswith("m/onnx on cpu: accuracy: accuracy 0.9 -> 0.7")
    with pytest.raises(UserError, match="m/onnx on cpu: accuracy: accuracy"):
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"gate-{os.getpid()}.json"
        gate.write(worse, path)
        gate.check(path, "report.html", path.with_suffix(".txt"))
    # p99 up 30 % (threshold 25 %) but each run's windows agreed only within 20 %: within noise;
    # 2.5x is beyond it
    rows = gate.compare(_doc(p99=1300.0), base, {"max_p99_increase": 0.25})
    (p99,) = [r for r in rows if r["figure"].startswith("p99")]
    assert p99["verdict"] == gate.NOISE
    rows = gate.compare(_doc(p99=2500.0), base, {"max_p99_increase": 0.25})
    assert [r["verdict"] for r in rows if r["figure"].startswith("p99")] == [gate.FAIL]
    # throughput at half the baseline fails (ratio 0.5 < 0.8, beyond 2 x 20 %)
    rows = gate.compare(_doc(infer=250.0), base, {})
    assert {r["figure"] for r in rows if r["verdict"] == gate.FAIL} == {
        "best offline infer/s",
        "best online infer/s",
    }

    # p99's own band: the stability band plus the run's tail term (p99 - p95) / p99. A tail with
    # p95 at 0.6 x p99 is 0.2 + 0.4 each run: doubling the p99 is within noise, tripling is not
    def tailed(doc: dict[str, Any], p99: float) -> dict[str, Any]:
        (point,) = doc["entries"][0]["online_points"]
        point["p95_us"] = 0.6 * p99
        point["p99_spread"] = p99_spread(0.6 * p99, p99, 20)
        return doc

    assert p99_spread(600.0, 1000.0, 20)["relative"] == pytest.approx(0.6)  # type: ignore[index]
    tail_base = tailed(_doc(), 1000.0)
    summary.validate(tail_base)
    for p99, verdict in ((2000.0, gate.NOISE), (3000.0, gate.FAIL)):
        rows = gate.compare(tailed(_doc(p99=p99), p99), tail_base, {"max_p99_increase": 0.25})
        (row,) = [r for r in rows if r["figure"].startswith("p99")]
        assert (row["noise"], row["verdict"]) == (pytest.approx(1.2), verdict), row
    # a measured figure without a recorded spread gets its run's stability band, never zero
    bare = _doc(infer=320.0)
    for name in ("offline_best", "online_best"):
        bare["entries"][0][name] = {**bare["entries"][0][name], "spread": None}
    rows = gate.compare(bare, base, {})
    (row,) = [r for r in rows if r["figure"] == "best online infer/s"]
    assert row["noise"] == pytest.approx(0.2 + 0.2) and row["verdict"] == gate.NOISE, row
    # a point measured beside foreign CPU load is not judged, whatever its change: the load moves
    # it, not the model
    loaded = _doc(p99=9000.0, infer=100.0)
    for point in loaded["entries"][0]["online_points"] + [loaded["entries"][0]["online_best"]]:
        point["foreign_cpu"] = 1.5
    rows = gate.compare(loaded, base, {"max_foreign_cpu": 0.25})
    judged = {r["figure"]: r for r in rows}
    for figure in ("p99 at concurrency 2", "best online infer/s"):
        assert judged[figure]["verdict"] == gate.NOT_COMPARABLE, judged[figure]
        assert "1.50 cores of foreign CPU load" in judged[figure]["note"]
    # with a limit above the load, the same figures are judged (and fail)
    assert [
        r["verdict"]
        for r in gate.compare(loaded, base, {"max_foreign_cpu": 2})
        if r["figure"].startswith("p99")
    ] == [gate.FAIL]
    # a model the baseline served and this run does not
    gone = _doc()
    gone["entries"] = []
    assert gate.evaluate(gone, base, {}, "b")["failures"][0]["figure"] == "served"
    assert gate.evaluate(_doc(), None, {})["status"] == Status.NO_BASELINE


def test_the_plan_takes_the_spread_as_headroom() -> None:
    cap = {"rps": 400.0, "instances": 2, "spread": {"method": "bracket", "relative": 0.25}}
    # usable 300 req/s a server: 1000 req/s need 4 servers of 2 instances, 0.1 x 730 h each
    plan = summary.plan(cap, {"target_rps": 1000}, 0.1)
    assert plan is not None and (plan["replicas"], plan["instances"]) == (4, 2)
    assert plan["cost_per_month"] == pytest.approx(4 * 0.1 * 730)
    # instances on one server: 150 req/s an instance, 7 instances
    plan = summary.plan(cap, {"target_rps": 1000, "scale": "instances"}, None)
    assert plan is not None and (plan["replicas"], plan["instances"], plan["cost_per_month"]) == (
        1,
        7,
        None,
    )
    assert summary.plan(cap, {"target_rps": 0}, 0.1) is None


def test_a_summary_that_breaks_the_schema_is_refused_naming_the_field(tmp_path: Path) -> None:
    bad = _doc()
    bad["entries"][0]["capacity"]["rps"] = "fast"
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(UserError, match=r"entries/0/capacity/rps"):
        summary.read(path)


def test_an_empty_baseline_from_the_command_line_means_no_comparison() -> None:
    from deploysnake.configuration import validate

    # `--config baseline=` (the CI examples without a deployed summary) gives None
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["baseline"] = None
    assert validate(config)["baseline"] is None
    config["gate"] = {"max_p99_increase": -1}
    with pytest.raises(UserError, match="gate.max_p99_increase"):
        validate(config)
