"""scikit-learn's bundled wine data, standardised, split by a fixed permutation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.datasets import load_wine


def batches(split: str, batch_size: int, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    data = load_wine()
    features = ((data.data - data.data.mean(axis=0)) / data.data.std(axis=0)).astype(np.float32)
    order = np.random.default_rng(int(params.get("seed", 0))).permutation(len(features))
    idx = order[:40] if split == "validation" else order[40:]
    for start in range(0, len(idx), batch_size):
        part = idx[start : start + batch_size]
        yield {
            "ids": part,
            "inputs": {"features": features[part]},
            "labels": data.target[part].astype(np.int64),
        }
