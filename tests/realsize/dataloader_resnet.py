"""Random seeded images for the ResNet-18-shaped model: `image` float32 [batch, 3, 224, 224], roughly
normalised (mean 0, std 1); labels are random classes (no task metric is asked of random weights)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

SAMPLES = {"train": 16, "validation": 16}


def batches(split: str, batch_size: int, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if split not in SAMPLES:
        raise ValueError(f"unknown split {split!r}: use 'train' or 'validation'")
    rng = np.random.default_rng(0 if split == "validation" else 1)
    count = SAMPLES[split]
    images = rng.standard_normal((count, 3, 224, 224), dtype=np.float32)
    labels = rng.integers(0, 1000, count)
    for start in range(0, count, batch_size):
        part = slice(start, min(start + batch_size, count))
        yield {
            "ids": np.arange(count)[part],
            "inputs": {"image": images[part]},
            "labels": labels[part].astype(np.int64),
        }
