"""Digits CNN: the embedded default recipe (a small CNN on scikit-learn's bundled 8x8 digits)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# Names of the model's inputs and outputs, in forward() order; they become Triton's tensor names.
INPUT_NAMES = ["image"]
OUTPUT_NAMES = ["logits"]


class DigitsCNN(nn.Module):
    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(2 * channels * 4 * 4, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(image), 1))


def build_model(params: dict[str, Any]) -> nn.Module:
    """Construct the untrained model from the config's params."""
    return DigitsCNN(channels=int(params.get("channels", 16)))


def example_inputs(batch_size: int) -> dict[str, torch.Tensor]:
    """A batch of inputs with the right shapes and dtypes, for tracing and export."""
    return {"image": torch.zeros(batch_size, 1, 8, 8)}


def train(model: nn.Module, dataloader: Any, params: dict[str, Any]) -> nn.Module:
    """Train deterministically on the train split (CPU, a few seconds)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=float(params.get("lr", 3e-3)))
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(int(params.get("epochs", 8))):
        for batch in dataloader.batches("train", int(params.get("batch_size", 64)), params):
            optimizer.zero_grad()
            logits = model(torch.from_numpy(batch["inputs"]["image"]))
            loss = loss_fn(logits, torch.from_numpy(batch["labels"]))
            loss.backward()
            optimizer.step()
    return model.eval()
