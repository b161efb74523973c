"""A Keras model through the whole DAG: SavedModel and ONNX through tf2onnx, served and measured."""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from deploysnake.configuration import plan_formats, validate
from deploysnake.formats import cpu_has_float16_arithmetic
from deploysnake.repository import read_config

from .conftest import ROOT, snakemake

pytestmark = pytest.mark.e2e

KERAS = {
    "models": {
        "kdigits": {
            "recipe": str(ROOT / "recipes" / "keras_digits"),
            "framework": "keras",
            "dataloader": str(ROOT / "recipes" / "digits" / "dataloader.py"),
            "metrics": str(ROOT / "recipes" / "digits" / "metrics.py"),
            "params": {"channels": 8, "epochs": 3, "layout": "nhwc", "seed": 0},
        }
    },
    "formats": ["savedmodel", "onnx"],
    "devices": ["cpu"],
    "triton": {"max_batch_size": 32},
    "accuracy": {"batch_size": 32},
    "perf": {
        "max_foreign_cpu": 64,  # the export path is tested here, not the machine's quiet
        "measurement_interval_ms": 300,
        "stability_percentage": 50,
        # two offline points (one must be stable), one online: the test reads the path, not speed
        "offline": {"batch_sizes": [1, 16], "concurrency": [1]},
        "online": {"concurrency": [2]},
    },
    "native": {"window_s": 0.2},
}


def test_auto_formats_of_a_keras_model() -> None:
    planned, skipped = plan_formats(validate({**KERAS, "formats": "auto"}))
    assert planned["kdigits"][:5] == [
        "savedmodel",
        "onnx",
        "onnx_optimized",
        *(["onnx_fp16"] if cpu_has_float16_arithmetic() else []),  # formats.CPU_FP16_NOT_AUTO
        "onnx_int8",
    ]
    assert all(s["format"].startswith("tensorrt") or s["format"] == "onnx_fp16" for s in skipped), (
        skipped
    )
    _, skipped = plan_formats(validate({**KERAS, "formats": ["savedmodel", "torchscript_trace"]}))
    assert skipped == [
        {
            "model": "kdigits",
            "format": "torchscript_trace",
            "reason": "not a format of keras models",
        }
    ]


def test_keras_model_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "keras.yaml").write_text(yaml.safe_dump(KERAS))
    snakemake("results/report.html", "--cores", "2", "--configfile", "keras.yaml", cwd=tmp_path)
    results = tmp_path / "results"
    assert (
        results / "export" / "kdigits" / "savedmodel" / "model.savedmodel" / "saved_model.pb"
    ).exists()
    onnx_io = json.loads((results / "export" / "kdigits" / "onnx" / "io.json").read_text())
    assert onnx_io["inputs"] == [
        {
            "name": "image",
            "dtype": "float32",
            "dims": [-1, 8, 8, 1],
            "batch_axis": 0,
            "datatype": "FP32",
        }
    ]
    assert [t["name"] for t in onnx_io["outputs"]] == ["logits"]
    for fmt in ("savedmodel", "onnx"):
        verdict = json.loads((results / "correctness" / "kdigits" / f"{fmt}.json").read_text())
        assert verdict["passed"] and verdict["outputs"]["logits"]["max_abs_err"] < 1e-4, verdict
        with open(results / "accuracy" / "kdigits" / fmt / "cpu.csv") as handle:
            for row in csv.DictReader(handle):
                assert float(row["max_abs_diff_served_vs_exported"]) < 1e-5
        with open(results / "perf_offline" / "kdigits" / fmt / "cpu.csv") as handle:
            measured = list(csv.DictReader(handle))
            assert any(r["status"] == "ok" and float(r["Inferences/Second"]) > 0 for r in measured)
            assert {r["input_shapes"] for r in measured} == {"image:8x8x1"}
    config = read_config(results / "deploy" / "cpu" / "kdigits_savedmodel" / "config.pbtxt")
    assert (config.platform, config.default_model_filename) == (
        "tensorflow_savedmodel",
        "model.savedmodel",
    )
    with tarfile.open(results / "deploy" / "cpu.tar.gz") as tar:
        assert "cpu/kdigits_savedmodel/1/model.savedmodel/saved_model.pb" in tar.getnames()
    assert "kdigits" in (results / "report.html").read_text()
