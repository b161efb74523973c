"""A test-only recipe: a tiny MLP on scikit-learn's bundled wine data, written as a user would."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

INPUT_NAMES = ["features"]
OUTPUT_NAMES = ["scores", "embedding"]


class WineMLP(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(13, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, 3)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.body(features)
        return self.head(embedding), embedding


def build_model(params: dict[str, Any]) -> nn.Module:
    torch.manual_seed(int(params.get("seed", 0)))
    return WineMLP(int(params.get("hidden", 8)))


def example_inputs(batch_size: int) -> dict[str, torch.Tensor]:
    return {"features": torch.zeros(batch_size, 13)}


def train(model: nn.Module, dataloader: Any, params: dict[str, Any]) -> nn.Module:
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(int(params.get("epochs", 20))):
        for batch in dataloader.batches("train", 32, params):
            optimizer.zero_grad()
            scores, _ = model(torch.from_numpy(batch["inputs"]["features"]))
            nn.functional.cross_entropy(scores, torch.from_numpy(batch["labels"])).backward()
            optimizer.step()
    return model.eval()
