"""Load a recipe's plugins (model.py, dataloader.py, metrics.py) and check they meet the contract."""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import UserError
from .trust import time_limit, timeouts

# What each plugin file must define; see README "Deploy your own model".
CONTRACT: dict[str, tuple[str, ...]] = {
    "model": ("INPUT_NAMES", "OUTPUT_NAMES", "build_model", "example_inputs"),
    "dataloader": ("batches",),
    "metrics": ("compute",),
}


@dataclass(frozen=True)
class Recipe:
    folder: Path
    model: ModuleType
    dataloader: ModuleType
    metrics: ModuleType

    @property
    def input_names(self) -> list[str]:
        return list(self.model.INPUT_NAMES)

    @property
    def output_names(self) -> list[str]:
        return list(self.model.OUTPUT_NAMES)

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """Axes besides the batch that vary between requests (optional DYNAMIC_AXES of model.py),
        e.g. {"tokens": {1: "sequence"}, "tags": {1: "sequence"}}."""
        return {
            name: {int(axis): str(dim) for axis, dim in axes.items()}
            for name, axes in getattr(self.model, "DYNAMIC_AXES", {}).items()
        }


def _load_module(path: Path, kind: str) -> ModuleType:
    if not path.is_file():
        raise UserError(
            f"recipe {kind} plugin not found: {path} (a recipe folder holds model.py, dataloader.py and metrics.py)"
        )
    # The module name ends up inside TorchScript and ONNX files (class names, scopes): derive it from
    # the recipe folder's name, not from the path or a per-process hash, so exports are the same bytes
    # in every checkout and run. A clash within one process gets a counter.
    base = "deploysnake_recipe_" + re.sub(r"\W", "_", path.parent.name) + f"_{kind}"
    name, count = base, 1
    while name in sys.modules and getattr(sys.modules[name], "__file__", None) != str(path):
        count += 1
        name = f"{base}_{count}"
    spec = importlib.util.spec_from_file_location(name, str(path))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        # Importing runs the file: bounded in time, and an exit in it is an error naming it.
        with time_limit(timeouts()["import_s"], f"importing {path}", "timeouts.import_s"):
            spec.loader.exec_module(module)
    except SystemExit as exc:
        del sys.modules[name]
        raise UserError(
            f"{path} exits when imported (sys.exit({exc.code!r})): a {kind} plugin defines "
            "functions and must not end the process; remove the exit"
        ) from None
    except UserError:
        del sys.modules[name]
        raise
    missing = [attr for attr in CONTRACT[kind] if not hasattr(module, attr)]
    if missing:
        raise UserError(
            f"{path} does not define {', '.join(missing)}, required of a {kind} plugin (see "
            "README, 'Deploy your own model')"
        )
    return module


def plugin_paths(settings: dict[str, Any]) -> dict[str, Path]:
    """The three plugin files of a model's settings: <recipe>/<kind>.py unless the config names a file."""
    folder = Path(settings["recipe"])
    return {kind: Path(settings.get(kind) or folder / f"{kind}.py") for kind in CONTRACT}


def load_recipe(folder: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    paths = plugin_paths({"recipe": folder, **(overrides or {})})
    return Recipe(
        folder=Path(folder), **{kind: _load_module(path, kind) for kind, path in paths.items()}
    )


def validation_batches(
    recipe: Recipe, params: dict[str, Any], batch_size: int, limit: int | None = None
) -> list[dict[str, Any]]:
    """The validation split as a list of batches, checked against the model's input names."""
    out: list[dict[str, Any]] = []
    for batch in recipe.dataloader.batches("validation", batch_size, params):
        if limit is not None and len(out) >= limit:
            break
        names = sorted(batch.get("inputs", {}))
        if names != sorted(recipe.input_names):
            raise UserError(
                f"dataloader {recipe.folder / 'dataloader.py'} yields inputs {names}, but the "
                f"model's INPUT_NAMES are {recipe.input_names}"
            )
        out.append(batch)
    if not out:
        raise UserError(
            f"dataloader {recipe.folder / 'dataloader.py'} yields no validation batches"
        )
    return out


def pad_concat(arrays: list[NDArray[Any]], fill: float | int) -> NDArray[Any]:
    """Concatenate batches along the batch axis; batches of different lengths (a dynamic sequence
    axis) are padded to the longest first: outputs with 0, integer labels with -1 (the contract)."""
    arrays = [np.asarray(a) for a in arrays]
    if len({a.shape[1:] for a in arrays}) > 1:
        width = np.max([a.shape[1:] for a in arrays], axis=0)
        arrays = [
            np.pad(
                a,
                [(0, 0)] + [(0, int(w) - s) for w, s in zip(width, a.shape[1:], strict=True)],
                constant_values=fill,
            )
            for a in arrays
        ]
    return np.concatenate(arrays)


def check_contract(recipe: Recipe, params: dict[str, Any], framework: str = "torch") -> None:
    """Run the plugins once on a small batch and name the first way they break the contract (see
    README, 'Deploy your own model'), before any training or export time is spent."""
    model_file, loader_file, metrics_file = (
        recipe.folder / f"{k}.py" for k in ("model", "dataloader", "metrics")
    )
    for attr in ("INPUT_NAMES", "OUTPUT_NAMES"):
        names = getattr(recipe.model, attr)
        if (
            not isinstance(names, (list, tuple))
            or not names
            or not all(isinstance(n, str) and n for n in names)
            or len(set(names)) != len(names)
        ):
            raise UserError(
                f"{model_file}: {attr} must be a non-empty list of distinct tensor names, got {names!r}"
            )
    shared = [n for n in recipe.input_names if n in recipe.output_names]
    if shared:
        raise UserError(
            f"{model_file}: {', '.join(map(repr, shared))} is both an input (INPUT_NAMES) and an "
            f"output (OUTPUT_NAMES) name; Triton and ONNX need distinct tensor names: rename the "
            f"output (e.g. {shared[0] + '_echo'!r} in OUTPUT_NAMES)"
        )
    known = set(recipe.input_names) | set(recipe.output_names)
    for name, axes in getattr(recipe.model, "DYNAMIC_AXES", {}).items():
        if name not in known or not all(isinstance(a, int) and a >= 1 for a in axes):
            raise UserError(
                f"{model_file}: DYNAMIC_AXES entry {name!r}: {axes!r} must name an input or "
                f"output ({sorted(known)}) and axes >= 1 (0 is the batch)"
            )
    example = recipe.model.example_inputs(2)
    if not isinstance(example, dict) or sorted(example) != sorted(recipe.input_names):
        got = sorted(example) if isinstance(example, dict) else type(example).__name__
        raise UserError(
            f"{model_file}: example_inputs() must return a dict keyed by INPUT_NAMES {recipe.input_names}, got {got}"
        )
    batch = next(iter(recipe.dataloader.batches("validation", 64, params)), None)
    if not isinstance(batch, dict) or not {"ids", "inputs", "labels"} <= set(batch):
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise UserError(
            f"{loader_file}: batches() must yield dicts with ids, inputs and labels, got {got}"
        )
    if not isinstance(batch["inputs"], dict) or sorted(batch["inputs"]) != sorted(
        recipe.input_names
    ):
        got = (
            sorted(batch["inputs"])
            if isinstance(batch["inputs"], dict)
            else type(batch["inputs"]).__name__
        )
        raise UserError(
            f"{loader_file}: batches() yields inputs {got}, but the model's INPUT_NAMES are {recipe.input_names}"
        )
    if framework != "torch":
        return
    import torch

    model = recipe.model.build_model(params)
    if not isinstance(model, torch.nn.Module):
        raise UserError(
            f"{model_file}: build_model() must return a torch.nn.Module, got {type(model).__name__}"
        )
    with torch.inference_mode():
        out = model.eval()(
            *(torch.as_tensor(np.asarray(batch["inputs"][n])) for n in recipe.input_names)
        )
    if isinstance(out, dict) and sorted(out) != sorted(recipe.output_names):
        raise UserError(
            f"{model_file}: the model returns a dict with keys {sorted(out)}, but OUTPUT_NAMES "
            f"are {recipe.output_names} (outputs are matched by name)"
        )
    outs = (
        (out,)
        if isinstance(out, torch.Tensor)
        else tuple(out[n] for n in recipe.output_names)
        if isinstance(out, dict)
        else tuple(out)
    )
    if len(outs) != len(recipe.output_names):
        raise UserError(
            f"{model_file}: the model returns {len(outs)} output(s), but OUTPUT_NAMES names "
            f"{len(recipe.output_names)}: {recipe.output_names}"
        )
    metrics = recipe.metrics.compute(
        {n: t.numpy() for n, t in zip(recipe.output_names, outs, strict=True)},
        np.asarray(batch["labels"]),
    )
    if (
        not isinstance(metrics, dict)
        or not metrics
        or not all(
            isinstance(k, str) and isinstance(v, (int, float, np.number))
            for k, v in metrics.items()
        )
    ):
        raise UserError(
            f"{metrics_file}: compute() must return a non-empty dict of metric name -> number, got {metrics!r}"
        )
