"""The aoti format (torch.export + AOTInductor, issue 34) on real files: case 06's encoder (int64 ids
and a bool mask, dynamic batch and sequence) compiled once by this machine's C++ compiler (about
1-3 minutes on the 2-core machine), then run, checked, put in a repository and described."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from google.protobuf import text_format

from deploysnake import checkpoint, correctness, export, sources
from deploysnake.errors import UserError
from deploysnake.frameworks import ModelSource, source_model
from deploysnake.plugins import Recipe, load_recipe, validation_batches
from deploysnake.report import load as report_load
from deploysnake.repository import read_config, write_repository
from deploysnake.runtime import ArtifactRuntime, canonical_strides

from .conftest import CASES, ROOT, needs_cases

PARAMS = {"dim": 16, "epochs": 1, "batch_size": 32, "seed": 0}
TOLERANCE = {"batch_size": 16, "batches": 2, "default": {"atol": 1e-4, "rtol": 1e-3}}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Case 06's recipe (a copy), its checkpoint, and its aoti export in aoti/{model.pt2,io.json}."""
    if not CASES.is_dir():
        pytest.skip(f"the shared cases are not at {CASES}")
    out = tmp_path_factory.mktemp("aoti")
    shutil.copytree(CASES / "06_bool_mask_int64_ids_dynamic", out / "recipe")
    recipe = load_recipe(out / "recipe")
    checkpoint.make_checkpoint(recipe, PARAMS, None, out / "model.pt")
    (out / "aoti").mkdir()
    export.export(
        ModelSource(recipe, PARAMS, out / "model.pt"),
        "aoti",
        out / "aoti/model.pt2",
        out / "aoti/io.json",
        {},
    )
    return out


@needs_cases
def test_aoti_package_keeps_dynamic_batch_and_sequence(compiled: Path) -> None:
    """io.json is read back from the package (batch and sequence -1, the bool mask kept bool), and
    the package answers the source's values at two batch sizes and two sequence lengths."""
    io = json.loads((compiled / "aoti/io.json").read_text())
    assert io["status"] == "ok", io
    assert io["artifact"] == "model.pt2" and io["build_seconds"] > 0
    assert [(t["name"], t["dtype"], t["dims"]) for t in io["inputs"]] == [
        ("input_ids", "int64", [-1, -1]),
        ("attention_mask", "bool", [-1, -1]),
    ]
    assert [(t["name"], t["dims"]) for t in io["outputs"]] == [
        ("token_logits", [-1, -1, 3]),
        ("sentence_logits", [-1, 2]),
    ]
    recipe = load_recipe(compiled / "recipe")
    runtime = ArtifactRuntime(
        compiled / "aoti/model.pt2", "aoti", recipe.input_names, recipe.output_names, threads=1
    )
    assert runtime.settings["num_threads"] == 1 and "AOTInductor" in runtime.describe()
    source = source_model("torch", recipe, PARAMS, compiled / "model.pt")
    seen = set()
    for size, batch in ((5, 0), (16, 1)):
        inputs = validation_batches(recipe, PARAMS, size, limit=2)[batch]["inputs"]
        seen.add(inputs["input_ids"].shape)
        got, want = runtime(inputs), source(inputs)
        for name in recipe.output_names:
            assert got[name].shape == want[name].shape, name
            np.testing.assert_allclose(got[name], want[name], atol=1e-4, rtol=1e-3, err_msg=name)
    assert len({shape[0] for shape in seen}) == 2 and len({shape[1] for shape in seen}) == 2, seen


def export_aoti(recipe: Recipe, params: dict[str, Any], folder: Path) -> None:
    """The recipe's checkpoint (folder/model.pt) and its aoti export (folder/model.pt2, io.json)."""
    checkpoint.make_checkpoint(recipe, params, None, folder / "model.pt")
    export.export(
        ModelSource(recipe, params, folder / "model.pt"),
        "aoti",
        folder / "model.pt2",
        folder / "io.json",
        {},
    )


def test_aoti_answers_a_batch_whose_size_1_axis_has_an_odd_stride(tmp_path: Path) -> None:
    """The digits recipe's batches are `images[:, None]` of a slice: shape (n, 1, 8, 8), strides
    (256, 4, 32, 4), which numpy and torch call contiguous. AOTInductor's code read the channel
    axis with that stride (logits off by up to 21.9, no error, every row wrong: `make bench`'s aoti
    failed correctness); the runtime hands it C-order strides."""
    recipe = load_recipe(ROOT / "recipes" / "digits")
    params = {"channels": 4, "epochs": 1, "seed": 0}
    export_aoti(recipe, params, tmp_path)
    inputs = validation_batches(recipe, params, 16, limit=1)[0]["inputs"]
    image = inputs["image"]
    assert image.strides != np.ascontiguousarray(image).copy().strides  # the odd stride is there
    got = ArtifactRuntime(tmp_path / "model.pt2", "aoti", ["image"], ["logits"])(inputs)["logits"]
    want = source_model("torch", recipe, params, tmp_path / "model.pt")(inputs)["logits"]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
    # the copy is made only where the strides are odd
    assert canonical_strides(image) is not image and canonical_strides(image).strides == (
        256,
        256,
        32,
        4,
    )
    plain = image.copy()
    assert canonical_strides(plain) is plain


@needs_cases
def test_aoti_correctness_verdict_carries_the_build_time(compiled: Path, tmp_path: Path) -> None:
    """The correctness stage checks the package like every format, and its verdict carries the
    export's build time, which the report's per-format table shows as `build s`."""
    recipe = load_recipe(compiled / "recipe")
    verdict = correctness.check(
        ModelSource(recipe, PARAMS, compiled / "model.pt"),
        "masked_encoder",
        "aoti",
        compiled / "aoti/model.pt2",
        compiled / "aoti/io.json",
        TOLERANCE,
        tmp_path / "masked_encoder/aoti.json",
    )
    assert verdict["passed"], verdict
    io = json.loads((compiled / "aoti/io.json").read_text())
    assert verdict["build_seconds"] == io["build_seconds"]
    _, per_format = report_load.correctness([tmp_path / "masked_encoder/aoti.json"])
    assert per_format.row(0, named=True)["build s"] == pytest.approx(io["build_seconds"])


@needs_cases
def test_aoti_repositories_use_the_bundled_runner(compiled: Path, tmp_path: Path) -> None:
    """Served: the in-process backend runs the package. Deployed (native repository): no Triton 2.51
    backend loads a .pt2, so the python backend runs deploysnake's runner with the package."""
    triton = {"max_batch_size": 16, "instances": {"cpu": 1}}
    served = write_repository(
        "enc",
        compiled / "aoti/model.pt2",
        compiled / "aoti/io.json",
        triton,
        "cpu",
        "inprocess",
        tmp_path / "served",
    )
    cfg = read_config(served / "config.pbtxt")
    assert cfg.backend == "deploysnake" and cfg.parameters["format"].string_value == "aoti"
    assert (served / "1/model.pt2").is_file() and (served / "1/runtime.py").is_file()
    deployed = write_repository(
        "enc",
        compiled / "aoti/model.pt2",
        compiled / "aoti/io.json",
        triton,
        "cpu",
        "native",
        tmp_path / "deploy",
        link=False,
    )
    cfg = read_config(deployed / "config.pbtxt")
    assert cfg.backend == "python" and not cfg.platform, text_format.MessageToString(cfg)
    assert cfg.parameters["artifact"].string_value == "model.pt2"
    assert sorted(p.name for p in (deployed / "1").iterdir()) == [
        "model.pt2",
        "model.py",
        "runtime.py",
    ]
    assert [list(t.dims) for t in cfg.input] == [[-1], [-1]]


def test_aoti_export_of_an_lstm_records_why_it_failed(tmp_path: Path) -> None:
    """torch.export (2.13) specializes an nn.LSTM's sequence length: the tagger's dynamic sequence
    cannot be kept, so its aoti export is a failed format with that reason (the others go on)."""
    recipe = load_recipe(ROOT / "recipes" / "tagger")
    params = {"epochs": 0, "seed": 0}
    export_aoti(recipe, params, tmp_path)
    io = json.loads((tmp_path / "io.json").read_text())
    assert io["status"] == "failed" and io["format"] == "aoti"
    assert "sequence" in io["error"] and "specialized" in io["error"], io["error"]
    assert (tmp_path / "model.pt2").read_bytes() == b""


# ------------------------------------------------------------------ a torch.export program as the source


class _Scorer(torch.nn.Module):
    """Two inputs (features and int64 ids), two outputs: a small model torch.export handles."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.linear = torch.nn.Linear(6 + 4, 3)

    def forward(self, features: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = torch.cat([features, self.embed(ids)], dim=1)
        return self.linear(hidden), hidden.sum(dim=1)


def save_program(path: Path) -> Path:
    """_Scorer exported with a dynamic batch and saved with torch.export.save at path."""
    torch.manual_seed(0)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(
        _Scorer().eval(),
        (torch.rand(4, 6), torch.zeros(4, dtype=torch.int64)),
        dynamic_shapes=({0: batch}, {0: batch}),
    )
    torch.export.save(program, str(path))
    return path


PROGRAM_SETTINGS = {"inputs": {"ids": {"low": 0, "high": 9}}, "outputs": ["scores", "total"]}


def test_exported_program_source_described_from_its_graph(tmp_path: Path) -> None:
    """IO from the graph signature: input names and dtypes, the batch dynamic, outputs named by
    `outputs`; the reference runs at two batch sizes, ONNX is converted from the program (dynamo)
    and answers the reference's values."""
    settings = {"exported_program": str(save_program(tmp_path / "model.pt2")), **PROGRAM_SETTINGS}
    doc = sources.write_description("scorer", settings, tmp_path / "source.json")
    assert doc["kind"] == "exported_program" and doc["format"] == "exported_program"
    assert [(t["name"], t["dtype"], t["dims"]) for t in doc["inputs"]] == [
        ("features", "float32", [-1, 6]),
        ("ids", "int64", [-1]),
    ]
    assert [(t["name"], t["dtype"], t["dims"]) for t in doc["outputs"]] == [
        ("scores", "float32", [-1, 3]),
        ("total", "float32", [-1]),
    ]
    io = export.export_from_source(
        "scorer", settings, tmp_path / "source.json", "onnx", tmp_path / "model.onnx",
        tmp_path / "io.json", {},
    )  # fmt: skip
    assert io["status"] == "ok" and io["build_seconds"] > 0, io
    data = sources.generate(doc, 5, seed=0)
    want = sources.source_runner(tmp_path / "source.json")(data)
    got = ArtifactRuntime(
        tmp_path / "model.onnx", "onnx", ["features", "ids"], ["scores", "total"]
    )(data)
    for name in ("scores", "total"):
        np.testing.assert_allclose(got[name], want[name], atol=1e-5, err_msg=name)


def _rewritten(source: Path, target: Path, change: dict[str, bytes]) -> Path:
    """A copy of a zip archive with the members whose names end in a key of `change` replaced."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            data = next((v for k, v in change.items() if name.endswith(k)), old.read(name))
            new.writestr(name, data)
        for key, value in change.items():
            if key.startswith("+"):
                new.writestr(f"{old.namelist()[0].split('/')[0]}/{key[1:]}", value)
    return target


def test_exported_program_sources_refused_in_one_sentence(tmp_path: Path) -> None:
    """A file that is no torch.export archive, an AOTInductor package, and archives that
    torch.export.load would unpickle without restriction (a pickled weight, an object constant):
    one sentence each, naming the file and what to do, before torch.export.load reads them."""
    good = save_program(tmp_path / "good.pt2")
    (tmp_path / "text.pt2").write_text("not a model\n")
    with zipfile.ZipFile(good) as archive:
        config_name = next(n for n in archive.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(archive.read(config_name))
    first = next(iter(config["config"]))
    config["config"][first]["use_pickle"] = True
    pickled = _rewritten(
        good, tmp_path / "pickled.pt2", {"model_weights_config.json": json.dumps(config).encode()}
    )
    obj = _rewritten(good, tmp_path / "obj.pt2", {"+data/constants/custom_obj_0": b"\x80\x04N."})
    package = tmp_path / "package.pt2"
    with zipfile.ZipFile(package, "w") as archive:  # an AOTInductor package's layout
        archive.writestr("model/data/aotinductor/model/x.wrapper_metadata.json", "{}")
    cases = {
        tmp_path / "text.pt2": "is not a torch.export archive",
        package: "without a models/*.json program (an AOTInductor package",
        pickled: f"stores {first!r} as a pickle",
        obj: "holds the object constant data/constants/custom_obj_0",
    }
    for path, said in cases.items():
        settings = {"exported_program": str(path), **PROGRAM_SETTINGS}
        with pytest.raises(UserError) as caught:
            sources.write_description("scorer", settings, tmp_path / "source.json")
        message = str(caught.value)
        assert said in message and str(path) in message, message
        assert message.count(". ") == 0 and "\n" not in message, message  # one sentence
    assert not (tmp_path / "source.json").exists()
