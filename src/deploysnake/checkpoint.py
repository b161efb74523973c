"""Checkpoint stage: train the recipe's model deterministically, or take and check a user's checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from .frameworks import load_state, make_keras_checkpoint, train
from .plugins import Recipe, check_contract

log = logging.getLogger(__name__)


def make_checkpoint(
    recipe: Recipe,
    params: dict[str, Any],
    source: str | None,
    output: str | Path,
    framework: str = "torch",
) -> None:
    check_contract(recipe, params, framework)
    if framework == "keras":
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
