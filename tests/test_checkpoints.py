"""Checkpoints as training code writes them (issue 30 item 5): real files saved with torch.save in the
containers and with the key prefixes people hand over, loaded into the digits recipe's model (or
refused with what was found and what to pass). Weights only: no pickled code runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from deploysnake import frameworks
from deploysnake.errors import UserError
from deploysnake.plugins import Recipe

from .conftest import PARAMS


@pytest.fixture(scope="module")
def weights(recipe: Recipe) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    model = recipe.model.build_model(PARAMS)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # not the freshly built values: a load must be seen
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> bool:
    state = model.state_dict()
    return set(state) == set(weights) and all(torch.equal(state[k], weights[k]) for k in weights)


def _prefixed(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in weights.items()}


@pytest.mark.parametrize(
    "container",
    [
        "plain",
        "state_dict",
        "model",
        "model_state_dict+optimizer",
        "dataparallel",
        "compiled",
        "ddp+compiled in a training dict",
    ],
)
def test_training_containers_load(
    recipe: Recipe, weights: dict[str, torch.Tensor], tmp_path: Path, container: str
) -> None:
    model = recipe.model.build_model(PARAMS)
    optimizer = torch.optim.Adam(model.parameters())
    saved = {
        "plain": weights,
        "state_dict": {"state_dict": weights, "epoch": 3},
        "model": {"model": weights, "args": {"lr": 0.1}},
        "model_state_dict+optimizer": {
            "epoch": 7,
            "model_state_dict": weights,
            "optimizer_state_dict": optimizer.state_dict(),
            "loss": 0.25,
        },
        "dataparallel": _prefixed(weights, "module."),
        "compiled": _prefixed(weights, "_orig_mod."),
        "ddp+compiled in a training dict": {
            "model": _prefixed(weights, "module._orig_mod."),
            "optimizer": optimizer.state_dict(),
        },
    }[container]
    path = tmp_path / "checkpoint.pt"
    torch.save(saved, path)
    loaded = frameworks.load_state(recipe, PARAMS, path)
    assert _same(loaded, weights)


def test_gpu_saved_tensors_load_on_cpu(
    recipe: Recipe, weights: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    """A file saved from CUDA tensors records the device; torch.load(map_location="cpu") reads it on a
    machine without one. Without a GPU here the file is written with its storages' location
    rewritten to cuda:0, as a GPU machine's torch.save writes it."""
    path = tmp_path / "gpu.pt"
    torch.save({"state_dict": weights}, path)
    import zipfile

    with zipfile.ZipFile(path) as zin:
        entries = {name: zin.read(name) for name in zin.namelist()}
    pickled = next(name for name in entries if name.endswith("data.pkl"))
    assert b"cpu" in entries[pickled]
    entries[pickled] = entries[pickled].replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
    assert b"cuda:0" in entries[pickled]
    gpu = tmp_path / "gpu_saved.pt"
    with zipfile.ZipFile(gpu, "w") as zout:
        for name, data in entries.items():
            zout.writestr(name, data)
    with pytest.raises(RuntimeError, match="CUDA"):  # what a plain torch.load does here
        torch.load(gpu, weights_only=True)
    assert _same(frameworks.load_state(recipe, PARAMS, gpu), weights)


def test_unfitting_containers_are_refused_with_what_was_found(
    recipe: Recipe, weights: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.pt"
    renamed = {"backbone." + k: v for k, v in weights.items()}
    torch.save({"model": renamed, "epoch": 1}, wrong)
    with pytest.raises(UserError) as info:
        frameworks.load_state(recipe, PARAMS, wrong)
    message = str(info.value)
    assert "top-level keys ['epoch', 'model']" in message, message
    first = next(iter(weights))
    assert repr(first) in message and repr("backbone." + first) in message, message
    assert "torch.save(model.state_dict(), path)" in message

    empty = tmp_path / "metrics.pt"
    torch.save({"epoch": 3, "history": [0.5, 0.25]}, empty)
    with pytest.raises(
        UserError, match=r"no dict of tensors \(top-level keys: \['epoch', 'history'\]\)"
    ):
        frameworks.load_state(recipe, PARAMS, empty)

    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict": weights, "args": argparse.Namespace(lr=0.1)}, pickled)
    with pytest.raises(
        UserError, match="does not unpickle.*torch.save\\(model.state_dict\\(\\), path\\)"
    ):
        frameworks.load_state(recipe, PARAMS, pickled)
