"""The shared cases about tensor shapes and names, through the real workflow (issue 18, items 2-3).

Two runs cover them: one batched run (triton.max_batch_size > 0) with every case model that a batched
server must either serve right or refuse, and one unbatched run (max_batch_size 0). Each test asserts
what its case's CASE.md says from the files of its model. Targets name the files each case needs, so
only those jobs run (perf sweeps of one point, short windows)."""

from __future__ import annotations

import base64
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from deploysnake.plugins import load_recipe, validation_batches

from .conftest import (
    CASES,
    MEASURED,
    ROOT,
    TWO_AT_A_TIME_ARGS,
    measured_two_at_a_time,
    needs_cases,
    snakemake,
)
from .test_aoti import PROGRAM_SETTINGS, save_program

pytestmark = needs_cases
FORMATS = ["torchscript_trace", "onnx"]
# Case 06 (dynamic batch and sequence) also goes through aoti (torch.export + AOTInductor, issue 34):
# the one end-to-end run of that format (its compile: 1-3 minutes here).
CASE06_FORMATS = [*FORMATS, "aoti"]
PERF = {
    "measurement_interval_ms": 300,
    "stability_percentage": 50,
    "max_trials": 4,
    "input_samples": 16,
    "offline": {"batch_sizes": [4], "concurrency": [1]},
    "online": {"concurrency": [2]},
}


def case_model(folder: str, config: str = "config.yaml") -> tuple[str, dict[str, Any]]:
    """The model of a case's config, with its recipe's absolute path."""
    doc = yaml.safe_load((CASES / folder / config).read_text())
    name, settings = next(iter(doc["models"].items()))
    return name, {**settings, "recipe": str(CASES / folder)}


def run(workdir: Path, config: dict[str, Any], targets: list[str]) -> str:
    """snakemake on these targets, every job that can run (--keep-going); the console output."""
    (workdir / "case.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(
        *targets,
        "--cores",
        "2",
        # two measuring jobs at a time (perf windows are time, not work: the module's measuring
        # jobs took 140 s one at a time); the fixtures' configs are measured_two_at_a_time
        *TWO_AT_A_TIME_ARGS,
        "--keep-going",
        "--configfile",
        "case.yaml",
        cwd=workdir,
        check=False,
        timeout=2400,  # several models in one run; a loaded shared machine is slow
    )
    return done.stdout + done.stderr


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def served_targets(model: str, perf_formats: list[str], native: bool = True) -> list[str]:
    out = [f"results/accuracy/{model}/{fmt}/cpu.csv" for fmt in FORMATS]
    for fmt in perf_formats:
        out += [
            f"results/perf_offline/{model}/{fmt}/cpu.csv",
            f"results/perf_online/{model}/{fmt}/cpu.csv",
        ]
    if native:
        out.append(f"results/native/{model}/onnx/cpu.csv")
    return out


BATCHED = (
    {
        "01": case_model("01_rank1_regression_output"),
        "02": case_model("02_scalar_side_output"),
        "05": case_model("05_output_name_equals_input"),
        "06": case_model("06_bool_mask_int64_ids_dynamic"),
        "11": case_model("11_time_major_output"),
        "14": case_model("14_unbatched_set_model", "config_batched.yaml"),
    }
    if CASES.is_dir()
    else {}
)
NAMES_MODEL = "names.v1-x"  # a model name with "." and "-"
PROGRAM_MODEL = "scorer_ep"  # a torch.export program as the source (issue 34): aoti and onnx
HALF_MODEL = "digits_half"  # case 24's config.yaml: an ONNX file with float16 inputs and outputs


def case24_model(workdir: Path) -> dict[str, Any]:
    """Case 24's float16 model (config.yaml), made by its make_model.py in a copy of the case folder
    (seconds), given as onnx: with the case's dataloader and metrics."""
    folder = workdir / "case24"
    shutil.copytree(CASES / "24_fp16_uint8_io", folder)
    subprocess.run(
        [sys.executable, "make_model.py"], cwd=folder, check=True, capture_output=True, timeout=600
    )
    return {
        "onnx": str(folder / "half_clf.onnx"),
        "dataloader": str(folder / "dataloader.py"),
        "metrics": str(folder / "metrics.py"),
    }


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    workdir = tmp_path_factory.mktemp("cases_batched")
    models = dict(BATCHED.values())
    models[NAMES_MODEL] = {
        "recipe": str(ROOT / "tests" / "recipes" / "names"),
        "params": {"hidden": 8, "epochs": 3, "seed": 0},
    }
    models[HALF_MODEL] = case24_model(workdir)
    models[PROGRAM_MODEL] = {
        "exported_program": str(save_program(workdir / "scorer.pt2")),
        **PROGRAM_SETTINGS,
    }
    config = {
        "models": models,
        "formats": CASE06_FORMATS,  # only case 06's aoti files are targets: no other model compiles
        "devices": ["cpu"],
        # Batches of 16: case 06's two validation batches are padded to two lengths (29, 27).
        "correctness": {"batches": 2, "batch_size": 16},
        "accuracy": {"batch_size": 64},
        "triton": {"max_batch_size": 64, "readiness_timeout_s": 60},
        "perf": PERF,
        "native": {"window_s": 0.1},
    }
    refused = [BATCHED[c][0] for c in ("02", "11", "14")]
    targets = [
        *served_targets(BATCHED["01"][0], FORMATS),
        *served_targets(BATCHED["06"][0], FORMATS, native=False),
        *(
            f"results/{stage}/{BATCHED['06'][0]}/aoti/cpu.csv"
            for stage in ("accuracy", "perf_offline", "perf_online", "native")
        ),
        f"results/correctness/{BATCHED['06'][0]}/aoti.json",
        *(f"results/correctness/{PROGRAM_MODEL}/{fmt}.json" for fmt in ("aoti", "onnx")),
        f"results/accuracy/{PROGRAM_MODEL}/aoti/cpu.csv",
        f"results/perf_offline/{PROGRAM_MODEL}/aoti/cpu.csv",
        *served_targets(NAMES_MODEL, ["onnx"], native=False),
        f"results/perf_offline/{HALF_MODEL}/onnx/cpu.csv",
        f"results/perf_online/{HALF_MODEL}/onnx/cpu.csv",
        f"results/native/{HALF_MODEL}/onnx/cpu.csv",
        *(f"results/export/{m}/{fmt}/io.json" for m in refused for fmt in FORMATS),
        f"results/checkpoint/{BATCHED['05'][0]}/model.pt",
    ]
    return workdir, run(workdir, measured_two_at_a_time(config), targets)


def export_log(workdir: Path, model: str, fmt: str) -> str:
    return (workdir / "logs" / "export" / model / f"{fmt}.log").read_text()


def test_case01_rank1_output_served_batched(batched: tuple[Path, str]) -> None:
    workdir, _ = batched
    model = BATCHED["01"][0]
    for fmt in FORMATS:
        io = json.loads((workdir / f"results/export/{model}/{fmt}/io.json").read_text())
        dims = {t["name"]: t["dims"] for t in io["outputs"]}
        assert dims == {"progression": [-1], "embedding": [-1, 8]}, (fmt, dims)
        for repo in (f"results/repository/{model}/{fmt}/cpu/{model}_{fmt}",):
            text = (workdir / repo / "config.pbtxt").read_text()
            block = text[text.index('name: "progression"') :].split("}\n", 2)
            assert "dims: 1\n" in block[0] and "reshape {" in block[0], text
        for stage in ("accuracy", "perf_offline", "perf_online"):
            log = workdir / f"logs/{stage}/{model}/{fmt}/cpu.server.log"
            assert "failed to load" not in log.read_text(), log
        accuracy = {
            r["metric"]: r for r in rows(workdir / f"results/accuracy/{model}/{fmt}/cpu.csv")
        }
        assert set(accuracy) == {"mae", "r2"}
        for row in accuracy.values():
            assert abs(float(row["served_minus_source"])) < 1e-3, row
            assert float(row["max_abs_diff_served_vs_exported"]) < 1e-3, row
        dump = np.load(workdir / f"results/accuracy/{model}/{fmt}/cpu.npz")
        assert dump["served/progression"].shape == dump["source/progression"].shape == (88,)
        for mode in ("offline", "online"):
            statuses = {
                r["status"] for r in rows(workdir / f"results/perf_{mode}/{model}/{fmt}/cpu.csv")
            }
            assert statuses <= MEASURED and statuses, (mode, statuses)
    assert rows(workdir / f"results/native/{model}/onnx/cpu.csv")


def test_case02_scalar_output_refused_before_serving(batched: tuple[Path, str]) -> None:
    workdir, console = batched
    model = BATCHED["02"][0]
    for fmt in FORMATS:
        assert not (workdir / f"results/export/{model}/{fmt}/io.json").exists()
        log = export_log(workdir, model, fmt)
        assert "output 'temperature' has no batch axis" in log, log[-2000:]
        assert "[] at batch 3" in log and "triton.max_batch_size: 0" in log
    assert "'temperature' has no batch axis" in console
    assert not (workdir / f"results/repository/{model}").exists()
    assert not (workdir / "logs" / "accuracy" / model).exists()  # no server started for it


def test_case05_same_input_and_output_name_refused_by_contract(batched: tuple[Path, str]) -> None:
    workdir, _ = batched
    model = BATCHED["05"][0]
    assert not (workdir / f"results/checkpoint/{model}/model.pt").exists()
    log = (workdir / "logs" / "checkpoint" / f"{model}.log").read_text()
    assert "'item_id' is both an input (INPUT_NAMES) and an output (OUTPUT_NAMES)" in log, log[
        -2000:
    ]
    assert "distinct tensor names" in log and "item_id_echo" in log
    assert not (workdir / "results" / "export" / model).exists()


def test_case05_legacy_exporter_config_refused_too(tmp_path: Path) -> None:
    """config_legacy.yaml: the contract check stops the model before the exporter is chosen."""
    name, settings = case_model("05_output_name_equals_input", "config_legacy.yaml")
    doc = yaml.safe_load((CASES / "05_output_name_equals_input" / "config_legacy.yaml").read_text())
    assert doc["export"]["onnx_exporter"] == "legacy"
    config = {
        "models": {name: settings},
        "formats": FORMATS,
        "devices": ["cpu"],
        "export": doc["export"],
    }
    console = run(tmp_path, config, [f"results/export/{name}/onnx/io.json"])
    assert "'item_id' is both an input (INPUT_NAMES) and an output (OUTPUT_NAMES)" in console
    assert not (tmp_path / f"results/export/{name}").exists()


def test_case06_bool_mask_int64_ids_stay_clean(batched: tuple[Path, str]) -> None:
    workdir, _ = batched
    model = BATCHED["06"][0]
    for fmt in CASE06_FORMATS:
        text = (
            workdir / f"results/repository/{model}/{fmt}/cpu/{model}_{fmt}/config.pbtxt"
        ).read_text()
        for name, dtype, dims in (
            ("input_ids", "TYPE_INT64", "dims: -1\n"),
            ("attention_mask", "TYPE_BOOL", "dims: -1\n"),
            ("token_logits", "TYPE_FP32", "dims: -1\n  dims: 3\n"),
            ("sentence_logits", "TYPE_FP32", "dims: 2\n"),
        ):
            block = text[text.index(f'name: "{name}"') :].split("}", 1)[0]
            assert dtype in block and dims in block, (name, block)
        for mode in ("offline", "online"):
            points = rows(workdir / f"results/perf_{mode}/{model}/{fmt}/cpu.csv")
            assert points and {p["status"] for p in points} <= MEASURED, points
            shapes = points[0]["input_shapes"].split()
            lengths = {s.split(":")[0]: s.split(":")[1] for s in shapes}
            assert set(lengths) == {"input_ids", "attention_mask"}
            assert lengths["input_ids"] == lengths["attention_mask"]
        accuracy = {
            r["metric"]: r for r in rows(workdir / f"results/accuracy/{model}/{fmt}/cpu.csv")
        }
        assert float(accuracy["accuracy"]["served"]) > 0.85
        assert abs(float(accuracy["accuracy"]["served_minus_source"])) < 1e-9
    data = json.loads((workdir / f"results/perf_data/{model}/input.json").read_text())["data"]
    assert all(isinstance(v, bool) for v in data[0]["attention_mask"]["content"])
    log = (workdir / f"logs/perf_offline/{model}/onnx/cpu.log").read_text()
    assert "--shape input_ids:" in log and "--shape attention_mask:" in log


def test_case06_aoti_checked_at_two_lengths_and_measured(batched: tuple[Path, str]) -> None:
    """aoti end to end: the package passed correctness on validation batches of two sequence lengths,
    records its build time, and has a native baseline (the served side is asserted above)."""
    workdir, _ = batched
    model = BATCHED["06"][0]
    verdict = json.loads((workdir / f"results/correctness/{model}/aoti.json").read_text())
    assert verdict["passed"] and verdict["build_seconds"] > 0, verdict
    assert verdict["samples"] == 32, verdict
    # The batches the verdict compared: the dataloader's, each padded to its longest sequence.
    recipe = load_recipe(BATCHED["06"][1]["recipe"])
    batches = validation_batches(recipe, BATCHED["06"][1]["params"], 16, limit=2)
    assert len({b["inputs"]["input_ids"].shape[1] for b in batches}) == 2
    native = rows(workdir / f"results/native/{model}/aoti/cpu.csv")
    # measured beside another measuring job (the module runs two at a time): the other's load can
    # put the served figure above the in-process one, which the row then records as suspect
    assert native and {r["status"] for r in native} <= MEASURED | {"baseline suspect"}, native


def test_exported_program_source_through_aoti_and_onnx(batched: tuple[Path, str]) -> None:
    """A torch.export program as the source: its aoti package and its ONNX conversion pass
    correctness against the program, aoti is served with the source's outputs and measured."""
    workdir, _ = batched
    for fmt in ("aoti", "onnx"):
        verdict = json.loads(
            (workdir / f"results/correctness/{PROGRAM_MODEL}/{fmt}.json").read_text()
        )
        assert verdict["passed"] and verdict["build_seconds"] > 0, verdict
    source = json.loads((workdir / f"results/checkpoint/{PROGRAM_MODEL}/source.json").read_text())
    assert source["kind"] == "exported_program"
    assert [t["name"] for t in source["outputs"]] == ["scores", "total"]
    accuracy = rows(workdir / f"results/accuracy/{PROGRAM_MODEL}/aoti/cpu.csv")
    assert accuracy and all(float(r["max_abs_diff_served_vs_exported"]) < 1e-4 for r in accuracy)
    points = rows(workdir / f"results/perf_offline/{PROGRAM_MODEL}/aoti/cpu.csv")
    assert points and {p["status"] for p in points} <= MEASURED, points


def test_case11_time_major_output_refused_with_its_batch_axis(batched: tuple[Path, str]) -> None:
    workdir, console = batched
    model = BATCHED["11"][0]
    for fmt in FORMATS:
        assert not (workdir / f"results/export/{model}/{fmt}/io.json").exists()
        log = export_log(workdir, model, fmt)
        assert "output 'log_probs' carries the batch on axis 1, not axis 0" in log, log[-2000:]
        assert "[20, 3, 4] at batch 3 and [20, 5, 4] at batch 5" in log
        assert ".transpose(0, 1)" in log
    assert "'log_probs' carries the batch on axis 1" in console
    assert not (workdir / f"results/repository/{model}").exists()


def test_case14_batched_config_refuses_the_set_summary(batched: tuple[Path, str]) -> None:
    workdir, _ = batched
    model = BATCHED["14"][0]
    for fmt in FORMATS:
        assert not (workdir / f"results/export/{model}/{fmt}/io.json").exists()
        log = export_log(workdir, model, fmt)
        assert "output 'set_summary' has no batch axis" in log, log[-2000:]
        assert "[3] at batch 3 and [3] at batch 5" in log
    assert not (workdir / f"results/perf_data/{model}").exists()  # no samples of single readings
    assert not (workdir / f"results/repository/{model}").exists()


def test_names_with_punctuation_and_dict_outputs_in_another_order(
    batched: tuple[Path, str],
) -> None:
    """Tensor names with '.', ':', '/', '-', a model name with '.' and '-', outputs returned as a dict
    in another key order than OUTPUT_NAMES (the ONNX file lists them in the dict's order)."""
    import onnx

    workdir, _ = batched
    model = NAMES_MODEL
    graph = onnx.load(str(workdir / f"results/export/{model}/onnx/model.onnx")).graph
    assert [o.name for o in graph.output] == ["emb/out-1", "score:0"]  # the file's own order
    for fmt in FORMATS:
        io = json.loads((workdir / f"results/export/{model}/{fmt}/io.json").read_text())
        assert [t["name"] for t in io["inputs"]] == ["feat.in:0", "tok/ids-1"]
        assert [t["name"] for t in io["outputs"]] == ["score:0", "emb/out-1"]
        text = (
            workdir / f"results/repository/{model}/{fmt}/cpu/{model}_{fmt}/config.pbtxt"
        ).read_text()
        assert 'name: "tok/ids-1"' in text and 'name: "score:0"' in text
        accuracy = {
            r["metric"]: r for r in rows(workdir / f"results/accuracy/{model}/{fmt}/cpu.csv")
        }
        for row in accuracy.values():
            assert abs(float(row["served_minus_source"])) < 1e-5, row
            assert float(row["max_abs_diff_served_vs_exported"]) < 1e-5, row
    for mode in ("offline", "online"):
        points = rows(workdir / f"results/perf_{mode}/{model}/onnx/cpu.csv")
        assert points and {p["status"] for p in points} <= MEASURED, points
    assert "--shape tok/ids-1:" in (workdir / f"logs/perf_offline/{model}/onnx/cpu.log").read_text()


def test_case24_float16_io_measured_with_base64_perf_data(batched: tuple[Path, str]) -> None:
    """Case 24 (config.yaml): float16 perf data goes in perf_analyzer's base64 form, little-endian
    float16 bytes of the real samples; every point is measured (none failed with "Can not use
    explicit tensor description for fp16 datatype"), the serving floor's too, and the native
    baseline runs the same float16 samples and shapes."""
    workdir, _ = batched
    model = HALF_MODEL
    data = json.loads((workdir / f"results/perf_data/{model}/input.json").read_text())["data"]
    first = data[0]["pixels"]
    assert set(first) == {"b64", "shape"} and first["shape"] == [64], first.keys()
    values = np.frombuffer(base64.b64decode(first["b64"]), dtype="<f2")
    assert values.size == 64 and 0 < values.max() <= 1.0  # the dataloader's scaled pixels
    for name in ("perf_offline", "perf_online"):
        for csv_name in ("cpu.csv", "cpu.floor.csv") if name == "perf_online" else ("cpu.csv",):
            points = rows(workdir / f"results/{name}/{model}/onnx/{csv_name}")
            assert points and {p["status"] for p in points} <= MEASURED, points
            assert {(p["input_data"], p["input_shapes"]) for p in points} == {
                ("dataloader", "pixels:64")
            }, points
    log = (workdir / f"logs/perf_offline/{model}/onnx/cpu.log").read_text()
    assert "fp16" not in log.lower() or "explicit tensor description" not in log
    native_rows = rows(workdir / f"results/native/{model}/onnx/cpu.csv")
    assert native_rows and {(r["input_data"], r["input_shapes"]) for r in native_rows} == {
        ("dataloader", "pixels:64")
    }, native_rows


UNBATCHED = (
    {
        "14": case_model("14_unbatched_set_model"),
        "02": case_model("02_scalar_side_output"),
    }
    if CASES.is_dir()
    else {}
)


@pytest.fixture(scope="module")
def unbatched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Case 14's config.yaml (max_batch_size 0, no dynamic batching), with case 02's model beside it
    (its scalar output has no unbatched form either)."""
    workdir = tmp_path_factory.mktemp("cases_unbatched")
    doc = yaml.safe_load((CASES / "14_unbatched_set_model" / "config.yaml").read_text())
    assert doc["triton"]["max_batch_size"] == 0
    config = {
        "models": dict(UNBATCHED.values()),
        "formats": FORMATS,
        "devices": ["cpu"],
        "correctness": {"batches": 2},
        "triton": {**doc["triton"], "readiness_timeout_s": 60},
        "perf": {**PERF, "offline": {"batch_sizes": [1], "concurrency": [1]}},
        "native": {"window_s": 0.1},
    }
    sets, wine = UNBATCHED["14"][0], UNBATCHED["02"][0]
    targets = [
        *served_targets(sets, ["onnx"]),
        f"results/perf_online/{sets}/torchscript_trace/cpu.csv",
        *(f"results/export/{wine}/{fmt}/io.json" for fmt in FORMATS),
    ]
    return workdir, run(workdir, measured_two_at_a_time(config), targets)


def test_case14_unbatched_model_served_whole_sets(unbatched: tuple[Path, str]) -> None:
    workdir, console = unbatched
    model = UNBATCHED["14"][0]
    for fmt in FORMATS:
        io = json.loads((workdir / f"results/export/{model}/{fmt}/io.json").read_text())
        assert {t["name"]: t["batch_axis"] for t in io["outputs"]} == {
            "anomaly": 0,
            "set_summary": None,
        }
        text = (
            workdir / f"results/repository/{model}/{fmt}/cpu/{model}_{fmt}/config.pbtxt"
        ).read_text()
        assert "max_batch_size" not in text  # 0, the protobuf default, is not written
        assert "dynamic_batching" not in text
        for name, dims in (
            ("readings", "dims: -1\n  dims: 4\n"),
            ("anomaly", "dims: -1\n  dims: 1\n"),
            ("set_summary", "dims: 3\n"),
        ):
            block = text[text.index(f'name: "{name}"') :].split("}", 1)[0]
            assert dims in block, (name, block)
        accuracy = {
            r["metric"]: r for r in rows(workdir / f"results/accuracy/{model}/{fmt}/cpu.csv")
        }
        assert float(accuracy["accuracy"]["served"]) > 0.95, accuracy
        for row in accuracy.values():
            assert (
                float(row["served_minus_source"]) == 0.0
                or abs(float(row["served_minus_source"])) < 1e-9
            ), row
            assert float(row["max_abs_diff_served_vs_exported"]) < 1e-5, row
        dump = np.load(workdir / f"results/accuracy/{model}/{fmt}/cpu.npz")
        assert dump["served/set_summary"].shape == (40, 3)  # one summary per set (per request)
        np.testing.assert_allclose(
            dump["served/set_summary"], dump["source/set_summary"], atol=1e-5
        )
    data = json.loads((workdir / f"results/perf_data/{model}/input.json").read_text())["data"]
    lengths = {tuple(d["readings"]["shape"]) for d in data}
    assert len(lengths) == 1 and next(iter(lengths))[0] >= 10  # whole sets, not single readings
    for mode, fmt in (("offline", "onnx"), ("online", "onnx"), ("online", "torchscript_trace")):
        points = rows(workdir / f"results/perf_{mode}/{model}/{fmt}/cpu.csv")
        assert points and {p["status"] for p in points} <= MEASURED, points
        assert {p["batch"] for p in points} == {"1"}
        log = (workdir / f"logs/perf_{mode}/{model}/{fmt}/cpu.log").read_text()
        assert "--shape readings:" in log and " -b " not in log, log[-3000:]
    native = rows(workdir / f"results/native/{model}/onnx/cpu.csv")
    assert [r["batch"] for r in native] == ["1"] and float(native[0]["throughput_infer_per_s"]) > 0


def test_case02_scalar_output_refused_unbatched(unbatched: tuple[Path, str]) -> None:
    """Unbatched, case 02's 0-d temperature cannot be served either: Triton refuses scalar tensors in
    a non-batching model (even as dims [1] with an empty reshape), so the export stops with the fix."""
    workdir, console = unbatched
    model = UNBATCHED["02"][0]
    for fmt in FORMATS:
        assert not (workdir / f"results/export/{model}/{fmt}/io.json").exists()
        log = export_log(workdir, model, fmt)
        assert "output 'temperature' is a scalar (shape [])" in log, log[-2000:]
        assert "temperature.reshape(1)" in log
    assert "'temperature' is a scalar" in console
    assert not (workdir / f"results/repository/{model}").exists()
