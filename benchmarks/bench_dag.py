"""Planning and report benchmark of issue #23: a workflow of about 1,000 model x format variants.

    make bench-dag      (or: python benchmarks/bench_dag.py [--models 167] [--workdir DIR])

Builds a config of N copies of the digits recipe (formats: auto, one CPU device: 6 formats each on
a machine without TensorRT, 1,002 variants for N = 167) and times, side by side in one run:

1. first phase: `snakemake -n results/report.html` from nothing (every model's training, exports
   and correctness checks planned at once), against a bare Snakefile of touch rules with the same
   number of jobs;
2. measuring phase: the same dry run once every model's verdicts exist (the benchmark writes the
   first phase's files itself, placeholders with the right names and times, instead of training N
   models), against a bare Snakefile with that phase's job count; its DAG also holds, up to date,
   as many jobs as the workflow's does (the first phase's, which Snakemake checks and does not run);
3. the report: results/report.html built from synthetic result rows for every variant (the shapes
   the workflow writes), its size and build time against the budgets below, and, where headless
   Chromium is installed, the time it takes to load the page (by the page's own Navigation Timing).

Each dry run is timed from the command line to its exit, start-up included, on both sides; the
bare side runs the same `snakemake` with the same flags, once with `shell:` touch rules (the
issue's yardstick) and once with `script:` rules (what Snakemake itself spends per job of a
`script:` rule, as every rule of the workflow is). Target: the workflow within 1.2x of bare
Snakemake. A third yardstick, "same files", is a bare Snakefile written from the workflow's own dry
runs (same_dag, shape_matched): the same jobs, to run and up to date, reading and writing the same
files, each rule's wildcards
constrained as the workflow's are, with no input function, param, resource, conda env or
checkpoint; it says how much of the gap is the files a job declares (Snakemake's work per file) and
how much the workflow's own rules add. A fourth, "data only", is the same with each job's data files
alone (data_only: inputs and outputs under results/, no log, no recipe or package source file): the
least any plan of these jobs declares. Each phase runs --rounds rounds (default 3) of the workflow
followed by its four yardsticks; a ratio is the median of the rounds' ratios (one dry run's CPU
seconds vary here by up to 15 % from run to run, as the machine's speed drifts). A phase's "floor"
line gives the bare same-files and data-only Snakefiles over the bare `script:` touch rules: what
Snakemake alone spends on these jobs' files, which no workflow planning them can go below. The last
line is machine-readable:

    bench-dag: first_jobs=J1 first_ratio=R1 first_same_files_ratio=F1 first_floor_same_files=G1 \\
               first_floor_data_only=D1 measuring_jobs=J2 measuring_ratio=R2 \\
               measuring_same_files_ratio=F2 measuring_floor_same_files=G2 \\
               measuring_floor_data_only=D2 report_mb=S report_cpu_s=T report_load_s=L
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from deploysnake.configuration import plan_formats, validate  # noqa: E402
from deploysnake.contracts import PERF_ANALYZER_COLUMNS  # noqa: E402
from deploysnake.formats import ARTIFACTS, ONNX_VARIANTS, TENSORRT  # noqa: E402
from deploysnake.frameworks import CHECKPOINT_NAMES  # noqa: E402
from deploysnake.report.load import ACCURACY_NUMBERS  # noqa: E402

TARGET_RATIO = 1.2
# The report's budgets for 1,000 variants (README, "Many models"). Size: the page is one file that
# users attach to a ticket or a mail and open offline; 25 MB is the common mail attachment limit.
# Load: a reader waits for the page at most about as long as for a slow web page; charts are drawn
# only when their model's section opens, so loading is parsing. Build (CPU s): the report job runs
# once, after the thousands of measuring jobs of such a run (hours); 3 minutes is under 1 % of it.
REPORT_BUDGET_MB = 25.0
REPORT_BUDGET_S = 180.0
LOAD_BUDGET_S = 15.0
LOAD_ROUNDS = 3  # loads of one page here differ by up to 40 %: the median of three


def many_models(count: int, recipe: Path = ROOT / "recipes" / "digits") -> dict[str, Any]:
    """A config of `count` copies of the digits recipe, formats auto, one CPU device.

    The first copy is named digits, so that the default config's digits model (merged into any
    --configfile by Snakemake) is this one and not one more."""
    names = ["digits", *(f"digits_{i:03d}" for i in range(1, count))]
    return {
        "models": {
            name: {"recipe": str(recipe), "params": {"channels": 8, "epochs": 1, "seed": i}}
            for i, name in enumerate(names)
        },
        "formats": "auto",
        "devices": ["cpu"],
    }


def prepare_first_phase(workdir: Path, config: dict[str, Any], models: list[str]) -> int:
    """Write, for each of `models`, what its first phase leaves: checkpoint, exports, verdicts.

    Placeholders (a checkpoint and artifacts of no real content; every format's verdict "passed"),
    all with one mtime older than now, so Snakemake takes them as up to date and each model's
    python_collect_verdicts checkpoint as done. Torch models only. Returns the number of files."""
    full = validate(config)
    formats, _ = plan_formats(full)
    stamp = time.time() - 60
    written = []
    for model in models:
        framework = full["models"][model]["framework"]
        folder = workdir / "results"
        exports = list(formats[model])
        if any(f in ONNX_VARIANTS or f in TENSORRT for f in exports) and "onnx" not in exports:
            exports.append("onnx")
        made = [folder / "checkpoint" / model / CHECKPOINT_NAMES[framework]]
        for fmt in exports:
            made += [
                folder / "export" / model / fmt / ARTIFACTS[fmt],
                folder / "export" / model / fmt / "io.json",
            ]
        for path in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}\n")
        written += made
        for fmt in formats[model]:
            verdict = folder / "correctness" / model / f"{fmt}.json"
            verdict.parent.mkdir(parents=True, exist_ok=True)
            verdict.write_text(json.dumps({"model": model, "format": fmt, "passed": True}))
            written.append(verdict)
        summary = folder / "correctness" / model / "verdicts.json"
        summary.write_text(json.dumps({"passed": formats[model], "failed": {}}))
        written.append(summary)
    for path in written:
        os.utime(path, (stamp, stamp))
    return len(written)


# ---------------------------------------------------------------- synthetic results for the report

PROVENANCE = {
    "config_hash": "3f2a9c81d04e6b57",
    "code_version": "0d75cea4c1b7f2e3a9d8c6b5a4f3e2d1c0b9a8f7",
    "packages": "torch=2.13.0;onnxruntime=1.31.1;tritonclient=2.73.0;nvidia-pytriton=0.7.0",
    "hardware": "AMD EPYC 7B13 (2 cores, 23.5 GB)",
}


def _write(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def synthetic_results(
    root: Path, models: list[str], formats: list[str], device: str = "cpu"
) -> dict[str, Any]:
    """build_report's keyword arguments for results of every model x format on one device, written
    under root in the workflow's file shapes: the default config's sweeps (offline batches 1, 16,
    64, 256 at concurrency 1 and 2; online concurrency 1, 2, 4, 8; native at the offline batches),
    two accuracy metrics, provenance columns. Numbers are made up but consistent (latency = batch x
    concurrency / throughput); every format passes correctness."""
    files: dict[str, list[Path]] = {
        k: [] for k in ("correctness", "accuracy", "offline", "online", "native")
    }
    header = ["model", "format", "device", "mode", "batch", "concurrency", "status"]
    header += [*PERF_ANALYZER_COLUMNS, *PROVENANCE]
    prov = list(PROVENANCE.values())
    for m, model in enumerate(models):
        for f, fmt in enumerate(formats):
            speed = 1000.0 * (1 + 0.1 * f) * (1 + 0.01 * m)  # infer/s at batch 1
            where = [model, fmt, device]
            verdict = root / "correctness" / model / f"{fmt}.json"
            verdict.parent.mkdir(parents=True, exist_ok=True)
            verdict.write_text(
                json.dumps(
                    {
                        "model": model,
                        "format": fmt,
                        "passed": True,
                        "samples": 256,
                        "reason": "",
                        "outputs": {
                            "logits": {"atol": 1e-4, "rtol": 1e-3, "passed": True,
                                       "max_abs_err": 6.6e-6, "max_rel_err": 2.5e-4},
                        },
                    }
                )
            )  # fmt: skip
            files["correctness"].append(verdict)

            def perf(
                mode: str, batch: int, conc: int, tput: float, where: list[str] = where
            ) -> list[Any]:
                lat = 1e6 * batch * conc / tput
                parts = [0.05, 0.15, 0.1, 0.05, 0.5, 0.05, 0.1]
                return [*where, mode, batch, conc, "ok", conc, round(tput, 1)] + [
                    *(round(lat * p) for p in parts),
                    *(round(lat * k) for k in (1, 1.2, 1.3, 1.5)),
                    *prov,
                ]

            offline = [
                perf("offline", b, c, speed * b**0.8 * (1.1 if c == 2 else 1))
                for b in (1, 16, 64, 256)
                for c in (1, 2)
            ]
            online = [perf("online", 1, c, speed * c**0.7) for c in (1, 2, 4, 8)]
            native = [
                [*where, b, speed * b**0.8 * 1.2, 800.0 * b**0.2, 1200.0 * b**0.2, 500, *prov]
                for b in (1, 16, 64, 256)
            ]
            accuracy = [
                [*where, "accuracy", 0.9833, 0.9833, 0.9833, 0.0, 360, 1.2e-6, *prov],
                [*where, "cross_entropy", 0.0612, 0.0612, 0.0613, 1e-4, 360, 1.2e-6, *prov],
            ]
            name = f"{model}/{fmt}/{device}.csv"
            files["offline"].append(_write(root / "perf_offline" / name, header, offline))
            files["online"].append(_write(root / "perf_online" / name, header, online))
            files["native"].append(
                _write(
                    root / "native" / name,
                    [
                        "model",
                        "format",
                        "device",
                        "batch",
                        "throughput_infer_per_s",
                        "p50_latency_us",
                        "p99_latency_us",
                        "iterations",
                        *PROVENANCE,
                    ],
                    native,
                )  # fmt: skip
            )
            files["accuracy"].append(
                _write(
                    root / "accuracy" / name,
                    ["model", "format", "device", "metric", *ACCURACY_NUMBERS, *PROVENANCE],
                    accuracy,
                )  # fmt: skip
            )
    environment = root / "environment" / f"{device}.json"
    environment.parent.mkdir(parents=True, exist_ok=True)
    environment.write_text(
        json.dumps(
            {
                "device": device,
                "hardware": {"cpu": "AMD EPYC 7B13", "cores": 2, "memory_gb": 23.5, "gpus": []},
                "packages": {"torch": "2.13.0", "onnxruntime": "1.31.1"},
                "python": "3.11.7",
                "deploysnake": "0.1.0",
                "git_commit": PROVENANCE["code_version"],
            }
        )
    )
    config = {"models": {m: {"recipe": "recipes/digits"} for m in models}, "formats": formats}
    return {**files, "config": config, "environment": [environment]}


# ---------------------------------------------------------------- the same DAG, bare

JOB_HEAD = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
JOB_FIELDS = ("input", "output", "log", "wildcards")


def planned_jobs(dry_run: str) -> list[dict[str, Any]]:
    """The jobs a dry run printed: [{"rule", "input", "output", "log": [paths], "wildcards":
    {name: value}}], from Snakemake's own listing of each job (one "field: a, b" line a field)."""
    jobs: list[dict[str, Any]] = []
    for line in dry_run.splitlines():
        head = JOB_HEAD.match(line)
        if head:
            jobs.append(
                {"rule": head.group(1), "input": [], "output": [], "log": [], "wildcards": {}}
            )
            continue
        field, _, value = line.strip().partition(": ")
        if not jobs or field not in JOB_FIELDS or not line.startswith("    "):
            continue
        items = value.split(", ")
        if field == "wildcards":
            jobs[-1]["wildcards"] = dict(item.split("=", 1) for item in items)
        else:  # <TBD>: a file that waits on a checkpoint, not yet named
            jobs[-1][field] = [item for item in items if item != "<TBD>"]
    return jobs


def _pattern(path: str, wildcards: dict[str, str]) -> str:
    """path with each of the job's wildcard values put back as {name}: a folder named by the value,
    or a file named by it before its extension (results/correctness/{model}/{format}.json)."""
    if os.path.isabs(path):
        return path
    by_value = {v: k for k, v in wildcards.items()}
    parts = []
    for part in path.split("/"):
        stem, dot, ext = part.partition(".")
        if part in by_value:
            part = "{" + by_value[part] + "}"
        elif stem in by_value and dot:
            part = "{" + by_value[stem] + "}." + ext
        parts.append(part)
    return "/".join(parts)


def data_only(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`jobs` (planned_jobs' shape) with only their data files: the inputs and outputs under
    results/, no log and no source-file input (the recipe's and the package's files, which make a
    code change re-run what it touches). The least any plan of these jobs declares."""
    return [
        job
        | {
            "input": [p for p in job["input"] if p.startswith("results/")],
            "log": [],
        }
        for job in jobs
    ]


def shape_matched(jobs: list[dict[str, Any]]) -> str:
    """A Snakefile of bare rules planning the same jobs with the same files as `jobs` (planned_jobs):
    one rule per workflow rule, its inputs, outputs and logs the same patterns, each wildcard
    constrained to the values it takes (as the workflow's wildcard_constraints do), no input function,
    param, resource or checkpoint; each job is a `script:` (touch.py beside the Snakefile), as the
    workflow's are. A rule whose jobs differ in shape (correctness reads model.pt or model.onnx by
    format) becomes one rule per shape, its wildcards constrained to that shape's jobs. Its dry run
    against the workflow's gives what the workflow spends beyond the files its jobs read and write."""
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(job)
    rules: list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], dict[str, str]]] = []
    for name, group in by_rule.items():
        shapes: dict[tuple[tuple[str, ...], ...], list[dict[str, Any]]] = {}
        for job in group:
            shape = tuple(
                tuple(_pattern(p, job["wildcards"]) for p in job[f])
                for f in ("input", "output", "log")
            )
            shapes.setdefault(shape, []).append(job)
        for k, (shape, alike) in enumerate(shapes.items()):
            values: dict[str, set[str]] = {}
            for job in alike:
                for key, value in job["wildcards"].items():
                    values.setdefault(key, set()).add(value)
            constraints = {
                w: "|".join(re.escape(v) for v in sorted(vs)) for w, vs in values.items()
            }
            named = name if len(shapes) == 1 else f"{name}_{k}"
            rules.append((named, shape[0], shape[1], shape[2], constraints))
    body: list[str] = []
    for named, inputs, outputs, logs, wanted in rules:
        body.append(f"rule {named}:")
        for field, paths in (("input", inputs), ("output", outputs), ("log", logs)):
            if paths:
                body.append(f"    {field}:")
                body += [f"        {p!r}," for p in paths]
        if wanted:
            body.append("    wildcard_constraints:")
            body += [f"        {k}={v!r}," for k, v in wanted.items()]
        body += ["    script:", '        "touch.py"', ""]
    return "\n".join(body)


# ---------------------------------------------------------------- timing


def snakemake(workdir: Path, *args: str) -> tuple[float, float, int]:
    """(wall s, CPU s, planned jobs) of one `snakemake ARGS --dry-run --cores 2` in workdir.

    CPU seconds (user + system, of snakemake and its children) are the figure to compare on a
    shared machine: other work there stretches the wall time, far less the CPU time."""
    exe = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    log = workdir / "dry-run.out"
    with open(log, "w") as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            [exe, *args, "--dry-run", "--cores", "2"],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
    output = log.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(args)} failed in {workdir}:\n{output[-4000:]}")
    totals = re.findall(r"^total\s+(\d+)$", output, re.M)
    return wall, usage.ru_utime + usage.ru_stime, int(totals[-1]) if totals else 0


def touch_script(path: Path) -> None:
    """The bare rules' `script:`, touching every output, dated a day back: Snakemake re-runs a job
    whose outputs are older than its script, and the yardsticks' up-to-date jobs must stay so."""
    path.write_text("for path in snakemake.output:\n    open(path, 'w').close()\n")
    day_ago = time.time() - 86400
    os.utime(path, (day_ago, day_ago))


def bare(workdir: Path, jobs: int, action: str = "shell", upstream: int = 0) -> tuple[float, float]:
    """(wall s, CPU s) of the dry run of a Snakefile of touch rules with `jobs` jobs (jobs - 1 files
    and the target rule), each job a `shell:` touch, or with action "script" a `script:` that
    touches (Snakemake reads a script rule's file once per job while it plans, a cost of `script:`
    itself that the workflow's rules pay too). With `upstream`, that many of the jobs each read the
    output of one more touch job whose file is already there and up to date: jobs in the DAG that
    Snakemake checks and does not run, as the measuring phase's DAG holds the first phase's."""
    workdir.mkdir(parents=True, exist_ok=True)
    touch_script(workdir / "touch.py")
    upstream = min(upstream, jobs - 1)
    stamp = time.time() - 60
    (workdir / "up").mkdir(exist_ok=True)
    for i in range(upstream):
        done = workdir / "up" / f"{i}.txt"
        done.touch()
        os.utime(done, (stamp, stamp))
    run = 'shell:\n        "touch {output}"' if action == "shell" else 'script:\n        "touch.py"'
    (workdir / "Snakefile").write_text(
        f"""rule all:
    input:
        expand("out/u{{i}}.txt", i=range({upstream})),
        expand("out/{{i}}.txt", i=range({jobs - 1 - upstream})),


rule touch_one:
    output:
        "out/{{i}}.txt",
    wildcard_constraints:
        i=r"\\d+",
    {run}


rule touch_after:
    input:
        "up/{{i}}.txt",
    output:
        "out/u{{i}}.txt",
    {run}


rule touch_upstream:
    output:
        "up/{{i}}.txt",
    {run}
"""
    )
    wall, cpu, planned = snakemake(workdir, "all")
    assert planned == jobs, (planned, jobs)
    return wall, cpu


def same_dag(to_run: list[dict[str, Any]], earlier: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The jobs of the workflow's DAG (planned_jobs' shape): `to_run` (a dry run's jobs), and, of
    `earlier` (the first phase's dry run's jobs, before its files existed), those whose outputs are
    now there and up to date, which Snakemake checks but does not run (their outputs are not among
    the jobs to run)."""
    running = {path for job in to_run for path in job["output"]}
    return to_run + [job for job in earlier if not running.intersection(job["output"])]


def same_files(
    run: Path, workdir: Path, dag: list[dict[str, Any]], jobs: int
) -> tuple[float, float]:
    """(wall s, CPU s) of the dry run, in the workflow's own working directory `run` (so the files
    already there count as they do for the workflow), of shape_matched(dag), dag the workflow's
    (same_dag) or data_only of it; `jobs` of them to run."""
    workdir.mkdir(parents=True, exist_ok=True)
    touch_script(workdir / "touch.py")
    (workdir / "Snakefile").write_text(shape_matched(dag))
    wall, cpu, planned = snakemake(
        run, "results/report.html", "--snakefile", str(workdir / "Snakefile")
    )
    assert planned == jobs, (planned, jobs)
    return wall, cpu


def workflow(workdir: Path) -> tuple[float, float, int]:
    return snakemake(
        workdir, "results/report.html", "--snakefile", str(ROOT / "Snakefile"),
        "--configfile", "many.yaml",
    )  # fmt: skip


def report(workdir: Path, models: list[str], formats: list[str]) -> dict[str, Any]:
    """The report of synthetic results for every variant: size (MB), build and load times (s), the
    load times of every round (load_all_s, a list)."""
    from deploysnake.report import build_report

    inputs = synthetic_results(workdir / "synthetic", models, formats)
    out = workdir / "report.html"
    started, cpu = time.monotonic(), time.process_time()
    build_report(**inputs, output=out)
    figures: dict[str, Any] = {
        "build_s": time.monotonic() - started,
        "build_cpu_s": time.process_time() - cpu,
        "mb": out.stat().st_size / 1e6,
    }
    sys.path.insert(0, str(ROOT / "tests"))
    from browser import chromium_available, render_in_chromium

    if chromium_available():
        loads = [load_time(out, render_in_chromium) for _ in range(LOAD_ROUNDS)]
        figures["load_s"] = statistics.median(loads)
        figures["load_all_s"] = loads
        # The whole headless run as the browser tests use it: start-up, load, and the dump of the
        # page's DOM (tens of MB serialised and piped), which is not part of what a reader waits for.
        started = time.monotonic()
        render_in_chromium(out, timeout_s=900)
        figures["dump_wall_s"] = time.monotonic() - started
    return figures


# Appended to a copy of the page: at the load event, the page's own navigation timing (ms from the
# start of navigation) replaces the body, so that the DOM dump that reads it out is a few bytes.
LOAD_PROBE = """<script>window.addEventListener('load', function () {
  var n = performance.getEntriesByType('navigation')[0];
  document.body.innerHTML = '<p id="load-probe">' + n.domContentLoadedEventEnd + ' ' + n.loadEventStart
    + ' ' + typeof window.vegaEmbed + '</p>';
});</script>"""


def load_time(page: Path, render: Any) -> float:
    """Seconds from navigation start to the load event of `page`, by the page's own Navigation
    Timing in headless Chromium (`render`: tests/browser.py's render_in_chromium): its charts'
    specs parsed (the inert JSON tokenized), the open sections' charts drawn, every script run.
    Raises RuntimeError if no timing came back or the page's Vega bundle did not run (a broken page
    is not timed)."""
    probe = page.with_name(page.stem + ".probe.html")
    html = page.read_text(encoding="utf-8")
    # The last </body>: the Vega bundle's own JavaScript holds the string "</body>" too.
    head, _, tail = html.rpartition("</body>")
    probe.write_text(head + LOAD_PROBE + "</body>" + tail, encoding="utf-8")
    dom = render(probe, timeout_s=900)
    probe.unlink()
    found = re.search(r'id="load-probe">([\d.]+) ([\d.]+) (\w+)<', dom)
    if not found:
        raise RuntimeError(f"{page}: no load timing in the DOM dump (did the load event fire?)")
    if found.group(3) != "function":
        raise RuntimeError(f"{page}: the Vega bundle did not run (vegaEmbed is {found.group(3)})")
    return float(found.group(2)) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=167, help="copies of the digits recipe")
    parser.add_argument("--workdir", type=Path, help="kept when given (default: a temporary one)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="dry runs of each side per phase (median ratio)"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="only the report's figures (no dry runs)"
    )
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-dag-"))
    run = workdir / "workflow"
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    config = many_models(args.models)
    (run / "many.yaml").write_text(yaml.safe_dump(config))
    formats, _ = plan_formats(validate(config))
    variants = sum(len(f) for f in formats.values())
    print(f"bench-dag: {args.models} models, {variants} model x format variants, in {workdir}")
    print(
        "dry runs, seconds: wall (CPU); ratios of CPU seconds, the workflow's over bare Snakemake's"
    )
    print(
        f"{'phase':<16} {'jobs':>6} {'workflow':>15} {'bare shell:':>15} {'ratio':>6}"
        f" {'bare script:':>15} {'ratio':>6} {'same files:':>15} {'ratio':>6}"
        f" {'data only:':>15} {'ratio':>6}"
    )
    figures: dict[str, tuple[int, float, float]] = {}
    floors: dict[str, tuple[float, float]] = {}  # bare rules over bare script touch rules
    first_jobs: list[dict[str, Any]] = []  # up to date in the measuring phase's DAG
    for phase in () if args.report_only else ("first", "measuring"):
        if phase == "measuring":
            prepare_first_phase(run, config, sorted(config["models"]))
        rounds: list[list[tuple[float, float]]] = []  # (wall s, CPU s): workflow, yardsticks
        for _ in range(args.rounds):
            # One round: the workflow, then each yardstick right after it, so that a slow spell of
            # the machine (CPU seconds of one dry run here vary by up to 15 % from run to run)
            # weighs on one round's ratios, not on the median of the rounds.
            wall, cpu, jobs = workflow(run)
            to_run = planned_jobs((run / "dry-run.out").read_text())
            dag = same_dag(to_run, first_jobs)
            upstream = len(dag) - len(to_run)
            shell = bare(workdir / f"bare_shell_{phase}", jobs, upstream=upstream)
            script = bare(workdir / f"bare_script_{phase}", jobs, "script", upstream)
            same = same_files(run, workdir / f"same_files_{phase}", dag, jobs)
            data = same_files(run, workdir / f"data_only_{phase}", data_only(dag), jobs)
            rounds.append([(wall, cpu), shell, script, same, data])
        if phase == "first":
            first_jobs = to_run
        ratios = [[cpu / side[k][1] for (_, cpu), *side in rounds] for k in range(4)]
        medians = [statistics.median(r) for r in ratios]
        figures[phase] = (jobs, medians[0], medians[2])
        # What bare Snakemake itself spends on these jobs' files, over touch rules: the floor under
        # any workflow planning them (same files), and under any that declares only its data.
        floors[phase] = (
            statistics.median(r[3][1] / r[2][1] for r in rounds),
            statistics.median(r[4][1] / r[2][1] for r in rounds),
        )
        for n, ((wall, cpu), *side) in enumerate(rounds, 1):
            print(
                f"{phase + (f' {n}' if args.rounds > 1 else ''):<16} {jobs:>6}"
                f" {wall:>7.1f} ({cpu:>5.1f})"
                + "".join(f" {w:>7.1f} ({c:>5.1f}) {cpu / c:>6.2f}" for w, c in side)
            )
        if args.rounds > 1:
            print(
                f"{phase + ' median':<16} {jobs:>6} {'':>15}"
                + "".join(f" {'':>15} {m:>6.2f}" for m in medians)
                + "   (ratio range: "
                + ", ".join(f"{min(r):.2f}-{max(r):.2f}" for r in ratios)
                + ")"
            )
        print(
            f"{phase + ' floor':<16} {jobs:>6}   bare Snakemake over bare script touch rules (median):"
            f" same files {floors[phase][0]:.2f}, data only {floors[phase][1]:.2f}"
        )
    names = sorted(config["models"])
    page = report(workdir, names, formats[names[0]])
    print(
        f"report: {variants} variants, {page['mb']:.1f} MB (budget {REPORT_BUDGET_MB:g}), built in "
        f"{page['build_s']:.1f} s ({page['build_cpu_s']:.1f} s CPU; budget {REPORT_BUDGET_S:g})"
        + (
            f", loaded by headless Chromium in {page['load_s']:.1f} s (median of "
            + ", ".join(f"{t:.1f}" for t in page["load_all_s"])
            + f"; navigation start to load event; budget {LOAD_BUDGET_S:g}); the whole headless run"
            f" with the dump of its DOM as the browser tests take it: {page['dump_wall_s']:.1f} s"
            if "load_s" in page
            else ""
        )
    )
    within = all(r <= TARGET_RATIO for _, r, _ in figures.values())
    budgets = page["mb"] <= REPORT_BUDGET_MB and page["build_cpu_s"] <= REPORT_BUDGET_S
    # Load is judged by the page's own clock (Navigation Timing), not by rusage: the rusage of the
    # children Python reaped misses most of Chromium's CPU (a 21 s run read 4.7 s there), and not by
    # the headless run's wall time, which also holds start-up and the dump of the whole DOM.
    budgets = budgets and page.get("load_s", 0) <= LOAD_BUDGET_S
    planning = (
        ""
        if args.report_only
        else f"planning within {TARGET_RATIO}x of bare Snakemake: {'yes' if within else 'NO'}; "
    )
    print(f"{planning}report within budget: {'yes' if budgets else 'NO'}")
    line = "bench-dag: " + "".join(
        f"{phase}_jobs={jobs} {phase}_ratio={ratio:.2f} {phase}_same_files_ratio={same:.2f} "
        f"{phase}_floor_same_files={floors[phase][0]:.2f} "
        f"{phase}_floor_data_only={floors[phase][1]:.2f} "
        for phase, (jobs, ratio, same) in figures.items()
    )
    line += f"report_mb={page['mb']:.1f} report_cpu_s={page['build_cpu_s']:.1f}"
    print(line + (f" report_load_s={page['load_s']:.1f}" if "load_s" in page else ""))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
