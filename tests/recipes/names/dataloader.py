"""Generated data: features, id sequences of 3 to 12 tokens (padded with 0 to the batch's longest),
and a regression target."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

FEATURES = 6
VOCAB = 20


def batches(split: str, batch_size: int, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    rng = np.random.default_rng(int(params.get("seed", 0)) + (0 if split == "train" else 1))
    total = 256 if split == "train" else 96
    for start in range(0, total, batch_size):
        n = min(batch_size, total - start)
        lengths = rng.integers(3, 13, n)
        ids = np.zeros((n, int(lengths.max())), dtype=np.int64)
        for i, length in enumerate(lengths):
            ids[i, :length] = rng.integers(1, VOCAB, length)
        features = rng.normal(size=(n, FEATURES)).astype(np.float32)
        labels = (features[:, 0] + (ids == 3).sum(1) * 0.5).astype(np.float32)
        yield {
            "ids": np.arange(start, start + n),
            "inputs": {"feat.in:0": features, "tok/ids-1": ids},
            "labels": labels,
        }
