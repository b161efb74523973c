"""Digits data from scikit-learn's bundled copy (no download): deterministic train/validation split."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.datasets import load_digits


def _split(split: str, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    if params.get("layout", "nchw") == "nhwc":  # channels last, as Keras models take images
        images = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(int(params.get("seed", 0))).permutation(len(labels))
    n_val = int(len(labels) * float(params.get("validation_fraction", 0.2)))
    idx = order[:n_val] if split == "validation" else order[n_val:]
    if split not in ("train", "validation"):
        raise ValueError(f"unknown split {split!r}: use 'train' or 'validation'")
    return images[idx], labels[idx]


def batches(split: str, batch_size: int, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield {"ids", "inputs": {name: array}, "labels"} batches of the split, in a fixed order."""
    images, labels = _split(split, params)
    for start in range(0, len(labels), batch_size):
        stop = min(start + batch_size, len(labels))
        yield {
            "ids": np.arange(start, stop),
            "inputs": {"image": np.ascontiguousarray(images[start:stop])},
            "labels": labels[start:stop],
        }
