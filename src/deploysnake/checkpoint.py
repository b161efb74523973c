"""Checkpoint stage: train the recipe's model deterministically, or take and check a user's checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from .errors import UserError
from .plugins import Recipe, check_contract

log = logging.getLogger(__name__)


def load_state(recipe: Recipe, params: dict[str, Any], path: str | Path) -> torch.nn.Module:
    """Build the recipe's model and load a state_dict checkpoint into it (weights only: no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"checkpoint not found: {path} (set models.<name>.checkpoint to an existing file, or "
            "leave it empty to train)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/corrupt files
        raise UserError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); is it truncated or not a torch.save file?"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    model: torch.nn.Module = recipe.model.build_model(params)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise UserError(
            f"checkpoint {path} does not fit the recipe's model ({recipe.folder / 'model.py'}): {exc}"
        ) from exc
    return model.eval()


def train(recipe: Recipe, params: dict[str, Any]) -> torch.nn.Module:
    if not hasattr(recipe.model, "train"):
        raise UserError(
            f"{recipe.folder / 'model.py'} has no train(); set models.<name>.checkpoint to a trained checkpoint"
        )
    seed = int(params.get("seed", 0))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    # One thread: float reductions then happen in one order, so the weights are the same bytes every run.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model: torch.nn.Module = recipe.model.build_model(params)
        trained: torch.nn.Module = recipe.model.train(model, recipe.dataloader, params)
        return trained.eval()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)


def make_checkpoint(
    recipe: Recipe,
    params: dict[str, Any],
    source: str | None,
    output: str | Path,
    framework: str = "torch",
) -> None:
    check_contract(recipe, params, framework)
    if framework == "keras":
        from .frameworks import make_keras_checkpoint

        make_keras_checkpoint(recipe, params, source, output)
        log.info("wrote %s", output)
        return
    if source:
        log.info("checking the given checkpoint %s", source)
        model = load_state(recipe, params, source)
    else:
        log.info("training %s with params %s", recipe.folder, params)
        model = train(recipe, params)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), output)
    log.info("wrote %s", output)
