"""Two checkouts in different folders, each running the workflow from scratch with the same config,
give the same bytes, and no file names a path of the machine that built it."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploysnake.formats import cpu_has_float16_arithmetic

from .conftest import ROOT

pytestmark = pytest.mark.e2e

CONFIG = {
    "models": {
        "digits": {"recipe": "recipes/digits", "params": {"channels": 8, "epochs": 2, "seed": 0}}
    },
    "formats": "auto",
    "devices": ["cpu"],
    "triton": {"max_batch_size": 32},
    "accuracy": {"batch_size": 32},
    "perf": {"offline": {"batch_sizes": [1, 16]}},
}
# What a clone of the project holds that the workflow reads (as tests/test_rerun.py copies it).
CHECKOUT = ("Snakefile", "config", "envs", "workflow", "src", "recipes", "profiles", "README.md")
FORMATS = (
    "torchscript_trace",
    "torchscript_script",
    "onnx",
    "onnx_optimized",
    *(["onnx_fp16"] if cpu_has_float16_arithmetic() else []),  # formats.CPU_FP16_NOT_AUTO
    "onnx_int8",
)


def checkout(where: Path) -> Path:
    """A copy of this checkout at `where`, as `git clone` would lay it out."""
    where.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in CHECKOUT:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, where / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, where / name)
    return where


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a build still running (SIGTERM: Snakemake ends its own jobs first)."""
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=60)


def build(*projects: Path) -> None:
    """The workflow of each project (its own Snakefile and package) from scratch, side by side:
    checkpoint, every export, correctness, the served repositories and the deploy archive. Side by
    side also shows that two builds on one machine do not leak into each other. One core each:
    the two builds then run two jobs at once, as one build with `--cores 2` would on a 2-core
    machine, and no served request waits behind four jobs on two cores."""
    targets = [f"results/repository/digits/{fmt}/cpu" for fmt in FORMATS]
    exe = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    command = [exe, *targets, "results/deploy/cpu.tar.gz", "--cores", "1", "--configfile", "c.yaml"]
    with contextlib.ExitStack() as stack:
        running = []
        for project in projects:
            (project / "c.yaml").write_text(yaml.safe_dump(CONFIG))
            out = stack.enter_context(open(project / "snakemake.out", "w"))  # never a pipe
            proc = subprocess.Popen(command, cwd=project, stdout=out, stderr=subprocess.STDOUT)
            stack.callback(stop, proc)  # on any way out, the other builds stop too
            running.append((project, proc))
        for project, proc in running:
            code = proc.wait(timeout=900)
            assert code == 0, (project / "snakemake.out").read_text()[-5000:]


def test_two_checkouts_in_different_folders_give_the_same_bytes(tmp_path: Path) -> None:
    one = checkout(tmp_path / "one")
    two = checkout(tmp_path / "a-longer-folder" / "that-holds" / "the-second-checkout")
    build(one, two)
    files = sorted(p.relative_to(one) for p in (one / "results").rglob("*") if p.is_file())
    assert {f"results/export/digits/{fmt}/io.json" for fmt in FORMATS} <= {str(f) for f in files}
    assert Path("results/deploy/cpu.tar.gz") in files and len(files) > 30
    # No file names either checkout, this checkout, the working directory or the Python environment.
    places = {str(p).encode() for p in (one, two, ROOT, Path.cwd(), Path(sys.prefix))}
    timed = 0
    for rel in files:
        a, b = (one / rel).read_bytes(), (two / rel).read_bytes()
        if rel.suffix == ".json" and b'"build_seconds"' in a:
            # the export's wall time (build s in the report) is a measurement: the one field that
            # may differ; everything else in the file is equal
            timed += 1
            doc_a, doc_b = json.loads(a), json.loads(b)
            assert isinstance(doc_a.pop("build_seconds"), float)
            assert isinstance(doc_b.pop("build_seconds"), float)
            assert doc_a == doc_b, f"{rel} differs between the two checkouts"
        elif rel.name.endswith(".coldstart.json"):
            # the accuracy job's cold start (load, first request in ms; memory in MiB) is a
            # measurement: its figures may differ, everything else is equal
            timed += 1
            doc_a, doc_b = (
                {k: v for k, v in json.loads(d).items() if not k.endswith(("_ms", "_mb"))}
                for d in (a, b)
            )
            assert isinstance(json.loads(a)["load_ms"], float), rel
            assert doc_a == doc_b, f"{rel} differs between the two checkouts"
        else:
            assert a == b, f"{rel} differs between the two checkouts"
        named = [place.decode() for place in places if place in a]
        assert not named, f"{rel} names {named}"
    assert timed >= len(FORMATS)  # every export's io.json and verdict carry their time, and so do
    # the accuracy jobs' cold-start figures
    # Also true of what is packed compressed: the archive's members.
    listing = subprocess.run(
        ["tar", "-xzOf", str(one / "results/deploy/cpu.tar.gz")], capture_output=True, check=True
    ).stdout
    assert not [p for p in places if p in listing], "the deploy archive names a build machine path"
