"""The shared cases about model files as teams hand them over (issue 30 items 2, 3, 4, 6, 8): Triton
model directories that rely on auto-complete (case 20), a stateful model directory (case 18),
TorchScript files with structured IO (case 21), a file whose batch is fixed inside, and files that
are not what their name says. Each case folder is copied into the test's tmp dir and its
make_model.py run there; the first job (sources.write_description, what python_describe_source
runs) is called directly on the real files, and the workflow runs the cases that go through in one
small shared run."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import yaml
from onnx import TensorProto, helper

from deploysnake import export, sources
from deploysnake.errors import UserError
from deploysnake.runtime import ArtifactRuntime

from .conftest import CASES, ROOT, needs_cases, snakemake

CASE_FOLDERS = {
    "18": "18_stateful_sequence_model",
    "20": "20_triton_model_autocomplete_config",
    "21": "21_torchscript_nested_io",
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each case folder copied into tmp, its make_model.py run there (about 10 s for the three)."""
    if not CASES.is_dir():
        pytest.skip(f"the shared cases are not at {CASES}")
    root = tmp_path_factory.mktemp("cases_sources")
    out = {}
    for case, folder in CASE_FOLDERS.items():
        target = root / folder
        shutil.copytree(CASES / folder, target)
        subprocess.run(
            [sys.executable, "make_model.py"], cwd=target, check=True, capture_output=True
        )
        out[case] = target
    return out


def case_settings(folder: Path, config: str) -> tuple[str, dict[str, Any]]:
    """The one model of a case config, its paths pointing into the copied folder."""
    doc = yaml.safe_load((folder / config).read_text())
    name, settings = next(iter(doc["models"].items()))
    prefix = f"../shared/cases/{folder.name}/"
    return name, {
        k: str(folder / v[len(prefix) :]) if isinstance(v, str) and v.startswith(prefix) else v
        for k, v in settings.items()
    }


def describe_case(folder: Path, config: str, tmp_path: Path) -> dict[str, Any]:
    name, settings = case_settings(folder, config)
    return sources.write_description(name, settings, tmp_path / name / "source.json")


def io_of(doc: dict[str, Any]) -> dict[str, list[tuple[str, str, list[int]]]]:
    return {k: [(t["name"], t["dtype"], t["dims"]) for t in doc[k]] for k in ("inputs", "outputs")}


# ------------------------------------------------------------------ case 20: auto-complete


@needs_cases
@pytest.mark.parametrize(
    "config",
    ["config.yaml", "config_backend_only.yaml", "config_no_config.yaml", "config_partial.yaml"],
)
def test_case20_model_directory_completed_from_the_file(
    made: dict[str, Path], config: str, tmp_path: Path
) -> None:
    doc = describe_case(made["20"], config, tmp_path)
    assert io_of(doc) == {
        "inputs": [("pixels", "float32", [-1, 64])],
        "outputs": [("scores", "float32", [-1, 10])],
    }
    assert doc["kind"] == "onnx" and doc["path"].endswith("/1/model.onnx")


@needs_cases
def test_case20_listed_tensors_are_checked_against_the_file(
    made: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "digits_clf"
    shutil.copytree(made["20"] / "repos" / "partial" / "digits_clf", folder)
    config = folder / "config.pbtxt"
    text = config.read_text()
    config.write_text(text.replace('"pixels"', '"image"'))
    with pytest.raises(UserError, match=r"lists input 'image', which .* does not have.*'pixels'"):
        sources.describe({"triton_model": str(folder)}, "m")
    # A listed dtype that is not the file's.
    config.write_text(text.replace("TYPE_FP32", "TYPE_FP64"))
    with pytest.raises(UserError, match=r"lists input 'pixels' as float64 .* has float32"):
        sources.describe({"triton_model": str(folder)}, "m")
    # Batching left unset while IO is listed: the lesser outcome, a refusal saying what to set.
    config.write_text(re.sub(r"max_batch_size: *\d+", "", text))
    with pytest.raises(UserError, match=r"sets no max_batch_size.*set max_batch_size"):
        sources.describe({"triton_model": str(folder)}, "m")


# ------------------------------------------------------------------ case 18: stateful


@needs_cases
def test_case18_sequence_batcher_refused_with_its_tensors(
    made: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(UserError) as raised:
        describe_case(made["18"], "config.yaml", tmp_path)
    message = str(raised.value)
    assert "sequence batcher" in message and "START (CONTROL_SEQUENCE_START)" in message
    assert "state_in -> state_out" in message and "explicit state" in message
    assert "onnx:" in message and "\n" not in message
    assert not (tmp_path / "stream_scorer").exists()


@needs_cases
def test_case18_explicit_state_step_model_is_described(
    made: dict[str, Path], tmp_path: Path
) -> None:
    doc = describe_case(made["18"], "config_explicit.yaml", tmp_path)
    assert [t["name"] for t in doc["inputs"]] == ["frame", "START", "state_in"]
    assert [t["name"] for t in doc["outputs"]] == ["score", "state_out"]


# ------------------------------------------------------------------ case 21: TorchScript types


@needs_cases
def test_case21_nested_outputs_served_flat(made: dict[str, Path], tmp_path: Path) -> None:
    doc = describe_case(made["21"], "config.yaml", tmp_path)
    assert io_of(doc)["outputs"] == [
        ("scores", "float32", [-1, 3]),
        ("boxes", "float32", [-1, 4]),
        ("label", "int64", [-1, 1]),
    ]
    assert doc["flatten"] is True
    description = tmp_path / "nested_detector" / "source.json"
    artifact = tmp_path / "served.pt"
    name, settings = case_settings(made["21"], "config.yaml")
    io = export.export_from_source(
        name, settings, description, "torchscript", artifact, tmp_path / "io.json", {}
    )
    assert io["status"] == "ok"
    # What Triton's PyTorch backend reads: a flat tuple of three tensors, at any batch size.
    served = torch.jit.load(str(artifact))
    source = torch.jit.load(doc["path"])
    for rows in (1, 5):
        features = torch.rand(rows, 6)
        flat = served(features)
        assert isinstance(flat, tuple) and len(flat) == 3
        assert all(isinstance(t, torch.Tensor) for t in flat)
        scores, (boxes, label) = source(features)
        for got, want in zip(flat, (scores, boxes, label), strict=True):
            assert torch.equal(got, want)
    # A wrong count of names is told against the return type, not the outer tuple's length.
    with pytest.raises(
        UserError, match=re.escape("returns Tuple[Tensor, Tuple[Tensor, Tensor]] (3")
    ):
        sources.describe({**settings, "outputs": ["scores", "rest"]}, name)


@needs_cases
def test_case21_tuple_argument_refused_with_the_fix(made: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError) as raised:
        describe_case(made["21"], "config_tuple_input.yaml", tmp_path)
    message = str(raised.value)
    assert "'pair'" in message and "Tuple[Tensor, Tensor]" in message
    assert "forward(self, features, context)" in message


@needs_cases
def test_case21_dict_argument_bound_by_key(made: dict[str, Path], tmp_path: Path) -> None:
    doc = describe_case(made["21"], "config_dict_input.yaml", tmp_path)
    assert [t["name"] for t in doc["inputs"]] == ["features", "context"]
    runner = ArtifactRuntime(doc["path"], "torchscript", ["context", "features"], ["scores"])
    features = np.random.default_rng(0).random((4, 6), dtype=np.float32)
    context = np.random.default_rng(1).random((4, 2), dtype=np.float32)
    got = runner({"features": features, "context": context})["scores"]
    want = torch.jit.load(doc["path"])(
        {"features": torch.from_numpy(features), "context": torch.from_numpy(context)}
    )
    assert np.array_equal(
        got, want.detach().numpy()
    )  # bound by key, whatever the order of the names
    # Without the keys declared, the refusal names the dict argument and the key to set.
    name, settings = case_settings(made["21"], "config_dict_input.yaml")
    settings.pop("inputs")
    with pytest.raises(UserError, match=r"one Dict\[str, Tensor\] argument 'batch'.*\.inputs"):
        sources.describe(settings, name)


# ------------------------------------------------------------------ item 6: a batch fixed inside


def fixed_batch_onnx(path: Path) -> None:
    """x float32 [batch, 4] -> y [batch, 4] as declared, but a constant Reshape to [1, 4] inside:
    runs at batch 1 only."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, 4])
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "shape"], ["flat"], name="fixed_reshape"),
            helper.make_node("Relu", ["flat"], ["y"], name="relu"),
        ],
        "fixed_batch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_a_batch_fixed_inside_the_graph_is_refused(tmp_path: Path) -> None:
    fixed_batch_onnx(tmp_path / "fixed.onnx")
    with pytest.raises(UserError) as raised:
        sources.write_description("m", {"onnx": str(tmp_path / "fixed.onnx")}, tmp_path / "s.json")
    message = str(raised.value)
    assert "runs at batch 1 but fails at batch 8" in message and "fixed_reshape" in message
    assert "\n" not in message and not (tmp_path / "s.json").exists()


# ------------------------------------------------------------------ item 8: one sentence


def tiny_onnx(path: Path, op: str = "Relu", domain: str = "") -> None:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], name="the_node", domain=domain)],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    imports = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 8
    onnx.save(model, str(path))


class _Tiny(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mm(x, torch.ones(4, 2))


def bad_files(folder: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """Each bad file -> (its settings, a pattern its refusal must hold)."""
    tiny_onnx(folder / "good.onnx")
    data = (folder / "good.onnx").read_bytes()
    (folder / "text.onnx").write_text("name,value\nrow,1\n" * 20)
    (folder / "cut.onnx").write_bytes(data[: len(data) // 2])
    tiny_onnx(folder / "custom_op.onnx", op="NoSuchOp", domain="com.example")
    torch.jit.save(torch.jit.script(_Tiny()), str(folder / "good.pt"))
    pt = (folder / "good.pt").read_bytes()
    (folder / "cut.pt").write_bytes(pt[: len(pt) // 2])
    (folder / "pickle.pt").write_bytes(b"\x80\x04K\x01.")
    ts = {"inputs": {"x": {"dtype": "float32", "dims": [4]}}}
    ids = {"inputs": {"x": {"dtype": "int64", "dims": [4], "low": 0, "high": 3}}}
    return {
        "text": ({"onnx": str(folder / "text.onnx")}, r"text\.onnx cannot be read as an ONNX"),
        "truncated onnx": ({"onnx": str(folder / "cut.onnx")}, r"cut\.onnx .*truncated"),
        "session error": (
            {"onnx": str(folder / "custom_op.onnx")},
            r"custom_op\.onnx cannot be loaded by the runtime.*NoSuchOp",
        ),
        "truncated pt": (
            {"torchscript": str(folder / "cut.pt"), **ts},
            r"cut\.pt cannot be read as a TorchScript file.*torch\.jit\.save",
        ),
        "pickle pt": (
            {"torchscript": str(folder / "pickle.pt"), **ts},
            r"pickle\.pt cannot be read as a TorchScript file",
        ),
        "torchscript error": (  # the file's matmul takes floats; the config says int64
            {"torchscript": str(folder / "good.pt"), **ids},
            r"good\.pt fails on generated inputs \(x int64 \[2, 4\]\).*models\.m\.inputs",
        ),
    }


@pytest.mark.parametrize(
    "which",
    ["text", "truncated onnx", "session error", "truncated pt", "pickle pt", "torchscript error"],
)
def test_a_bad_model_file_is_one_sentence(which: str, tmp_path: Path) -> None:
    settings, pattern = bad_files(tmp_path)[which]
    with pytest.raises(UserError, match=pattern) as raised:
        sources.write_description("m", settings, tmp_path / "s.json")
    assert "\n" not in str(raised.value) and "Traceback" not in str(raised.value)


# ------------------------------------------------------------------ through the workflow, one run

RUN_CONFIG: dict[str, Any] = {
    "formats": ["onnx"],  # with each source's own format (torchscript), always served
    "devices": ["cpu"],
    "correctness": {"batches": 1},
    "accuracy": {"batch_size": 64},
    "triton": {"max_batch_size": 64, "readiness_timeout_s": 60},
    "perf": {
        "measurement_interval_ms": 300,
        "stability_percentage": 50,
        "max_trials": 4,
        "input_samples": 16,
        "offline": {"batch_sizes": [4], "concurrency": [1]},
        "online": {"concurrency": [1]},
    },
    "native": {"window_s": 0.1},
}
# (case, config) -> the model's targets: the cases that go through get their accuracy; the refused
# ones their first job only.
THROUGH = {
    ("20", "config.yaml"): ["accuracy/{m}/onnx/cpu.csv"],
    ("21", "config.yaml"): ["accuracy/{m}/torchscript/cpu.csv", "export/{m}/onnx/io.json"],
    ("21", "config_dict_input.yaml"): ["accuracy/{m}/torchscript/cpu.csv"],
    ("18", "config_explicit.yaml"): ["accuracy/{m}/onnx/cpu.csv"],
}
REFUSED = [("18", "config.yaml"), ("21", "config_tuple_input.yaml")]


@pytest.fixture(scope="module")
def workflow_run(
    made: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, dict[tuple[str, str], str]]:
    workdir = tmp_path_factory.mktemp("cases_sources_run")
    names, models, targets = {}, {}, []
    for case, config in [*THROUGH, *REFUSED]:
        name, settings = case_settings(made[case], config)
        names[(case, config)] = name
        models[name] = settings
        if (case, config) in THROUGH:
            targets += [f"results/{t.format(m=name)}" for t in THROUGH[(case, config)]]
        else:
            targets.append(f"results/checkpoint/{name}/source.json")
    # A file that is not ONNX: planned (config validation, the first job's inputs) and refused by
    # the first job in one sentence.
    (workdir / "not_onnx.onnx").write_text("id,label\n1,cat\n")
    models["not_onnx"] = {"onnx": str(workdir / "not_onnx.onnx")}
    targets.append("results/checkpoint/not_onnx/source.json")
    (workdir / "run.yaml").write_text(yaml.safe_dump({**RUN_CONFIG, "models": models}))
    done = snakemake(
        *targets,
        "--cores",
        "2",
        "--keep-going",
        "--configfile",
        "run.yaml",
        cwd=workdir,
        check=False,
        timeout=1800,
    )
    return workdir, done.stdout + done.stderr, names


def accuracy_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        return {r["metric"]: r for r in csv.DictReader(handle)}


@needs_cases
def test_cases_through_the_workflow(
    workflow_run: tuple[Path, str, dict[tuple[str, str], str]],
) -> None:
    workdir, console, names = workflow_run
    expected = {
        ("20", "config.yaml"): ("onnx", {"accuracy": 0.975}),
        ("21", "config.yaml"): (
            "torchscript",
            {"accuracy": 0.790, "label_agrees_with_scores": 1.0},
        ),
        ("21", "config_dict_input.yaml"): ("torchscript", {"accuracy": 0.930}),
        ("18", "config_explicit.yaml"): ("onnx", {"accuracy": 0.995, "recall": 0.926}),
    }
    for key, (fmt, metrics) in expected.items():
        path = workdir / f"results/accuracy/{names[key]}/{fmt}/cpu.csv"
        assert path.exists(), (key, console[-4000:])
        got = accuracy_rows(path)
        for metric, value in metrics.items():
            row = got[metric]
            for column in ("source", "exported", "served"):
                assert abs(float(row[column]) - value) < 0.0015, (key, metric, row)
    # Case 20: the description completed from the file; the served config lists the IO.
    minimal = names[("20", "config.yaml")]
    source = json.loads((workdir / f"results/checkpoint/{minimal}/source.json").read_text())
    assert io_of(source) == {
        "inputs": [("pixels", "float32", [-1, 64])],
        "outputs": [("scores", "float32", [-1, 10])],
    }
    # Case 21: the nested model's ONNX has its three outputs, named depth-first.
    nested = names[("21", "config.yaml")]
    io = json.loads((workdir / f"results/export/{nested}/onnx/io.json").read_text())
    assert io["status"] == "ok" and [t["name"] for t in io["outputs"]] == [
        "scores",
        "boxes",
        "label",
    ]
    # The refused: one sentence each from the first job, nothing further of theirs ran.
    for key, pattern in {
        ("18", "config.yaml"): r"error: .*sequence batcher.*START.*state_in -> state_out",
        ("21", "config_tuple_input.yaml"): r"error: .*'pair' of type Tuple\[Tensor, Tensor\]",
    }.items():
        log = (workdir / f"logs/checkpoint/{names[key]}.log").read_text()
        assert re.search(pattern, log), log[-2000:]
        assert "Traceback" not in log
        assert re.search(r"deploysnake \[python_describe_source\]: " + pattern, console)
        assert not (workdir / f"results/checkpoint/{names[key]}/source.json").exists()
    assert re.search(
        r"deploysnake \[python_describe_source\]: error: \S*not_onnx\.onnx cannot be read as an "
        r"ONNX file \(DecodeError",
        console,
    ), console[-3000:]


@needs_cases
def test_case20_served_config_loads_without_auto_complete(
    workflow_run: tuple[Path, str, dict[tuple[str, str], str]], tmp_path: Path
) -> None:
    """The served config.pbtxt is complete: the bundled Triton loads it with auto-complete off; the
    deploy (native) config built from the same io.json lists every tensor too."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from deploysnake import server
    from deploysnake.repository import write_repository

    workdir, _, names = workflow_run
    model = names[("20", "config.yaml")]
    repo = workdir / f"results/repository/{model}/onnx/cpu"
    binary = server.locate("bundled", "deploysnake")
    with server.TritonServer(
        repo,
        binary,
        tmp_path / "server.log",
        readiness_timeout_s=60,
        extra_args=["--disable-auto-complete-config"],
    ):
        pass  # strict readiness: every model loaded
    assert "successfully loaded" in (tmp_path / "server.log").read_text()
    triton = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["triton"]
    deployed = write_repository(
        model,
        workdir / f"results/export/{model}/onnx/model.onnx",
        workdir / f"results/export/{model}/onnx/io.json",
        {**triton, **RUN_CONFIG["triton"]},
        "cpu",
        "native",
        tmp_path / "deploy",
    )
    cfg = text_format.Parse((deployed / "config.pbtxt").read_text(), mc.ModelConfig())
    assert cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size > 0
    assert [(t.name, list(t.dims)) for t in cfg.input] == [("pixels", [64])]
    assert [(t.name, list(t.dims)) for t in cfg.output] == [("scores", [10])]
