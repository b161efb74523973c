"""Planning and report benchmark of issue #23: a workflow of about 1,000 model x format variants.

    make bench-dag      (or: python benchmarks/bench_dag.py [--models 167] [--workdir DIR])

Builds a config of N copies of the digits recipe (formats: auto, one CPU device: 6 formats each on a
machine without TensorRT, 1,002 variants for N = 167) and times, side by side in one run:

1. first phase: `snakemake -n results/report.html` from nothing (every model's training, exports and
   correctness checks planned at once), against a bare Snakefile of touch rules with the same number
   of jobs;
2. measuring phase: the same dry run once every model's verdicts exist (the benchmark writes the files
   of the first phase itself, placeholders with the right names and times, instead of training N
   models), against a bare Snakefile with that phase's job count;
3. the report: results/report.html built from synthetic result rows for every variant (the shapes the
   workflow writes), its size and build time against the budgets below, and, where headless Chromium
   is installed, the time for it to load the page (run its scripts) and dump the DOM.

Each dry run is timed from the command line to its exit, start-up included, on both sides; the bare
side runs the same `snakemake` (same version, same flags). Target: the workflow within 1.2x of bare.
The last line is machine-readable:

    bench-dag: first_jobs=J1 first_ratio=R1 measuring_jobs=J2 measuring_ratio=R2 report_mb=S report_s=T
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
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
from deploysnake.formats import ARTIFACTS, ONNX_VARIANTS, TENSORRT  # noqa: E402
from deploysnake.frameworks import CHECKPOINT_NAMES  # noqa: E402

TARGET_RATIO = 1.2
# The report's budgets for 1,000 variants (see README, "Many models"): the page is one file a user
# mails or attaches to a ticket and opens offline; 25 MB is what common mail systems accept, and what
# a browser parses in a few seconds. The build runs once at the end of a run that took hours.
REPORT_BUDGET_MB = 25.0
REPORT_BUDGET_S = 120.0
LOAD_BUDGET_S = 15.0


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

    Placeholders (a checkpoint and artifacts of no real content; every format's verdict "passed"), all
    with one mtime older than now, so Snakemake takes them as up to date and each model's
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
