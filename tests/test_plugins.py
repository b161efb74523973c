"""The plugin contract on a model defined only here (tests/recipes/wine): it goes through, and each way
of breaking the contract gets an error naming the file and what to do, before any training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deploysnake import checkpoint, export
from deploysnake.errors import UserError
from deploysnake.frameworks import ModelSource
from deploysnake.plugins import check_contract, load_recipe

from .conftest import ROOT, snakemake

WINE = ROOT / "tests" / "recipes" / "wine"
PARAMS = {"seed": 0, "hidden": 8, "epochs": 20}


def broken_copy(tmp_path: Path, kind: str, old: str, new: str) -> Path:
    """A copy of the wine recipe with one edit in one plugin file (the folder's name keeps the module names apart)."""
    folder = tmp_path / f"wine_{kind}_{abs(hash((old, new))) % 10**6}"
    shutil.copytree(WINE, folder)
    path = folder / f"{kind}.py"
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))
    return folder


def test_the_test_model_goes_through_the_contract(tmp_path: Path) -> None:
    recipe = load_recipe(WINE)
    check_contract(recipe, PARAMS)
    checkpoint.make_checkpoint(recipe, PARAMS, None, tmp_path / "model.pt")
    export.export(
        ModelSource(recipe, PARAMS, tmp_path / "model.pt"),
        "onnx",
        tmp_path / "model.onnx",
        tmp_path / "io.json",
        {},
    )
    described = json.loads((tmp_path / "io.json").read_text())
    assert [t["name"] for t in described["outputs"]] == ["scores", "embedding"]
    assert described["status"] == "ok" and [t["dims"] for t in described["outputs"]] == [
        [-1, 3],
        [-1, 8],
    ]


@pytest.mark.parametrize(
    ("kind", "old", "new", "expected"),
    [
        (
            "model",
            "def build_model(",
            "def make_model(",
            r"model.py does not define build_model, required of a model plugin",
        ),
        ("dataloader", "def batches(", "def batch(", r"dataloader.py does not define batches"),
        ("metrics", "def compute(", "def score(", r"metrics.py does not define compute"),
        (
            "model",
            '    return WineMLP(int(params.get("hidden", 8)))',
            "    return [WineMLP(8)]",
            r"build_model\(\) must return a torch.nn.Module, got list",
        ),
        (
            "model",
            'OUTPUT_NAMES = ["scores", "embedding"]',
            'OUTPUT_NAMES = ["scores"]',
            r"the model returns 2 output\(s\), but OUTPUT_NAMES names 1: \['scores'\]",
        ),
        (
            "model",
            'INPUT_NAMES = ["features"]',
            'INPUT_NAMES = ["x"]',
            r"example_inputs\(\) must return a dict keyed by INPUT_NAMES \['x'\], got \['features'\]",
        ),
        (
            "model",
            'OUTPUT_NAMES = ["scores", "embedding"]',
            'OUTPUT_NAMES = ["scores", "scores"]',
            r"OUTPUT_NAMES must be a non-empty list of distinct tensor names",
        ),
        (
            "model",
            'return {"features": torch.zeros(batch_size, 13)}',
            'return {"feature": torch.zeros(batch_size, 13)}',
            r"got \['feature'\]",
        ),
        (
            "dataloader",
            '"inputs": {"features": features[part]}',
            '"inputs": {"x": features[part]}',
            r"dataloader.py: batches\(\) yields inputs \['x'\], but the model's INPUT_NAMES are \['features'\]",
        ),
        (
            "dataloader",
            '"labels": data.target',
            '"targets": data.target',
            r"batches\(\) must yield dicts with ids, inputs and labels, got \['ids', 'inputs', 'targets'\]",
        ),
        (
            "metrics",
            'return {"accuracy": float((outputs["scores"].argmax(axis=1) == labels).mean())}',
            "return [0.5]",
            r"metrics.py: compute\(\) must return a non-empty dict of metric name -> number",
        ),
    ],
)
def test_a_broken_plugin_is_named(
    tmp_path: Path, kind: str, old: str, new: str, expected: str
) -> None:
    folder = broken_copy(tmp_path, kind, old, new)
    with pytest.raises(UserError, match=expected):
        check_contract(load_recipe(folder), PARAMS)


def test_dynamic_axes_must_name_the_model_io(tmp_path: Path) -> None:
    folder = broken_copy(
        tmp_path,
        "model",
        'OUTPUT_NAMES = ["scores", "embedding"]\n',
        'OUTPUT_NAMES = ["scores", "embedding"]\nDYNAMIC_AXES = {"tokens": {1: "sequence"}}\n',
    )
    with pytest.raises(
        UserError,
        match=r"DYNAMIC_AXES entry 'tokens'.*must name an input or output \(\['embedding', 'features', 'scores'\]\)",
    ):
        check_contract(load_recipe(folder), PARAMS)


def test_the_workflow_stops_at_the_first_job_with_the_plugin_error(tmp_path: Path) -> None:
    folder = broken_copy(
        tmp_path,
        "dataloader",
        '"inputs": {"features": features[part]}',
        '"inputs": {"x": features[part]}',
    )
    config = {
        "models": {"wine": {"recipe": str(folder), "params": PARAMS}},
        "formats": ["onnx"],
        "devices": ["cpu"],
    }
    (tmp_path / "c.yaml").write_text(json.dumps(config))
    done = snakemake(
        "results/report.html",
        "--cores",
        "2",
        "--configfile",
        "c.yaml",
        cwd=tmp_path,
        check=False,
        timeout=600,
    )
    assert done.returncode != 0
    assert (
        "yields inputs ['x'], but the model's INPUT_NAMES are ['features']"
        in done.stdout + done.stderr
    )
    assert not (tmp_path / "results" / "checkpoint" / "wine" / "model.pt").exists()
