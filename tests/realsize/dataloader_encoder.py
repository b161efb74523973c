"""Random seeded token sequences for the small transformer encoder: `input_ids` int64 and
`attention_mask` int64 [batch, sequence]; each batch padded to its own longest sequence (lengths
12..40), so the sequence axis varies between batches as a tokenizer's padding makes it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

SAMPLES = {"train": 32, "validation": 32}
VOCAB = 1000


def batches(split: str, batch_size: int, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if split not in SAMPLES:
        raise ValueError(f"unknown split {split!r}: use 'train' or 'validation'")
    rng = np.random.default_rng(0 if split == "validation" else 1)
    count = SAMPLES[split]
    lengths = rng.integers(12, 41, count)
    for start in range(0, count, batch_size):
        part = lengths[start : start + batch_size]
        width = int(part.max())
        ids = np.zeros((len(part), width), dtype=np.int64)
        mask = np.zeros((len(part), width), dtype=np.int64)
        for row, length in enumerate(part):
            ids[row, :length] = rng.integers(1, VOCAB, length)
            mask[row, :length] = 1
        yield {
            "ids": np.arange(start, start + len(part)),
            "inputs": {"input_ids": ids, "attention_mask": mask},
            "labels": np.zeros(len(part), dtype=np.int64),
        }
