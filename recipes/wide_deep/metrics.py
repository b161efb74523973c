"""Click model metrics from the dumped outputs."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def compute(outputs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """AUC and log loss of the probability output, and accuracy at 0.5."""
    probability = outputs["probability"].astype(np.float64).ravel()
    return {
        "auc": float(roc_auc_score(labels, probability)),
        "log_loss": float(log_loss(labels, np.clip(probability, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "accuracy": float(((probability > 0.5) == labels).mean()),
    }
