"""Export, correctness and the Triton config on real exported files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deploysnake import checkpoint, correctness, repository
from deploysnake.errors import UserError
from deploysnake.plugins import Recipe
from deploysnake.runtime import ArtifactRuntime

from .conftest import PARAMS

TOLERANCE = {"batch_size": 32, "batches": 3, "default": {"atol": 1e-4, "rtol": 1e-3}, "outputs": {}}
TRITON = {"max_batch_size": 128, "dynamic_batching": {"enabled": True, "preferred_batch_sizes": [16, 64, 256], "max_queue_delay_us": 250}, "instances": {"cpu": 3}, "runtime_threads": 2}


def test_training_is_deterministic(recipe: Recipe, tmp_path: Path) -> None:
    # Same file name: torch.save records it inside the archive.
    a, b = tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt"
    checkpoint.make_checkpoint(recipe, PARAMS, None, a)
    checkpoint.make_checkpoint(recipe, PARAMS, None, b)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("fmt", ["torchscript_trace", "onnx"])
def test_export_describes_io_and_passes_correctness(fmt: str, recipe: Recipe, exported: dict[str, Path], tmp_path: Path) -> None:
    io = json.loads(exported[f"{fmt}/io"].read_text())
    assert io["inputs"] == [{"name": "image", "dtype": "float32", "dims": [-1, 1, 8, 8]}]
    assert io["outputs"] == [{"name": "logits", "dtype": "float32", "dims": [-1, 10]}]
    verdict = correctness.check(recipe, PARAMS, exported["checkpoint"], "digits", fmt, exported[fmt], exported[f"{fmt}/io"], TOLERANCE, tmp_path / "c.json")
    assert verdict["passed"], verdict
    assert verdict["samples"] == 96
    assert verdict["outputs"]["logits"]["max_abs_err"] < 1e-4
    # The batch dimension stays dynamic: a batch size never seen at export runs.
    out = ArtifactRuntime(exported[fmt], fmt, ["image"], ["logits"])({"image": np.zeros((7, 1, 8, 8), np.float32)})
    assert out["logits"].shape == (7, 10)


def test_too_tight_tolerance_fails_with_the_error(recipe: Recipe, exported: dict[str, Path], tmp_path: Path) -> None:
    tight = {**TOLERANCE, "default": {"atol": 0.0, "rtol": 0.0}}
    verdict = correctness.check(recipe, PARAMS, exported["checkpoint"], "digits", "onnx", exported["onnx"], exported["onnx/io"], tight, tmp_path / "c.json")
    assert not verdict["passed"]
    assert verdict["outputs"]["logits"]["max_abs_err"] > 0
    assert "logits: max abs err" in verdict["reason"] and "(atol 0)" in verdict["reason"]
    assert json.loads((tmp_path / "c.json").read_text())["passed"] is False


def test_checkpoint_errors_name_the_file(recipe: Recipe, exported: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match="checkpoint not found: .*missing.pt"):
        checkpoint.load_state(recipe, PARAMS, tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(exported["checkpoint"].read_bytes()[:200])
    with pytest.raises(UserError, match="cannot be read.*truncated"):
        checkpoint.load_state(recipe, PARAMS, truncated)
    other = tmp_path / "other.pt"
    torch.save(recipe.model.build_model({"channels": 4}).state_dict(), other)
    with pytest.raises(UserError, match="does not fit the recipe's model"):
        checkpoint.load_state(recipe, PARAMS, other)


@pytest.mark.parametrize("flavour", ["python", "native"])
def test_config_pbtxt_parses_back_with_what_was_asked(flavour: str, exported: dict[str, Path], tmp_path: Path) -> None:
    from tritonclient.grpc import model_config_pb2 as mc

    model_dir = repository.write_repository("digits", exported["onnx"], exported["onnx/io"], TRITON, "cpu", flavour, tmp_path / "repo")
    cfg = repository.read_config(model_dir / "config.pbtxt")
    assert cfg.name == "digits_onnx" == model_dir.name
    assert cfg.max_batch_size == 128
    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [("image", mc.TYPE_FP32, [1, 8, 8])]
    assert [(o.name, o.data_type, list(o.dims)) for o in cfg.output] == [("logits", mc.TYPE_FP32, [10])]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [16, 64]  # 256 > max_batch_size is dropped
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 250
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(3, mc.ModelInstanceGroup.KIND_CPU)]
    assert (model_dir / "1" / "model.onnx").read_bytes() == exported["onnx"].read_bytes()
    if flavour == "native":
        assert (cfg.platform, cfg.backend, cfg.default_model_filename) == ("onnxruntime_onnx", "", "model.onnx")
    else:
        assert cfg.backend == "python" and cfg.parameters["threads"].string_value == "2"
        assert (model_dir / "1" / "model.py").exists() and (model_dir / "1" / "runtime.py").exists()


def test_legacy_onnx_exporter_is_selectable(recipe: Recipe, exported: dict[str, Path], tmp_path: Path) -> None:
    from deploysnake import export

    artifact, io_json = tmp_path / "model.onnx", tmp_path / "io.json"
    export.export(recipe, PARAMS, exported["checkpoint"], "onnx", artifact, io_json, {"onnx_exporter": "legacy", "onnx_opset": 17})
    verdict = correctness.check(recipe, PARAMS, exported["checkpoint"], "digits", "onnx", artifact, io_json, TOLERANCE, tmp_path / "c.json")
    assert verdict["passed"]
    import onnx

    assert onnx.load(str(artifact)).opset_import[0].version == 17
