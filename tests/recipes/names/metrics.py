"""Mean squared error of the [batch] score, and the embedding's mean (a second output to compare)."""

from __future__ import annotations

import numpy as np


def compute(outputs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    score = np.asarray(outputs["score:0"])
    if score.shape != labels.shape:
        raise ValueError(f"score:0 has shape {score.shape}, labels {labels.shape}")
    return {
        "mse": float(np.mean((score - labels) ** 2)),
        "embedding_mean": float(np.mean(outputs["emb/out-1"])),
    }
