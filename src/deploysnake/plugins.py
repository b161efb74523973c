"""Load a recipe's plugins (model.py, dataloader.py, metrics.py) and check they meet the contract."""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import UserError

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


def _load_module(path: Path, kind: str) -> ModuleType:
    if not path.is_file():
        raise UserError(f"recipe {kind} plugin not found: {path} (a recipe folder holds model.py, dataloader.py and metrics.py)")
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
    spec.loader.exec_module(module)
    missing = [attr for attr in CONTRACT[kind] if not hasattr(module, attr)]
    if missing:
        raise UserError(f"{path} does not define {', '.join(missing)}, required of a {kind} plugin (see README, 'Deploy your own model')")
    return module


def plugin_paths(settings: dict[str, Any]) -> dict[str, Path]:
    """The three plugin files of a model's settings: <recipe>/<kind>.py unless the config names a file."""
    folder = Path(settings["recipe"])
    return {kind: Path(settings.get(kind) or folder / f"{kind}.py") for kind in CONTRACT}


def load_recipe(folder: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    paths = plugin_paths({"recipe": folder, **(overrides or {})})
    return Recipe(folder=Path(folder), **{kind: _load_module(path, kind) for kind, path in paths.items()})


def load_settings(settings: dict[str, Any]) -> Recipe:
    """The recipe of one model's config settings (models.<name>)."""
    return load_recipe(settings["recipe"], {kind: settings.get(kind) for kind in CONTRACT})


def validation_batches(recipe: Recipe, params: dict[str, Any], batch_size: int, limit: int | None = None) -> list[dict[str, Any]]:
    """The validation split as a list of batches, checked against the model's input names."""
    out: list[dict[str, Any]] = []
    for batch in recipe.dataloader.batches("validation", batch_size, params):
        if limit is not None and len(out) >= limit:
            break
        names = sorted(batch.get("inputs", {}))
        if names != sorted(recipe.input_names):
            raise UserError(
                f"dataloader {recipe.folder / 'dataloader.py'} yields inputs {names}, but the model's INPUT_NAMES are {recipe.input_names}"
            )
        out.append(batch)
    if not out:
        raise UserError(f"dataloader {recipe.folder / 'dataloader.py'} yields no validation batches")
    return out
