"""Digits metrics computed from dumped outputs."""

from __future__ import annotations

import numpy as np


def compute(outputs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of the logits against the labels."""
    logits = outputs["logits"].astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return {
        "accuracy": float((logits.argmax(axis=1) == labels).mean()),
        "cross_entropy": float(-log_probs[np.arange(len(labels)), labels].mean()),
    }
