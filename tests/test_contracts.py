"""The shared words and tables: statuses and perf_analyzer's headers (contracts), the formats
registry (formats), and the code inputs the workflow derives from the package's imports. No server,
no training: a dry run of the real workflow at most."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import astuple
from pathlib import Path

import pytest
import yaml

from deploysnake import correctness, paths, repository, sources
from deploysnake.contracts import (
    FIELDS,
    PERF_ANALYZER_COLUMNS,
    Header,
    ServedSettings,
    Status,
    Target,
)
from deploysnake.formats import ARTIFACTS, FAMILIES, FORMATS, FRAMEWORK_FORMATS, SOURCE_PLATFORMS

from .conftest import ROOT, snakemake

# perf_analyzer's -f CSV header line (2.51), as it writes it.
PERF_ANALYZER_HEADER = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
    "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,"
    "p90 latency,p95 latency,p99 latency"
)


def test_statuses_are_written_as_the_same_strings_in_csv_and_json() -> None:
    row = {"status": Status.OK, Header.P99: 1.5}
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(row))
    writer.writeheader()
    writer.writerow(row)
    assert text.getvalue() == "status,p99 latency\r\nok,1.5\r\n"
    assert json.dumps(row) == '{"status": "ok", "p99 latency": 1.5}'
    assert {"status": "failed"}["status"] == Status.FAILED and f"{Status.LEFT_OUT}" == "left out"


def test_the_header_map_covers_perf_analyzers_columns_in_its_order() -> None:
    assert ",".join(PERF_ANALYZER_COLUMNS) == PERF_ANALYZER_HEADER
    assert set(PERF_ANALYZER_COLUMNS) <= set(FIELDS) and len(set(FIELDS.values())) == len(FIELDS)


def test_every_format_has_a_triton_platform_a_runtime_and_an_artifact() -> None:
    # Triton's platform names (model_configuration.md of the server's docs).
    platforms = {"onnxruntime_onnx", "pytorch_libtorch", "tensorflow_savedmodel", "tensorrt_plan"}
    for name, fmt in FORMATS.items():
        if fmt.platform is None:  # served by the bundled runner, saying why (aoti)
            assert name in repository.NO_NATIVE_BACKEND
        else:
            assert repository.native_platform(name) in platforms
        assert correctness.runtime_name(name) == fmt.family.runtime
        assert ARTIFACTS[name] == fmt.artifact
        assert all(name in FRAMEWORK_FORMATS[framework] for framework in fmt.frameworks)
    # An exported source's kind is a family's, found by the model directory's platform or backend.
    for family in FAMILIES.values():
        if family.source:
            assert SOURCE_PLATFORMS[family.platform] == family.name
            assert sources.DEFAULT_FILES[family.name] == family.artifact


def test_a_rules_code_inputs_are_the_modules_its_script_runs(tmp_path: Path) -> None:
    """torch_export_onnx's code inputs: export.py and what it imports from the package, transitively
    (contracts through failures, the job runner), and nothing its script never imports."""
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump(
            {
                "models": {"digits": {"recipe": str(ROOT / "recipes" / "digits")}},
                "formats": ["onnx"],
                "devices": ["cpu"],
            }
        )
    )
    # the target first: --configfile would take it as a second config file
    done = snakemake(
        "results/export/digits/onnx/io.json", "-n", "--configfile", "c.yaml", cwd=tmp_path
    )
    block = done.stdout.split("rule torch_export_onnx:", 1)[1]
    inputs = re.search(r"input: (.*)", block)
    assert inputs is not None, done.stdout[-3000:]
    code = {
        p.split("/src/deploysnake/", 1)[1]
        for p in inputs[1].split(", ")
        if "/src/deploysnake/" in p
    }
    assert {"export/stage.py", "export/to_onnx.py", "job.py", "failures.py", "contracts.py"} <= code
    assert {"formats.py", "sources/kinds.py"} <= code
    # a subpackage's modules come through imports, not as a block: nothing measuring, no report
    assert not {p for p in code if p.startswith(("measuring/", "report/", "tuning/"))}, code


def test_paths_give_the_rules_patterns_and_read_a_target_back() -> None:
    """The results/ layout (deploysnake.paths): patterns with Snakemake's wildcards for the rules,
    a target's files for the report, and the target read back from any served stage's file."""
    assert paths.perf_csv("offline") == "results/perf_offline/{model}/{format}/{device}.csv"
    assert paths.served_settings() == "results/repository/{model}/{format}/{device}.json"
    assert paths.artifact("model.onnx", fmt="onnx") == "results/export/{model}/onnx/model.onnx"
    target = Target("bert.v2", "onnx_int8", "cpu")
    for path in (
        paths.perf_csv("online", *astuple(target)),
        paths.floor_csv(*astuple(target)),
        paths.served("accuracy", *astuple(target), suffix="coldstart.json"),
        paths.served("capacity", *astuple(target), suffix="json"),
        paths.chosen(*astuple(target)),
        f"/tmp/run/{paths.tuning_dir(*astuple(target))}/trials/x.csv",
    ):
        assert paths.target_of(path) == target, path
    # a model named like a stage is still read from the right
    assert paths.target_of("results/perf_offline/native/onnx/cpu.csv") == Target(
        "native", "onnx", "cpu"
    )
    with pytest.raises(ValueError, match="not a file of a served stage"):
        paths.target_of("results/export/digits/onnx/io.json")


def test_served_settings_are_resolved_once_and_read_back_typed(tmp_path: Path) -> None:
    """What the repository job writes beside a repository and the served stages read: the tuned
    configuration's instances and threads, Triton's model name, the knobs set."""
    triton = {
        "max_batch_size": 0,
        "instances": {"cpu": 3, "default": 1},
        "runtime_threads": 2,
        "execution_mode": "parallel",
        "dynamic_batching": {"enabled": False},
    }
    served = repository.served_settings("digits", "onnx", triton, "cpu", "mbs~0_inst~3")
    assert (served.model_name, served.max_batch_size, served.instances) == ("digits_onnx", 0, 3)
    assert served.runtime_threads == 2 and served.runtime_options == {"execution_mode": "parallel"}
    assert repository.served_settings("digits", "onnx", triton, "gpu").instances == 1
    served.write(tmp_path / "cpu.json")
    assert ServedSettings.read(tmp_path / "cpu.json") == served
    first = (tmp_path / "cpu.json").read_bytes()
    served.write(tmp_path / "cpu.json")
    assert (tmp_path / "cpu.json").read_bytes() == first  # the same settings, the same bytes
