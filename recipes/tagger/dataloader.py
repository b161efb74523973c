"""Generated tagging data (no download): token sequences of 4 to 32 tokens, whose tag depends on the
token and on its neighbours, so the model needs both directions of context; 5% of the tags are
noise, so no model is perfect. Fixed by the seed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

VOCAB, TAGS = 64, 5


def _tag(tokens: np.ndarray) -> np.ndarray:
    prev = np.concatenate([[0], tokens[:-1]])
    nxt = np.concatenate([tokens[1:], [0]])
    return ((tokens % 3) + (prev > 40) + (nxt > 40)) % TAGS


def _split(split: str, params: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    if split not in ("train", "validation"):
        raise ValueError(f"unknown split {split!r}: use 'train' or 'validation'")
    rng = np.random.default_rng(int(params.get("seed", 0)) + (0 if split == "train" else 1))
    count = int(
        params.get(
            "train_sequences" if split == "train" else "validation_sequences",
            1200 if split == "train" else 256,
        )
    )
    lengths = rng.integers(
        int(params.get("min_length", 4)), int(params.get("max_length", 32)) + 1, size=count
    )
    sequences = []
    for n in lengths:
        tokens = rng.integers(1, VOCAB, size=n)
        tags = np.where(
            rng.random(n) < float(params.get("noise", 0.05)),
            rng.integers(0, TAGS, size=n),
            _tag(tokens),
        )
        sequences.append((tokens, tags))
    return sequences


def batches(split: str, batch_size: int, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Batches padded to their longest sequence: tokens with 0, labels (tags) with -1."""
    sequences = _split(split, params)
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        width = max(len(tokens) for tokens, _ in chunk)
        tokens = np.zeros((len(chunk), width), dtype=np.int64)
        labels = np.full((len(chunk), width), -1, dtype=np.int64)
        for row, (seq, tags) in enumerate(chunk):
            tokens[row, : len(seq)] = seq
            labels[row, : len(seq)] = tags
        yield {
            "ids": np.arange(start, start + len(chunk)),
            "inputs": {"tokens": tokens},
            "labels": labels,
        }
