"""Batch axes, served dims and joins (shapes.py), the config they give (repository.build_config), and
exports that match names by name (export.py) on a real model with punctuated names and dict outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from deploysnake import checkpoint, export, shapes
from deploysnake.errors import UserError
from deploysnake.frameworks import ModelSource
from deploysnake.plugins import load_recipe
from deploysnake.repository import build_config
from deploysnake.runtime import ArtifactRuntime

from .conftest import ROOT


@pytest.mark.parametrize(
    ("probed", "axis"),
    [
        ([[3, 8], [5, 8]], 0),
        ([[3], [5]], 0),
        ([[20, 3, 4], [20, 5, 4]], 1),  # time-major
        ([[3], [3]], None),  # a per-call summary
        ([[], []], None),  # a scalar
        ([[3, 3], [5, 5]], 0),  # the first axis that follows the batch
        ([[9], [15]], None),  # flattened: changes, but is not the batch
    ],
)
def test_find_batch_axis(probed: list[list[int]], axis: int | None) -> None:
    assert shapes.find_batch_axis(probed) == axis


def test_full_dims_marks_batch_dynamic_and_varying_axes() -> None:
    assert shapes.full_dims([20, 4, 4], [[20, 3, 4], [20, 5, 4]], 1, {}) == [20, -1, 4]
    assert shapes.full_dims([4, 12, 5], [[3, 7, 5], [5, 7, 5]], 0, {1: "sequence"}) == [-1, -1, 5]
    assert shapes.full_dims([3], [[3], [3]], None, {}) == [3]


def test_check_batchable_names_each_tensor_and_the_fix() -> None:
    io = {
        "inputs": [{"name": "x", "dims": [-1, 4], "batch_axis": 0}],
        "outputs": [
            {"name": "log_probs", "dims": [20, -1, 4], "batch_axis": 1},
            {"name": "temperature", "dims": [], "batch_axis": None},
        ],
    }
    with pytest.raises(UserError, match=r"output 'temperature' is a scalar .*Triton serves no 0-d"):
        shapes.check_batchable(io, 0)  # unbatched: time-major is fine, a scalar is not
    shapes.check_batchable({"inputs": io["inputs"], "outputs": io["outputs"][:1]}, 0)
    probed = {"log_probs": [[20, 3, 4], [20, 5, 4]], "temperature": [[], []]}
    with pytest.raises(UserError) as err:
        shapes.check_batchable(io, 8, probed)
    text = str(err.value)
    assert "output 'log_probs' carries the batch on axis 1" in text
    assert "[20, 3, 4] at batch 3 and [20, 5, 4] at batch 5" in text and "transpose(0, 1)" in text
    assert "output 'temperature' has no batch axis" in text and "triton.max_batch_size: 0" in text
    assert "'x'" not in text


def test_served_shapes_round_trip() -> None:
    rank1 = {"name": "p", "dims": [-1], "batch_axis": 0}
    scalar = {"name": "t", "dims": [], "batch_axis": None}
    assert shapes.served_dims(rank1, 8) == ([1], [])
    assert shapes.served_dims(rank1, 0) == ([-1], None)
    assert shapes.served_dims(scalar, 0) == ([1], [])
    assert shapes.served_dims({"dims": [-1, 3]}, 8) == ([3], None)
    values = np.arange(5, dtype=np.float32)
    assert shapes.to_served(values, rank1, 8).shape == (5, 1)
    assert shapes.from_served(values.reshape(5, 1), rank1, 8).shape == (5,)
    assert shapes.from_served(np.array([0.5]), scalar, 0).shape == ()
    assert shapes.to_served(np.array(0.5), scalar, 0).shape == (1,)


def test_join_along_each_batch_axis() -> None:
    a, b = np.ones((20, 2, 4)), np.zeros((20, 3, 4))
    assert shapes.join([a, b], 1).shape == (20, 5, 4)
    assert shapes.join([np.float32(0.5), np.float32(0.5)], None).shape == (2,)
    assert shapes.join([np.ones(3), np.ones(3)], None).shape == (2, 3)
    padded = shapes.join([np.ones((2, 3)), np.ones((1, 5))], 0, fill=0)
    assert padded.shape == (3, 5) and padded[0, 4] == 0
    assert (
        "batch_axis" not in {"name": "x"} and shapes.batch_axis({"name": "x"}) == 0
    )  # old io.json


def test_build_config_rank1_and_unbatched_dims() -> None:
    io = {
        "format": "onnx",
        "artifact": "model.onnx",
        "inputs": [{"name": "a.b:0", "dtype": "float32", "dims": [-1, 10], "batch_axis": 0}],
        "outputs": [{"name": "score/x-1", "dtype": "float32", "dims": [-1], "batch_axis": 0}],
    }
    triton = {"max_batch_size": 8, "instances": {}, "dynamic_batching": {"enabled": True}}
    batched = build_config("m.v1-x_onnx", io, triton, "cpu", "native")
    output = batched.output[0]
    assert list(output.dims) == [1] and output.HasField("reshape") and not output.reshape.shape
    assert batched.HasField("dynamic_batching")
    unbatched = build_config("m", io, {**triton, "max_batch_size": 0}, "cpu", "native")
    assert list(unbatched.input[0].dims) == [-1, 10] and list(unbatched.output[0].dims) == [-1]
    assert not unbatched.output[0].HasField("reshape") and not unbatched.HasField(
        "dynamic_batching"
    )
    text = text_format.MessageToString(batched)
    assert 'name: "a.b:0"' in text and 'name: "m.v1-x_onnx"' in text
    time_major = {**io, "outputs": [{**io["outputs"][0], "dims": [20, -1], "batch_axis": 1}]}
    with pytest.raises(UserError, match="'score/x-1' carries the batch on axis 1"):
        build_config("m", time_major, triton, "cpu", "native")


@pytest.fixture(scope="module")
def names_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The names recipe (untrained: epochs 0) exported to every torch format."""
    out = tmp_path_factory.mktemp("names_export")
    recipe = load_recipe(ROOT / "tests" / "recipes" / "names")
    params = {"epochs": 0, "seed": 0}
    checkpoint.make_checkpoint(recipe, params, None, out / "model.pt")
    for fmt, name in (
        ("torchscript_trace", "trace.pt"),
        ("torchscript_script", "script.pt"),
        ("onnx", "model.onnx"),
    ):
        export.export(
            ModelSource(recipe, params, out / "model.pt"),
            fmt,
            out / name,
            out / f"{fmt}.json",
            {"batched": True},
        )
    return out


@pytest.mark.parametrize(
    ("fmt", "artifact"),
    [
        ("torchscript_trace", "trace.pt"),
        ("torchscript_script", "script.pt"),
        ("onnx", "model.onnx"),
    ],
)
def test_dict_outputs_matched_by_name_in_every_format(
    names_export: Path, fmt: str, artifact: str
) -> None:
    """The model returns {"emb/out-1", "score:0"}, OUTPUT_NAMES lists score:0 first: io.json, the
    artifact's outputs and the source model's agree name by name."""
    recipe = load_recipe(ROOT / "tests" / "recipes" / "names")
    io = json.loads((names_export / f"{fmt}.json").read_text())
    assert io["status"] == "ok", io
    assert [t["name"] for t in io["outputs"]] == ["score:0", "emb/out-1"]
    assert {t["name"]: t["dims"] for t in io["outputs"]} == {"score:0": [-1], "emb/out-1": [-1, 8]}
    assert {t["name"]: t["dims"] for t in io["inputs"]} == {
        "feat.in:0": [-1, 6],
        "tok/ids-1": [-1, -1],
    }
    batch = next(recipe.dataloader.batches("validation", 8, {"seed": 0}))
    got = ArtifactRuntime(names_export / artifact, fmt, recipe.input_names, recipe.output_names)(
        batch["inputs"]
    )
    from deploysnake.frameworks import source_model

    want = source_model("torch", recipe, {"epochs": 0, "seed": 0}, names_export / "model.pt")(
        batch["inputs"]
    )
    for name in recipe.output_names:
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], atol=1e-5, err_msg=name)


def test_exported_names_checked_by_name() -> None:
    recipe = load_recipe(ROOT / "tests" / "recipes" / "names")
    io = {
        "inputs": [{"name": "tok/ids-1"}, {"name": "feat.in:0"}],
        "outputs": [{"name": "emb/out-1"}, {"name": "score:0"}],
    }
    ordered = export.in_recipe_order(io, recipe, "onnx")
    assert [t["name"] for t in ordered["inputs"]] == recipe.input_names
    renamed = {"inputs": [{"name": "tok/ids-1"}, {"name": "feat.in:0.1"}], "outputs": io["outputs"]}
    with pytest.raises(UserError, match=r"renamed 'feat.in:0' became 'feat.in:0.1'"):
        export.in_recipe_order(renamed, recipe, "onnx")
