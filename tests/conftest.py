"""Shared fixtures: a trained digits checkpoint and its exports, made once per test session."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from deploysnake import checkpoint, export, onnx_variants
from deploysnake.formats import ARTIFACTS, ONNX_VARIANTS
from deploysnake.frameworks import ModelSource
from deploysnake.plugins import Recipe, load_recipe

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"channels": 8, "epochs": 2, "batch_size": 64, "seed": 0}
# What a perf point that went through may read (the format was measured): ok, unstable (no stable
# window, no number), or disturbed (foreign load above perf.max_foreign_cpu; deploysnake.usage).
MEASURED = {"ok", "unstable", "disturbed"}
# Two measuring jobs at a time, for runs whose tests read what each point records, not its figures:
# a measuring job takes every core of --cores unless capped, so snakemake gets these arguments (one
# thread each) and the config comes from measured_two_at_a_time.
TWO_AT_A_TIME_ARGS = ("--max-threads", "1")


def measured_two_at_a_time(config: dict[str, Any]) -> dict[str, Any]:
    """The config for two measuring jobs at a time (snakemake with TWO_AT_A_TIME_ARGS): each sees
    the other's load, which is not a disturbance here (perf.max_foreign_cpu 64), and each server's
    runtime takes one thread, so two on two cores do not oversubscribe them (torch's spinning
    intra-op threads slowed a probe a hundredfold)."""
    return {
        **config,
        "perf": {**config["perf"], "max_foreign_cpu": 64},
        "triton": {**config["triton"], "runtime_threads": 1, "inter_op_threads": 1},
    }


def _cases_folder() -> Path:
    """The shared cases (../shared/cases/): $DEPLOYSNAKE_CASES where set, else shared/cases in the
    nearest folder above the clone that has one (CI checks shared/ out beside the clone; a worktree
    may sit deeper). Every case test reads this one place, so none is skipped where another runs."""
    if "DEPLOYSNAKE_CASES" in os.environ:
        return Path(os.environ["DEPLOYSNAKE_CASES"])
    for parent in ROOT.parents:
        if (parent / "shared" / "cases").is_dir():
            return parent / "shared" / "cases"
    return ROOT.parent / "shared" / "cases"


CASES = _cases_folder()
# The mark of every test that runs a shared case: skipped, saying where it looked, without them.
needs_cases = pytest.mark.skipif(
    not CASES.is_dir(),
    reason=f"the shared cases are not at {CASES} (shared/ beside the clone, or set "
    "DEPLOYSNAKE_CASES)",
)


@pytest.fixture(scope="session", autouse=True)
def one_inductor_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One AOTInductor compile cache for the session's workflow runs (each runs in its own folder,
    whose .cache/torchinductor would rebuild torch's precompiled headers every time)."""
    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path_factory.mktemp("torchinductor"))
    yield
    if before is None:
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
    else:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = before


@pytest.fixture(scope="session", autouse=True)
def one_vega_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One cache of the report's vega-embed bundle for the session's workflow runs (each runs in
    its own folder, whose .cache/vega would have every report job build the bundle again, about
    1.8 s each: deploysnake.report.charts.vega_bundle)."""
    from deploysnake.report.charts import VEGA_CACHE_ENV

    before = os.environ.get(VEGA_CACHE_ENV)
    os.environ[VEGA_CACHE_ENV] = str(tmp_path_factory.mktemp("vega"))
    yield
    if before is None:
        os.environ.pop(VEGA_CACHE_ENV, None)
    else:
        os.environ[VEGA_CACHE_ENV] = before


@pytest.fixture(scope="session", autouse=True)
def summaries_follow_their_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every results/summary.json a test's workflow run wrote is checked against the summary's
    schema (src/deploysnake/summary.schema.json) once the session ends."""
    yield
    from deploysnake import summary

    for path in tmp_path_factory.getbasetemp().glob("**/results/summary.json"):
        summary.read(path)  # UserError naming the file and field


@pytest.fixture(scope="session")
def recipe() -> Recipe:
    return load_recipe(ROOT / "recipes" / "digits")


@pytest.fixture(scope="session")
def exported(recipe: Recipe, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """checkpoint + one export per format: {"checkpoint": path, "<format>": artifact, "<format>/io": io.json}."""
    out = tmp_path_factory.mktemp("exported")
    paths: dict[str, Path] = {"checkpoint": out / "model.pt"}
    checkpoint.make_checkpoint(recipe, PARAMS, None, paths["checkpoint"])
    for fmt in ("torchscript_trace", "torchscript_script", "onnx", *ONNX_VARIANTS):
        paths[fmt] = out / fmt / ARTIFACTS[fmt]
        paths[f"{fmt}/io"] = out / fmt / "io.json"
        if fmt in ONNX_VARIANTS:
            onnx_variants.convert(
                fmt,
                paths["onnx"],
                paths["onnx/io"],
                paths[fmt],
                paths[f"{fmt}/io"],
                recipe,
                PARAMS,
                {},
            )
        else:
            export.export(
                ModelSource(recipe, PARAMS, paths["checkpoint"]),
                fmt,
                paths[fmt],
                paths[f"{fmt}/io"],
                {},
            )
    return paths


@pytest.fixture(scope="session")
def capacity_and_gate_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The finished run test_capacity and test_gate share (tests/served_run.py: its config, and why
    one serves both). Neither changes it: each copies it before running anything in it."""
    from . import served_run

    return served_run.finished(tmp_path_factory.mktemp("capacity_and_gate"))


def processes_named(name: str, under: Path | None = None) -> list[psutil.Process]:
    """The running processes called `name`; with `under`, only those whose command line names a
    path inside that folder (a test's own servers, not other work's on the same machine)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if not (proc.info["name"] == name or any(Path(a).name == name for a in cmdline[:1])):
                continue
            if under is None or any(str(under) in a for a in cmdline):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def snakemake(
    *args: str, cwd: Path, check: bool = True, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run the real snakemake CLI of this venv on the project's Snakefile, in cwd."""
    exe = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    done = subprocess.run(
        [exe, "--snakefile", str(ROOT / "Snakefile"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-5000:]}\n"
            f"{done.stderr[-8000:]}{failed_job_logs(done.stderr, cwd)}"
        )
    return done


# Snakemake's report of a failed job names its logs: "    log: a.log, b.log (check log file(s) ...".
FAILED_LOGS = re.compile(r"^\s+log: (.+) \(check log file\(s\) for error details\)$", re.M)


def failed_job_logs(stderr: str, cwd: Path, lines: int = 40) -> str:
    """The last lines of each failed job's logs, for a failure message: they say why the job
    failed, and they come last so the end of a CI log shows them (a job's first log, the one with
    its traceback, last of all)."""
    parts = []
    for listed in FAILED_LOGS.findall(stderr):
        for name in reversed(listed.split(", ")):
            path = Path(cwd) / name
            text = path.read_text(errors="replace") if path.is_file() else "(no such file)"
            tail = "\n".join(text.splitlines()[-lines:])
            parts.append(f"\n--- the failed job's log {name} (last {lines} lines):\n{tail}")
    return "".join(parts)
