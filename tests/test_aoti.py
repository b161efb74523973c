"""The aoti format (torch.export + AOTInductor, issue 34) on real files: case 06's encoder (int64 ids
and a bool mask, dynamic batch and sequence) compiled once by this machine's C++ compiler (about
1-3 minutes on the 2-core machine), then run, checked, put in a repository and described."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from deploysnake import checkpoint, correctness, export, report
from deploysnake.frameworks import source_model
from deploysnake.plugins import load_recipe, validation_batches
from deploysnake.repository import read_config, write_repository
from deploysnake.runtime import ArtifactRuntime

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
        recipe, PARAMS, out / "model.pt", "aoti", out / "aoti/model.pt2", out / "aoti/io.json", {}
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


@needs_cases
def test_aoti_correctness_verdict_carries_the_build_time(compiled: Path, tmp_path: Path) -> None:
    """The correctness stage checks the package like every format, and its verdict carries the
    export's build time, which the report's per-format table shows as `build s`."""
    recipe = load_recipe(compiled / "recipe")
    verdict = correctness.check(
        recipe,
        PARAMS,
        compiled / "model.pt",
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
    _, per_format = report._load_correctness([tmp_path / "masked_encoder/aoti.json"])
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
    checkpoint.make_checkpoint(recipe, params, None, tmp_path / "model.pt")
    export.export(
        recipe,
        params,
        tmp_path / "model.pt",
        "aoti",
        tmp_path / "model.pt2",
        tmp_path / "io.json",
        {},
    )
    io = json.loads((tmp_path / "io.json").read_text())
    assert io["status"] == "failed" and io["format"] == "aoti"
    assert "sequence" in io["error"] and "specialized" in io["error"], io["error"]
    assert (tmp_path / "model.pt2").read_bytes() == b""
