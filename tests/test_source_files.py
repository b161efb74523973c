"""The files a team hands over, whole, and nothing outside the model's folder (modelfiles, sources).

- Case 16 (../shared/cases/16_onnx_external_data/, `model.onnx` + `model.onnx.data` as torch's
  default exporter writes them) through one small workflow run: the artifacts load on their own, the
  onnx format is exact, served accuracy is the model's, the deploy archive unpacked elsewhere loads;
  a weights-only change plans the model's jobs again; the escaping variant is refused by the first
  job with its initializer and location, and nothing of it lands under results/.
- Unit tests, no workflow: each way a source can name a file outside its folder (an external-data
  location with `..`, an absolute one, one through a link; a Triton model directory's
  default_model_filename with `../`, a linked version folder, a linked config.pbtxt; a SavedModel
  folder holding a link), and the copies: side files travel, hard links inside results/, real files
  in the deploy copy, variants above protobuf's limit written with external data.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from deploysnake import modelfiles, repository, sources
from deploysnake.errors import UserError
from deploysnake.onnx_variants import convert
from deploysnake.sources import config_problems, rule_inputs, source_files

from .conftest import ROOT, snakemake

CASE = ROOT.parent / "shared" / "cases" / "16_onnx_external_data"
if not CASE.is_dir():  # a checkout outside the shared workspace
    CASE = Path("/work/shared/cases/16_onnx_external_data")
SECRET = "secret-token-of-another-model"
IN, OUT = 64, 32  # the test model's weight: 8 KiB, above the 1 KiB a side file takes


def linear_onnx(path: Path, location: str | None = None, seed: int = 0) -> np.ndarray:
    """x float32 [batch, IN] -> y = x @ w (w IN x OUT); with location, w's data in that side file
    (relative to path's folder; written there unless it leads elsewhere). Returns w."""
    w = np.random.default_rng(seed).standard_normal((IN, OUT)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", IN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", OUT])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    if location is None:
        onnx.save(model, str(path))
        return w
    tensor = model.graph.initializer[0]
    data = tensor.raw_data
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(data)))):
        tensor.external_data.add(key=key, value=value)
    onnx.save(model, str(path))
    side = path.parent / location
    if not Path(location).is_absolute() and ".." not in Path(location).parts:
        side.parent.mkdir(parents=True, exist_ok=True)
        side.write_bytes(data)
    return w


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


# ------------------------------------------------------------------ containment (unit tests)


@pytest.mark.parametrize(
    "location", ["../outside/w.bin", "sub/../../outside/w.bin", "/tmp/deploysnake-outside-w.bin"]
)
def test_an_external_data_location_leaving_the_folder_is_refused(
    tmp_path: Path, location: str
) -> None:
    outside = tmp_path / "outside" / "w.bin"
    outside.parent.mkdir()
    outside.write_bytes(b"\0" * IN * OUT * 4)
    model = tmp_path / "model" / "model.onnx"
    linear_onnx(model, location)
    with pytest.raises(UserError) as refused:
        source_files({"onnx": str(model)})
    message = str(refused.value)
    assert "initializer 'w'" in message and repr(location) in message
    assert "outside the model's folder" in message and "relative name" in message
    assert rule_inputs({"onnx": str(model)}) == [str(model)]  # the outside file is no input
    with pytest.raises(UserError, match="initializer 'w'"):
        sources.describe({"onnx": str(model)}, "escape")  # the model's first job refuses it


def test_an_external_data_file_that_links_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "w.bin"
    outside.parent.mkdir()
    outside.write_bytes(b"\0" * IN * OUT * 4)
    model = tmp_path / "model" / "model.onnx"
    linear_onnx(model, "w.bin")
    (model.parent / "w.bin").unlink()
    (model.parent / "w.bin").symlink_to(outside)
    with pytest.raises(UserError, match="symbolic link leading out of the folder"):
        source_files({"onnx": str(model)})


def test_side_files_are_inputs_and_hashed(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    linear_onnx(model, "model.onnx.data")
    assert rule_inputs({"onnx": str(model)}) == [str(model), str(tmp_path / "model.onnx.data")]
    files = source_files({"onnx": str(model)})
    before = modelfiles.sha256(files, tmp_path)
    linear_onnx(model, "model.onnx.data", seed=1)  # the same graph bytes, other weights
    assert modelfiles.sha256(source_files({"onnx": str(model)}), tmp_path) != before


def triton_dir(folder: Path, default_model_filename: str = "") -> Path:
    """A native onnxruntime model directory: config.pbtxt and 1/model.onnx (external data)."""
    linear_onnx(folder / "1" / "model.onnx", "model.onnx.data")
    lines = ['platform: "onnxruntime_onnx"', "max_batch_size: 8"]
    if default_model_filename:
        lines.append(f'default_model_filename: "{default_model_filename}"')
    (folder / "config.pbtxt").write_text("\n".join(lines) + "\n")
    return folder


def test_a_triton_model_directory_serves_its_version_folder_whole(tmp_path: Path) -> None:
    folder = triton_dir(tmp_path / "dir")
    settings = {"triton_model": str(folder)}
    assert config_problems("m", settings, tmp_path) == []
    assert [p.name for p in source_files(settings)] == [
        "config.pbtxt",
        "model.onnx",
        "model.onnx.data",
    ]


def test_a_default_model_filename_leaving_the_version_folder_is_refused(tmp_path: Path) -> None:
    linear_onnx(tmp_path / "other" / "model.onnx")
    folder = triton_dir(tmp_path / "repo" / "m", "../../other/model.onnx")
    problems = config_problems("m", {"triton_model": str(folder)}, tmp_path)
    assert len(problems) == 1
    assert "default_model_filename '../../other/model.onnx'" in problems[0]
    assert "outside the version folder" in problems[0]


def test_a_linked_version_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = triton_dir(tmp_path / "elsewhere")
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copyfile(elsewhere / "config.pbtxt", folder / "config.pbtxt")
    (folder / "1").symlink_to(elsewhere / "1", target_is_directory=True)
    problems = config_problems("m", {"triton_model": str(folder)}, tmp_path)
    assert len(problems) == 1 and f"{folder / '1'} is a symbolic link" in problems[0]
    assert "outside the model directory" in problems[0]


def test_a_linked_config_is_refused_unread(tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere.pbtxt"
    secret.write_text(f'name: "{SECRET}"\nplatform: "onnxruntime_onnx"\nnot valid {SECRET}\n')
    folder = tmp_path / "m"
    linear_onnx(folder / "1" / "model.onnx")
    (folder / "config.pbtxt").symlink_to(secret)
    problems = config_problems("m", {"triton_model": str(folder)}, tmp_path)
    assert len(problems) == 1 and "config.pbtxt is a symbolic link" in problems[0]
    assert SECRET not in problems[0]


def test_a_savedmodel_holding_a_link_outside_is_refused_and_never_copied(tmp_path: Path) -> None:
    """A SavedModel-shaped folder (saved_model.pb, variables/, assets/) whose asset links elsewhere:
    refused when listed (the first job and config validation) and by the copy into results/."""
    secret = tmp_path / "elsewhere" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text(SECRET)
    saved = tmp_path / "saved"
    (saved / "variables").mkdir(parents=True)
    (saved / "assets").mkdir()
    (saved / "saved_model.pb").write_bytes(b"graph")
    (saved / "variables" / "variables.index").write_bytes(b"index")
    (saved / "assets" / "vocab.txt").symlink_to(secret)
    with pytest.raises(UserError, match="vocab.txt is a symbolic link") as refused:
        source_files({"savedmodel": str(saved)})
    assert SECRET not in str(refused.value)
    problems = config_problems("m", {"savedmodel": str(saved)}, tmp_path)
    assert any("vocab.txt is a symbolic link" in p for p in problems)
    target = tmp_path / "results" / "model.savedmodel"
    with pytest.raises(UserError, match="outside the model's folder"):
        modelfiles.copy_artifact(saved, "savedmodel", target, link=False)
    assert not any(SECRET in p.read_text() for p in tmp_path.joinpath("results").rglob("*.txt"))
    # A link inside the folder is kept; the copy holds its bytes as a real file.
    (saved / "assets" / "vocab.txt").unlink()
    (saved / "assets" / "real.txt").write_text("words")
    (saved / "assets" / "vocab.txt").symlink_to("real.txt")
    modelfiles.copy_artifact(saved, "savedmodel", target, link=False)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == [
        "assets",
        "assets/real.txt",
        "assets/vocab.txt",
        "saved_model.pb",
        "variables",
        "variables/variables.index",
    ]
    assert not (target / "assets" / "vocab.txt").is_symlink()


# ------------------------------------------------------------------ copies (unit tests)


@pytest.mark.parametrize("limit", [None, 16])
def test_the_onnx_artifact_of_external_data_holds_its_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int | None
) -> None:
    """The source's first job and its onnx artifact: below protobuf's limit one self-contained
    file, above it the graph and model.onnx.data beside it; either loads from another folder."""
    from deploysnake.export import export_from_source

    if limit is not None:
        monkeypatch.setattr(modelfiles, "PROTOBUF_LIMIT", limit)
    given = tmp_path / "given" / "model.onnx"
    w = linear_onnx(given, "weights/w.bin")
    settings = {"onnx": str(given)}
    doc = sources.write_description("m", settings, tmp_path / "source.json")
    assert doc["sha256"] == modelfiles.sha256(source_files(settings), given.parent)
    artifact = tmp_path / "export" / "model.onnx"
    io = export_from_source(
        "m", settings, tmp_path / "source.json", "onnx", artifact, tmp_path / "io.json", {}
    )
    assert io["status"] == "ok"
    names = sorted(p.name for p in artifact.parent.iterdir())
    assert names == (["model.onnx"] if limit is None else ["model.onnx", "model.onnx.data"])
    moved = tmp_path / "moved"
    modelfiles.copy_artifact(artifact, "onnx", moved / "model.onnx", link=False)
    x = np.full((2, IN), 0.1, np.float32)
    np.testing.assert_array_equal(run_onnx(moved / "model.onnx", x), run_onnx(given, x))
    np.testing.assert_allclose(run_onnx(moved / "model.onnx", x), x @ w, rtol=1e-5)


def test_side_files_travel_linked_in_results_and_copied_for_deploy(tmp_path: Path) -> None:
    artifact = tmp_path / "export" / "model.onnx"
    w = linear_onnx(artifact, "model.onnx.data")
    io = {
        "format": "onnx",
        "artifact": "model.onnx",
        "inputs": [{"name": "x", "dtype": "float32", "dims": [-1, IN]}],
        "outputs": [{"name": "y", "dtype": "float32", "dims": [-1, OUT]}],
    }
    (tmp_path / "export" / "io.json").write_text(json.dumps(io))
    triton = {"max_batch_size": 8, "instances": {"cpu": 1}}
    x = np.full((2, IN), 0.1, np.float32)
    for link in (True, False):
        out = repository.write_repository(
            "m",
            artifact,
            tmp_path / "export" / "io.json",
            triton,
            "cpu",
            "native",
            tmp_path / f"repo_{link}",
            link=link,
        )
        side = out / "1" / "model.onnx.data"
        assert side.is_file() and not side.is_symlink()
        same = side.stat().st_ino == (artifact.parent / "model.onnx.data").stat().st_ino
        assert same == link
        moved = tmp_path / f"moved_{link}"
        shutil.copytree(out / "1", moved)  # loads anywhere: no path of the machine inside
        np.testing.assert_array_equal(run_onnx(moved / "model.onnx", x), x @ w)


def test_variants_above_the_protobuf_limit_keep_external_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the limit lowered to a few bytes, every ONNX Runtime variant is written as the graph plus
    <variant>.data (a relative location) and loads from another folder; at the real limit the same
    model's variants are single files."""
    source = tmp_path / "export" / "onnx" / "model.onnx"
    w = linear_onnx(source, "model.onnx.data")
    io = {
        "format": "onnx",
        "artifact": "model.onnx",
        "status": "ok",
        "inputs": [{"name": "x", "dtype": "float32", "dims": [-1, IN]}],
        "outputs": [{"name": "y", "dtype": "float32", "dims": [-1, OUT]}],
    }
    (source.parent / "io.json").write_text(json.dumps(io))

    class Loader:
        @staticmethod
        def batches(split: str, batch_size: int, params: dict[str, Any]) -> Any:
            rng = np.random.default_rng(0)
            for _ in range(2):
                yield {"inputs": {"x": rng.uniform(0, 0.2, (batch_size, IN)).astype(np.float32)}}

    recipe: Any = type("R", (), {"dataloader": Loader})()
    x = np.full((2, IN), 0.1, np.float32)
    for limit, external in ((modelfiles.PROTOBUF_LIMIT, False), (16, True)):
        monkeypatch.setattr(modelfiles, "PROTOBUF_LIMIT", limit)
        for fmt in ("onnx_optimized", "onnx_fp16", "onnx_int8"):
            target = tmp_path / f"export_{limit}" / fmt / "model.onnx"
            got = convert(
                fmt, source, source.parent / "io.json", target, target.parent / "io.json",
                recipe, {}, {"calibration_batches": 2, "calibration_batch_size": 4},
            )  # fmt: skip
            assert got["status"] == "ok", got
            files = modelfiles.artifact_files(target, fmt)
            assert (len(files) > 1) == external, (fmt, files)
            moved = tmp_path / f"moved_{limit}_{fmt}"
            modelfiles.copy_artifact(target, fmt, moved / "model.onnx", link=False)
            tol = 0.5 if fmt == "onnx_int8" else 1e-2
            np.testing.assert_allclose(run_onnx(moved / "model.onnx", x), x @ w, atol=tol)


# ------------------------------------------------------------------ case 16 through the workflow

TINY = {
    "correctness": {"batches": 2},
    "triton": {"max_batch_size": 64, "readiness_timeout_s": 120},
}


def case_config(name: str, onnx_path: str) -> dict[str, Any]:
    config = yaml.safe_load((CASE / "config.yaml").read_text())
    config["models"] = {
        name: {
            "onnx": onnx_path,
            "dataloader": "case16/dataloader.py",
            "metrics": "case16/metrics.py",
        }
    }
    for key, value in copy.deepcopy(TINY).items():
        config[key] = {**config[key], **value}
    return config


TARGETS = [
    "results/correctness/ext_digits/verdicts.json",
    "results/accuracy/ext_digits/onnx/cpu.csv",
    "results/deploy/cpu.tar.gz",
]


def make_model(workdir: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, str(workdir / "case16" / "make_model.py"), *args],
        check=True,
        capture_output=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def case16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (CASE / "make_model.py").is_file():
        pytest.skip(f"case 16 is not here ({CASE})")
    workdir = tmp_path_factory.mktemp("case16")
    shutil.copytree(
        CASE, workdir / "case16", ignore=shutil.ignore_patterns("model.onnx*", "escape*")
    )
    make_model(workdir)
    (workdir / "case.yaml").write_text(
        yaml.safe_dump(case_config("ext_digits", "case16/model.onnx"))
    )
    snakemake(*TARGETS, "--cores", "2", "--configfile", "case.yaml", cwd=workdir, timeout=1800)
    return workdir


@pytest.mark.e2e
def test_case16_every_artifact_holds_its_weights(case16: Path) -> None:
    results = case16 / "results"
    verdicts = json.loads((results / "correctness/ext_digits/verdicts.json").read_text())
    formats = ["onnx", "onnx_optimized", "onnx_fp16", "onnx_int8"]
    for fmt in formats:
        verdict = json.loads((results / f"correctness/ext_digits/{fmt}.json").read_text())
        assert "external data" not in json.dumps(verdict).lower(), verdict
        if fmt != "onnx_int8":
            assert fmt in json.dumps(verdicts), verdicts
        # Each artifact loads on its own, from another folder.
        moved = case16 / "moved" / fmt
        modelfiles.copy_artifact(results / f"export/ext_digits/{fmt}/model.onnx", fmt,
                                 moved / "model.onnx", link=False)  # fmt: skip
        ort.InferenceSession(str(moved / "model.onnx"), providers=["CPUExecutionProvider"])
    exact = json.loads((results / "correctness/ext_digits/onnx.json").read_text())
    assert max(float(v) for v in _values(exact, "max_abs_err")) == 0.0, exact
    with open(results / "accuracy/ext_digits/onnx/cpu.csv", newline="") as handle:
        (row,) = [r for r in csv.DictReader(handle) if r["metric"] == "accuracy"]
    assert row["status"] == "ok", row
    assert [round(float(row[k]), 3) for k in ("source", "exported", "served")] == [0.975] * 3
    # The served repository's files are hard links of the export's, not copies.
    exported = results / "export/ext_digits/onnx/model.onnx"
    served = results / "repository/ext_digits/onnx/cpu/ext_digits_onnx/1" / exported.name
    assert served.stat().st_ino == exported.stat().st_ino
    # The deploy archive holds real files; unpacked elsewhere, the model loads.
    with tarfile.open(results / "deploy/cpu.tar.gz") as tar:
        members = tar.getmembers()
        assert all(m.isfile() or m.isdir() for m in members)
        tar.extractall(case16 / "unpacked", filter="data")
    unpacked = case16 / "unpacked/cpu/ext_digits_onnx/1/model.onnx"
    ort.InferenceSession(str(unpacked), providers=["CPUExecutionProvider"])
    # No path of the machine in any artifact.
    for path in (results / "export").rglob("*"):
        if path.is_file():
            assert str(case16).encode() not in path.read_bytes(), path


def _values(doc: Any, key: str) -> list[Any]:
    """Every value under `key` anywhere in a JSON document."""
    if isinstance(doc, dict):
        return [v for k, v in doc.items() if k == key] + [
            x for v in doc.values() for x in _values(v, key)
        ]
    if isinstance(doc, list):
        return [x for v in doc for x in _values(v, key)]
    return []


@pytest.mark.e2e
def test_case16_new_weights_plan_the_models_jobs_again(case16: Path) -> None:
    dry = snakemake(*TARGETS, "-n", "--configfile", "case.yaml", cwd=case16)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    graph = case16 / "case16" / "model.onnx"
    before, stamp = graph.read_bytes(), graph.stat()
    make_model(case16, "--seed", "1")  # other weights: model.onnx.data changes
    assert graph.read_bytes() == before
    os.utime(graph, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # the graph as it was: untouched
    dry = snakemake(*TARGETS, "-n", "--configfile", "case.yaml", cwd=case16)
    assert "python_describe_source" in dry.stdout, dry.stdout[-3000:]
    assert "onnx_copy_source" in dry.stdout and "triton_write_deploy" in dry.stdout


@pytest.mark.e2e
def test_case16_weights_outside_the_folder_are_refused_in_the_first_job(case16: Path) -> None:
    make_model(case16)  # writes escape/model.onnx and escape_weights/weights.bin too
    (case16 / "outside.yaml").write_text(
        yaml.safe_dump(case_config("ext_escape", "case16/escape/model.onnx"))
    )
    done = snakemake(
        "results/export/ext_escape/onnx/io.json",
        "--cores",
        "1",
        "--configfile",
        "outside.yaml",
        cwd=case16,
        check=False,
    )
    assert done.returncode != 0
    log = (case16 / "logs/checkpoint/ext_escape.log").read_text()
    assert "initializer '" in log and "'../escape_weights/weights.bin'" in log, log[-2000:]
    assert "outside the model's folder" in log and "Traceback" not in log
    assert not list((case16 / "results").rglob("weights.bin"))
    assert not (case16 / "results/export/ext_escape").exists()
