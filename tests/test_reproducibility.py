"""Two runs from scratch with the same config give the same bytes (where the format allows it)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, snakemake

pytestmark = pytest.mark.e2e

CONFIG = {
    "models": {
        "digits": {
            "recipe": str(ROOT / "recipes" / "digits"),
            "params": {"channels": 8, "epochs": 2, "seed": 0},
        }
    },
    "formats": "auto",
    "devices": ["cpu"],
    "triton": {"max_batch_size": 32},
    "accuracy": {"batch_size": 32},
    "perf": {"offline": {"batch_sizes": [1, 16]}},
}
# TorchScript archives hold the exporting process's call stack (*.debug_pkl, with the temporary
# script's path) and a random .data/serialization_id: everything else must be identical.
TORCHSCRIPT_VOLATILE = (".debug_pkl", ".data/serialization_id")


def build(workdir: Path) -> None:
    workdir.mkdir()
    (workdir / "c.yaml").write_text(yaml.safe_dump(CONFIG))
    targets = [
        f"results/repository/digits/{fmt}/cpu"
        for fmt in (
            "torchscript_trace",
            "torchscript_script",
            "onnx",
            "onnx_optimized",
            "onnx_fp16",
            "onnx_int8",
        )
    ]
    snakemake(
        *targets,
        "results/correctness/digits/verdicts.json",
        "--cores",
        "2",
        "--configfile",
        "c.yaml",
        cwd=workdir,
    )


def test_two_runs_from_scratch_give_the_same_bytes(tmp_path: Path) -> None:
    build(tmp_path / "one")
    build(tmp_path / "two")
    files = sorted(
        p.relative_to(tmp_path / "one")
        for p in (tmp_path / "one" / "results").rglob("*")
        if p.is_file()
    )
    assert len(files) > 30
    compared = 0
    for rel in files:
        a, b = tmp_path / "one" / rel, tmp_path / "two" / rel
        if rel.suffix == ".pt" and "torchscript" in str(rel):
            with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
                assert za.namelist() == zb.namelist()
                for name in za.namelist():
                    if not name.endswith(TORCHSCRIPT_VOLATILE):
                        assert za.read(name) == zb.read(name), f"{rel}: {name}"
        else:
            assert a.read_bytes() == b.read_bytes(), f"{rel} differs between two runs"
        compared += 1
    assert compared == len(files)
