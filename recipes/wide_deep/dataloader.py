"""Generated click logs (no download): users and items with hidden tastes, items in categories, four
numeric context features; a click is drawn from the hidden model, so the best AUC is below 1.
The same seed gives the same data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

USERS, ITEMS, CATEGORIES, NUMERIC = 200, 100, 10, 4


def _split(split: str, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if split not in ("train", "validation"):
        raise ValueError(f"unknown split {split!r}: use 'train' or 'validation'")
    world = np.random.default_rng(
        int(params.get("seed", 0))
    )  # the hidden model: the same for both splits
    taste, traits = world.normal(size=(USERS, 4)), world.normal(size=(ITEMS, 4))
    item_category = world.integers(0, CATEGORIES, size=ITEMS)
    category_bias, weights = (
        world.normal(scale=0.5, size=CATEGORIES),
        world.normal(scale=0.7, size=NUMERIC),
    )
    rng = np.random.default_rng(int(params.get("seed", 0)) + (1 if split == "train" else 2))
    rows = int(
        params.get(
            "train_rows" if split == "train" else "validation_rows",
            6000 if split == "train" else 1024,
        )
    )
    users, items = rng.integers(0, USERS, size=rows), rng.integers(0, ITEMS, size=rows)
    numeric = rng.normal(size=(rows, NUMERIC)).astype(np.float32)
    logit = (
        (taste[users] * traits[items]).sum(axis=1)
        + category_bias[item_category[items]]
        + numeric @ weights
        - 0.5
    )
    clicks = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    categorical = np.stack([users, items, item_category[items]], axis=1).astype(np.int64)
    return categorical, numeric, clicks


def batches(split: str, batch_size: int, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """{"ids", "inputs": {"categorical": int64 [n, 3], "numeric": float32 [n, 4]}, "labels": clicks}."""
    categorical, numeric, clicks = _split(split, params)
    for start in range(0, len(clicks), batch_size):
        stop = min(start + batch_size, len(clicks))
        yield {
            "ids": np.arange(start, stop),
            "inputs": {"categorical": categorical[start:stop], "numeric": numeric[start:stop]},
            "labels": clicks[start:stop],
        }
