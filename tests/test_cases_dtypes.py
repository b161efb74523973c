"""The shared cases about data types, through the real workflow (issue 30 items 1 and 7): case 17's
text pipeline taking strings (BYTES) and its variant whose StringNormalizer needs en_US.UTF-8, and
case 24's uint8 control (uint8 images in, int32 class id out, with its dataloader given).

One run holds the three models; targets name the files each case needs (perf sweeps of one point,
short windows). Each case folder is copied into the test's tmp dir and its make_model.py run there."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import CASES, MEASURED, needs_cases, snakemake

pytestmark = needs_cases
TEXT, UINT8 = "17_string_input_text_pipeline", "24_fp16_uint8_io"
SERVED_TEXT = ["onnx", "onnx_optimized"]


def _model(folder: Path, config: str) -> tuple[str, dict[str, Any]]:
    """A case config's model with its files' paths made absolute (the copy in tmp)."""
    doc = yaml.safe_load((folder / config).read_text())
    name, settings = next(iter(doc["models"].items()))
    return name, {k: str(folder / Path(v).name) for k, v in settings.items()}


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, str]]:
    base = tmp_path_factory.mktemp("cases_dtypes")
    folders = {}
    for case in (TEXT, UINT8):
        folder = base / case
        shutil.copytree(CASES / case, folder)
        subprocess.run(
            [sys.executable, "make_model.py"],
            cwd=folder,
            check=True,
            capture_output=True,
            timeout=600,
        )
        folders[case] = folder
    names = {}
    models = {}
    for key, case, config in (
        ("text", TEXT, "config.yaml"),
        ("locale", TEXT, "config_default_locale.yaml"),
        ("uint8", UINT8, "config_uint8.yaml"),
    ):
        name, settings = _model(folders[case], config)
        names[key] = name
        models[name] = settings
    doc = yaml.safe_load((folders[TEXT] / "config.yaml").read_text())
    config = {
        "models": models,
        "formats": doc["formats"],
        "devices": ["cpu"],
        "correctness": {"batches": 2, "formats": doc["correctness"]["formats"]},
        "accuracy": {"batch_size": 64},
        "triton": {"max_batch_size": 64, "readiness_timeout_s": 60},
        "perf": {
            "measurement_interval_ms": 300,
            "stability_percentage": 50,
            "max_trials": 4,
            "input_samples": 16,
            "offline": {"batch_sizes": [4], "concurrency": [1], "shared_memory": "system"},
            "online": {"concurrency": [2]},
        },
        "native": {"window_s": 0.1},
    }
    text, uint8 = names["text"], names["uint8"]
    targets = [
        f"results/checkpoint/{names['locale']}/source.json",
        *(f"results/accuracy/{text}/{fmt}/cpu.csv" for fmt in SERVED_TEXT),
        *(f"results/export/{text}/{fmt}/io.json" for fmt in ("onnx_fp16", "onnx_int8")),
        f"results/accuracy/{uint8}/onnx/cpu.csv",
    ]
    for model in (text, uint8):
        targets += [
            f"results/perf_offline/{model}/onnx/cpu.csv",
            f"results/perf_online/{model}/onnx/cpu.csv",
            f"results/native/{model}/onnx/cpu.csv",
        ]
    workdir = base / "work"
    workdir.mkdir()
    (workdir / "case.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(
        *targets,
        "--cores",
        "2",
        "--keep-going",
        "--configfile",
        "case.yaml",
        cwd=workdir,
        check=False,
        timeout=1800,
    )
    return workdir, done.stdout + done.stderr, names


def test_case17_strings_are_bytes_tensors_served_and_measured(
    run: tuple[Path, str, dict[str, str]],
) -> None:
    workdir, console, names = run
    model = names["text"]
    io = json.loads((workdir / f"results/export/{model}/onnx/io.json").read_text())
    text = next(t for t in io["inputs"] if t["name"] == "text")
    assert (text["dtype"], text["datatype"], text["dims"]) == ("object", "BYTES", [-1, 1]), text
    for fmt in SERVED_TEXT:
        config = (
            workdir / f"results/repository/{model}/{fmt}/cpu/{model}_{fmt}/config.pbtxt"
        ).read_text()
        assert 'name: "text"\n  data_type: TYPE_STRING\n  dims: 1\n' in config, config
        assert 'name: "probabilities"\n  data_type: TYPE_FP32\n  dims: 2\n' in config, config
        accuracy = {
            r["metric"]: r for r in rows(workdir / f"results/accuracy/{model}/{fmt}/cpu.csv")
        }
        for column in ("source", "exported", "served"):
            assert round(float(accuracy["accuracy"][column]), 3) == 0.903, (fmt, accuracy)
    for variant in ("onnx_fp16", "onnx_int8"):  # recorded, with a reason, or served
        io = json.loads((workdir / f"results/export/{model}/{variant}/io.json").read_text())
        assert io["status"] == "ok" or io.get("error"), io
    data = json.loads((workdir / f"results/perf_data/{model}/input.json").read_text())["data"]
    assert isinstance(data[0]["text"]["content"][0], str) and data[0]["text"]["shape"] == [1]
    for mode in ("offline", "online"):
        points = rows(workdir / f"results/perf_{mode}/{model}/onnx/cpu.csv")
        assert points and {r["status"] for r in points} <= MEASURED, points
        assert {r["input_data"] for r in points} == {"dataloader"}
    floor = rows(workdir / f"results/perf_online/{model}/onnx/cpu.floor.csv")
    assert floor and {r["status"] for r in floor} <= MEASURED, floor
    assert rows(workdir / f"results/native/{model}/onnx/cpu.csv")


def test_case17_missing_locale_refused_in_one_sentence(
    run: tuple[Path, str, dict[str, str]],
) -> None:
    workdir, console, names = run
    model = names["locale"]
    assert not (workdir / f"results/checkpoint/{model}/source.json").exists()
    log = (workdir / f"logs/checkpoint/{model}.log").read_text()
    errors = [line for line in log.splitlines() if "error:" in line]
    assert len(errors) == 1, log
    sentence = errors[0]
    for needed in (
        "review_clf_default_locale.onnx",
        "StringNormalizer",
        "en_US.UTF-8",
        "locale-gen en_US.UTF-8",
        "skl2onnx's locale option",
    ):
        assert needed in sentence, sentence
    assert "Traceback" not in log and "onnxruntime_src" not in log, log
    assert "deploysnake [python_describe_source]: error:" in console


def test_case24_uint8_images_with_their_dataloader(run: tuple[Path, str, dict[str, str]]) -> None:
    workdir, _, names = run
    model = names["uint8"]
    config = (
        workdir / f"results/repository/{model}/onnx/cpu/{model}_onnx/config.pbtxt"
    ).read_text()
    for tensor, kind in (
        ("image", "TYPE_UINT8"),
        ("class_id", "TYPE_INT32"),
        ("probabilities", "TYPE_FP32"),
    ):
        assert f'name: "{tensor}"\n  data_type: {kind}\n' in config, config
    accuracy = {r["metric"]: r for r in rows(workdir / f"results/accuracy/{model}/onnx/cpu.csv")}
    for column in ("source", "exported", "served"):
        assert round(float(accuracy["accuracy"][column]), 3) == 0.981, accuracy
        assert float(accuracy["class_matches_probabilities"][column]) == 1.0, accuracy
    data = json.loads((workdir / f"results/perf_data/{model}/input.json").read_text())["data"]
    assert all(isinstance(v, int) for v in data[0]["image"]["content"]), data[0]
    for mode in ("offline", "online"):
        points = rows(workdir / f"results/perf_{mode}/{model}/onnx/cpu.csv")
        assert points and {r["status"] for r in points} <= MEASURED, points
        assert {r["input_data"] for r in points} == {"dataloader"}
    assert rows(workdir / f"results/native/{model}/onnx/cpu.csv")
