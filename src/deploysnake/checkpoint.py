"""Checkpoint stage: train the recipe's model deterministically, or take and check a user's checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .errors import UserError
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
    import torch  # here, not at the top: the job's own process (make_checkpoint_isolated) runs
    # no model code and needs no torch

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), output)
    log.info("wrote %s", output)


def _make_from_settings(settings: dict[str, Any], output: str) -> None:
    """In the child of make_checkpoint_isolated: load the recipe and make the checkpoint."""
    from .isolated import phase
    from .plugins import plugin_paths
    from .sources.description import load_settings

    phase(f"training with {plugin_paths(settings)['model']}")
    recipe = load_settings(settings)
    make_checkpoint(
        recipe, settings["params"], settings["checkpoint"], output, settings["framework"]
    )


def make_checkpoint_isolated(
    settings: dict[str, Any], output: str | Path, timeout_s: float | None = None
) -> None:
    """make_checkpoint for one model's config settings (models.<name>), in a child process that
    runs at most timeout_s seconds (default: the config's timeouts.train_s): the recipe's train()
    is the user's code, and a hang, an exit or a crash in it must end the job with its name.

    Raises UserError naming model.py when the child times out, exits or fails."""
    from .isolated import call
    from .plugins import plugin_paths
    from .trust import timeouts

    limit = timeouts()["train_s"] if timeout_s is None else float(timeout_s)
    model_file = plugin_paths(settings)["model"]
    outcome = call(
        "deploysnake.checkpoint:_make_from_settings",
        {"settings": dict(settings), "output": str(output)},
        limit,
    )
    if outcome.failure is None:
        return
    if outcome.result is None and outcome.failure.startswith("timed out"):
        raise UserError(
            f"training with {model_file} did not finish within {limit:g} s (timeouts.train_s); "
            "train for less (e.g. fewer epochs in params), give a trained checkpoint, or raise "
            "timeouts.train_s"
        )
    if outcome.user_error is not None:
        raise UserError(outcome.user_error)
    raise UserError(
        f"training with {model_file} failed: {outcome.failure} (its traceback is in the log above)"
    )
