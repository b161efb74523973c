"""Exported models as the source (models.<name>.onnx, torchscript, savedmodel, triton_model), through
the real workflow: one run deploys five models, one per source kind and case:

- sklearn_digits: the README's worked example, a scikit-learn MLP converted with skl2onnx by
  examples/sklearn_digits/make_model.py, with its dataloader and metrics (onnx:);
- digits_dir: the digits recipe's ONNX export as a Triton model directory (triton_model:), with the
  digits dataloader and metrics;
- bag: an ONNX embedding bag of int64 ids (table of 1000 rows) with no dataloader and no metrics:
  generated data within inputs.item_ids.low/high, no task metric;
- scripted: a TorchScript file (torchscript:), its input dtype and dims from the config;
- saved: a TensorFlow SavedModel (savedmodel:), converted to ONNX with tf2onnx.

Besides: an ONNX file whose batch axis cannot be told is refused with the tensor's name and the key
to set, and a config that names only the user's model plans no job of the default's digits.
"""

from __future__ import annotations

import copy
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from deploysnake import checkpoint, export, repository
from deploysnake.configuration import plan_formats, validate
from deploysnake.formats import cpu_has_float16_arithmetic
from deploysnake.frameworks import ModelSource
from deploysnake.plugins import load_recipe
from deploysnake.runtime import ArtifactRuntime
from deploysnake.sources import load_settings

from .conftest import MEASURED, ROOT, snakemake

pytestmark = pytest.mark.e2e

DIGITS = ROOT / "recipes" / "digits"
TABLE_ROWS = 1000  # the bag model's embedding table: valid ids are 0..999
TINY = {
    "formats": ["onnx"],  # with each source's own format (torchscript, savedmodel), always served
    "devices": ["cpu"],
    "correctness": {"batches": 1},
    "accuracy": {"batch_size": 32},
    "triton": {"max_batch_size": 32, "readiness_timeout_s": 60},
    "perf": {
        "measurement_interval_ms": 300,
        "stability_percentage": 50,
        "max_trials": 4,
        "input_samples": 32,
        "offline": {"batch_sizes": [16]},
        "online": {"concurrency": [2]},
    },
    "native": {"window_s": 0.1},
}


def bag_onnx(path: Path, first_axis: str = "batch", second_axis: int | str = 5) -> None:
    """item_ids (int64 [batch, 5]) -> mean of their rows of a 1000 x 4 table ("embedding", float32
    [batch, 4]), and the ids as float ("ids_seen", so the test sees what reached the model). ONNX
    Runtime's Gather fails on an id outside the table."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(0).standard_normal((TABLE_ROWS, 4)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "item_ids"], ["rows"], axis=0),
            helper.make_node("ReduceMean", ["rows", "axes"], ["embedding"], keepdims=0),
            helper.make_node("Cast", ["item_ids"], ["ids_seen"], to=TensorProto.FLOAT),
        ],
        "bag",
        [helper.make_tensor_value_info("item_ids", TensorProto.INT64, [first_axis, second_axis])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [first_axis, 4]),
            helper.make_tensor_value_info("ids_seen", TensorProto.FLOAT, [first_axis, second_axis]),
        ],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        ],
    )
    # IR version 10: what onnxruntime 1.31 reads (onnx 1.23 writes 14 by default).
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def scripted_torchscript(path: Path) -> None:
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    torch.jit.save(torch.jit.trace(module.eval(), torch.zeros(2, 6)), str(path))


def saved_model(path: Path) -> None:
    """A Keras-free SavedModel (tf.Module): features float32 [batch, 5] -> scores [batch, 2]."""
    code = f"""
import tensorflow as tf
tf.random.set_seed(0)
class Scorer(tf.Module):
    def __init__(self):
        self.w = tf.Variable(tf.random.normal([5, 2], seed=1))
    @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.float32, name="features")])
    def serve(self, features):
        return {{"scores": tf.nn.softmax(tf.matmul(features, self.w))}}
m = Scorer()
tf.saved_model.save(m, {str(path)!r}, signatures={{"serving_default": m.serve}})
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)


def digits_model_directory(folder: Path) -> Path:
    """The digits recipe's ONNX export (what the default run exports, with tiny training) written as
    a native Triton model directory, as results/deploy/ holds it."""
    recipe = load_recipe(DIGITS)
    params = {"channels": 8, "epochs": 2, "seed": 0}
    work = folder / "work"
    work.mkdir(parents=True)
    checkpoint.make_checkpoint(recipe, params, None, work / "model.pt")
    export.export(
        ModelSource(recipe, params, work / "model.pt"),
        "onnx",
        work / "model.onnx",
        work / "io.json",
        {},
    )
    triton = {"max_batch_size": 32, "dynamic_batching": {"enabled": True}, "instances": {"cpu": 1}}
    return repository.write_repository(
        "digits", work / "model.onnx", work / "io.json", triton, "cpu", "native", folder / "repo"
    )


@pytest.fixture(scope="module")
def given(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The exported files of every source kind, made the way their users make them."""
    out = tmp_path_factory.mktemp("given")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "sklearn_digits" / "make_model.py"),
            str(out / "skl"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    bag_onnx(out / "bag.onnx")
    scripted_torchscript(out / "scripted.pt")
    saved_model(out / "saved")
    return {
        "skl": out / "skl",
        "digits_dir": digits_model_directory(out / "digits"),
        "bag": out / "bag.onnx",
        "scripted": out / "scripted.pt",
        "saved": out / "saved",
    }


def sources_config(given: dict[str, Path]) -> dict:
    skl = given["skl"]
    return {
        **copy.deepcopy(TINY),
        "models": {
            "sklearn_digits": {
                "onnx": str(skl / "model.onnx"),
                "dataloader": str(skl / "dataloader.py"),
                "metrics": str(skl / "metrics.py"),
            },
            "digits_dir": {
                "triton_model": str(given["digits_dir"]),
                "dataloader": str(DIGITS / "dataloader.py"),
                "metrics": str(DIGITS / "metrics.py"),
            },
            "bag": {
                "onnx": str(given["bag"]),
                "inputs": {"item_ids": {"low": 0, "high": TABLE_ROWS - 1}},
            },
            "scripted": {
                "torchscript": str(given["scripted"]),
                "inputs": {"input": {"dtype": "float32", "dims": [6], "low": -1, "high": 1}},
                "outputs": ["scores"],
            },
            "saved": {"savedmodel": str(given["saved"])},
        },
    }


@pytest.fixture(scope="module")
def workdir(given: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("sources")
    (workdir / "sources.yaml").write_text(yaml.safe_dump(sources_config(given)))
    snakemake(
        "results/report.html",
        "--cores",
        "2",
        "--configfile",
        "sources.yaml",
        cwd=workdir,
        timeout=1800,
    )
    return workdir


SERVED = {
    "sklearn_digits": ["onnx"],
    "digits_dir": ["onnx"],
    "bag": ["onnx"],
    "scripted": ["torchscript", "onnx"],
    "saved": ["savedmodel", "onnx"],
}


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_each_source_kind_plans_its_own_format_and_onnx(given: dict[str, Path]) -> None:
    planned, skipped = plan_formats(validate(sources_config(given)))
    assert planned == SERVED
    config = validate({**sources_config(given), "formats": "auto"})
    assert config["models"]["digits_dir"]["framework"] == "onnx"  # its config.pbtxt's platform
    planned, _ = plan_formats(config)
    fp16 = ["onnx_fp16"] if cpu_has_float16_arithmetic() else []  # formats.CPU_FP16_NOT_AUTO
    assert planned["bag"][: 3 + len(fp16)] == ["onnx", "onnx_optimized", *fp16, "onnx_int8"]
    assert planned["scripted"][:2] == ["torchscript", "onnx"]


def test_served_outputs_equal_the_given_files(workdir: Path, given: dict[str, Path]) -> None:
    results = workdir / "results"
    for model, formats in SERVED.items():
        stable = []
        verdicts = json.loads((results / "correctness" / model / "verdicts.json").read_text())
        assert verdicts["passed"] == formats, (model, verdicts)
        for fmt in formats:
            dump = np.load(results / "accuracy" / model / fmt / "cpu.npz")
            names = sorted({k.split("/", 1)[1] for k in dump.files if "/" in k})
            assert names, model
            for name in names:
                # "source" is the given file run in-process; "served" came back from tritonserver.
                np.testing.assert_allclose(
                    dump[f"served/{name}"], dump[f"source/{name}"], rtol=1e-4, atol=1e-4
                )
            for kind in ("perf_offline", "perf_online"):
                points = rows(results / kind / model / fmt / "cpu.csv")
                assert points and all(p["status"] in MEASURED for p in points)
                stable += [p for p in points if p["status"] in ("ok", "disturbed")]
            assert rows(results / "native" / model / fmt / "cpu.csv")
        # One point per sweep: on a loaded machine a point may be unstable (no numbers) or disturbed
        # (foreign load; numbers kept): a model still has one point measured through the server.
        assert stable and all(float(p["Inferences/Second"]) > 0 for p in stable), model
    # The reference really is the given file: the served ONNX of the skl2onnx model gives its outputs.
    skl = given["skl"]
    batch = next(
        load_settings(
            {"onnx": str(skl / "model.onnx"), "dataloader": str(skl / "dataloader.py")}
        ).dataloader.batches("validation", 32, {})
    )
    direct = ArtifactRuntime(skl / "model.onnx", "onnx", ["pixels"], ["probabilities"])(
        batch["inputs"]
    )
    dump = np.load(results / "accuracy" / "sklearn_digits" / "onnx" / "cpu.npz")
    np.testing.assert_allclose(
        dump["served/probabilities"][:32], direct["probabilities"], rtol=1e-4, atol=1e-5
    )


def test_task_metrics_where_given_and_none_otherwise(workdir: Path) -> None:
    results = workdir / "results"
    (skl,) = rows(results / "accuracy" / "sklearn_digits" / "onnx" / "cpu.csv")
    assert skl["metric"] == "accuracy" and float(skl["served"]) > 0.9, skl
    assert float(skl["served"]) == float(skl["source"])
    digits = {
        r["metric"]: r for r in rows(results / "accuracy" / "digits_dir" / "onnx" / "cpu.csv")
    }
    assert float(digits["accuracy"]["served"]) > 0.5, digits
    assert float(digits["accuracy"]["served"]) == float(digits["accuracy"]["source"])
    for model, fmt in (("bag", "onnx"), ("scripted", "torchscript"), ("saved", "onnx")):
        (row,) = rows(results / "accuracy" / model / fmt / "cpu.csv")
        assert row["metric"] == "no task metric given: max abs diff vs source", row
        assert float(row["served"]) < 1e-4, row
    report = (results / "report.html").read_text()
    assert "no task metric given" in report
    for model in SERVED:
        assert f"Model: {model}" in report


def test_generated_ids_stay_inside_the_table(workdir: Path) -> None:
    """No out-of-range id reaches the server: neither in perf_analyzer's input data nor in the
    validation data the accuracy job sent (which the model echoes as ids_seen)."""
    results = workdir / "results"
    data = json.loads((results / "perf_data" / "bag" / "input.json").read_text())["data"]
    ids = np.array([entry["item_ids"]["content"] for entry in data])
    assert len(data) == 32 and ids.min() >= 0 and ids.max() <= TABLE_ROWS - 1
    assert ids.max() > 900 and ids.min() < 100  # the whole range is used, not a corner of it
    seen = np.load(results / "accuracy" / "bag" / "onnx" / "cpu.npz")["served/ids_seen"]
    assert seen.shape[1] == 5 and seen.min() >= 0 and seen.max() <= TABLE_ROWS - 1
    source = json.loads((results / "checkpoint" / "bag" / "source.json").read_text())
    assert source["inputs"][0]["low"] == 0 and source["inputs"][0]["high"] == TABLE_ROWS - 1
    assert source["task_metric"] is False


def test_io_is_read_from_the_file_or_the_config(workdir: Path) -> None:
    results = workdir / "results"

    def io(model: str, fmt: str) -> dict:
        return json.loads((results / "export" / model / fmt / "io.json").read_text())

    assert io("digits_dir", "onnx")["inputs"] == [
        {"name": "image", "dtype": "float32", "dims": [-1, 1, 8, 8], "datatype": "FP32"}
    ]
    assert io("bag", "onnx")["inputs"] == [
        {"name": "item_ids", "dtype": "int64", "dims": [-1, 5], "datatype": "INT64"}
    ]
    assert io("scripted", "torchscript")["outputs"] == [
        {"name": "scores", "dtype": "float32", "dims": [-1, 3], "datatype": "FP32"}
    ]
    for model, fmt in (("scripted", "onnx"), ("saved", "onnx"), ("saved", "savedmodel")):
        assert io(model, fmt)["status"] == "ok", io(model, fmt)
    config = repository.read_config(
        results
        / "repository"
        / "saved"
        / "savedmodel"
        / "cpu"
        / "saved_savedmodel"
        / "config.pbtxt"
    )
    assert [i.name for i in config.input] == ["features"]
    assert [o.name for o in config.output] == ["scores"]


def dry_run(workdir: Path, config: dict, check: bool = True) -> subprocess.CompletedProcess[str]:
    (workdir / "my.yaml").write_text(yaml.safe_dump(config))
    return snakemake(
        "results/report.html",
        "-n",
        "--cores",
        "2",
        "--configfile",
        "my.yaml",
        cwd=workdir,
        check=check,
    )


def test_an_ambiguous_batch_axis_is_refused_with_the_tensor_and_key(tmp_path: Path) -> None:
    bag_onnx(tmp_path / "ambiguous.onnx", first_axis="rows", second_axis="items")
    config = {
        **copy.deepcopy(TINY),
        "models": {
            "bag": {
                "onnx": str(tmp_path / "ambiguous.onnx"),
                "inputs": {"item_ids": {"low": 0, "high": 9}},
            }
        },
    }
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(
        "results/checkpoint/bag/source.json",
        "--cores",
        "1",
        "--configfile",
        "my.yaml",
        cwd=tmp_path,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "input 'item_ids'" in out and "models.bag.batch_axis: 0" in out, out[-3000:]
    # Once stated, the second dynamic axis needs a length for generated data: named the same way.
    config["models"]["bag"]["batch_axis"] = 0
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(
        "results/checkpoint/bag/source.json",
        "--cores",
        "1",
        "--configfile",
        "my.yaml",
        cwd=tmp_path,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "inputs.item_ids.dims" in out, out[-3000:]
    config["models"]["bag"]["inputs"]["item_ids"]["dims"] = [3]
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(config))
    snakemake(
        "results/checkpoint/bag/source.json",
        "--cores",
        "1",
        "--configfile",
        "my.yaml",
        cwd=tmp_path,
    )
    source = json.loads((tmp_path / "results" / "checkpoint" / "bag" / "source.json").read_text())
    assert source["inputs"][0]["dims"] == [-1, -1] and source["inputs"][0]["shape"] == [3]


def test_a_config_naming_only_the_users_model_plans_no_digits_job(tmp_path: Path) -> None:
    # The project's layout: config/config.yaml (the embedded default, naming digits) beside the run.
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
    bag_onnx(tmp_path / "bag.onnx")
    mine = {"models": {"bag": {"onnx": "bag.onnx", "inputs": {"item_ids": {"low": 0, "high": 9}}}}}
    out = dry_run(tmp_path, mine).stdout
    assert "bag" in out and "digits" not in out, out[-3000:]
    assert "python_describe_source" in out and "onnx_copy_source" in out
    # The plain command (no config of the user's) still deploys the default's digits.
    plain = snakemake("results/report.html", "-n", "--cores", "2", cwd=tmp_path).stdout
    assert "results/checkpoint/digits/model.pt" in plain and "bag" not in plain


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        (
            {"m": {"onnx": "{tmp}/bag.onnx", "recipe": "recipes/digits"}},
            "config.models.m.recipe: applies to recipes only",
        ),
        ({"m": {"params": {}}}, "config.models.m: give a recipe"),
        (
            {"m": {"recipe": "recipes/digits", "batch_axis": 0}},
            "config.models.m.batch_axis: applies to exported models",
        ),
        ({"m": {"onnx": "{tmp}/nowhere.onnx"}}, "config.models.m.onnx: file"),
        ({"m": {"triton_model": "{tmp}"}}, "has no config.pbtxt"),
        ({"m": {"onnx": "{tmp}/bag.onnx", "batch_axis": 1}}, "config.models.m.batch_axis: 1"),
    ],
    ids=[
        "recipe and source",
        "neither",
        "source key on a recipe",
        "missing file",
        "no config.pbtxt",
        "batch axis 1",
    ],
)
def test_bad_source_settings_are_config_errors(models: dict, expected: str, tmp_path: Path) -> None:
    from deploysnake.errors import UserError

    bag_onnx(tmp_path / "bag.onnx")
    models = json.loads(json.dumps(models).replace("{tmp}", str(tmp_path)))
    with pytest.raises(UserError, match=re.escape(expected)):
        validate({**copy.deepcopy(TINY), "models": models})
