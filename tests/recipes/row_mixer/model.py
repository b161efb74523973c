"""A digits CNN that is wrong under batching: every row of a batch gets the batch's mean logits. At
batch 1 that is the sample's own logits (exactly: the mean of one row is the row), so the correctness
stage, which runs source and artifact on the same batches, passes it, and a server that runs
one request at a time answers right; once the dynamic batcher merges requests, each request gets the
others' rows mixed in. The test of the check of answers under load (deploysnake.underload).

Uses recipes/digits' dataloader and metrics (name them in the config)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

INPUT_NAMES = ["image"]
OUTPUT_NAMES = ["logits"]


class RowMixer(nn.Module):
    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.head = nn.Linear(channels * 4 * 4, 10)

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(image), 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.logits(image)
        # the fault: rows of one batch mixed (the batch's mean); batch 1 unchanged
        return logits - logits + logits.mean(0, keepdim=True)


def build_model(params: dict[str, Any]) -> nn.Module:
    return RowMixer(channels=int(params.get("channels", 8)))


def example_inputs(batch_size: int) -> dict[str, torch.Tensor]:
    return {"image": torch.zeros(batch_size, 1, 8, 8)}


def train(model: nn.Module, dataloader: Any, params: dict[str, Any]) -> nn.Module:
    """A few steps on the row-wise logits (the fault is in forward only)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(int(params.get("epochs", 1))):
        for batch in dataloader.batches("train", 64, params):
            optimizer.zero_grad()
            loss = loss_fn(
                model.logits(torch.from_numpy(batch["inputs"]["image"])),
                torch.from_numpy(batch["labels"]),
            )
            loss.backward()
            optimizer.step()
    return model.eval()
