"""Tagger metrics over real tokens only (labels -1 mark padding)."""

from __future__ import annotations

import numpy as np


def compute(outputs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """Token accuracy, and the share of sequences tagged without a single error."""
    predicted = outputs["tag_logits"].argmax(axis=-1)
    real = labels >= 0
    correct = (predicted == labels) | ~real
    return {
        "token_accuracy": float(((predicted == labels) & real).sum() / real.sum()),
        "sequence_accuracy": float(correct.all(axis=1).mean()),
    }
