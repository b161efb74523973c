"""A model whose tensor names carry `.`, `:`, `/` and `-` (as ONNX graphs exported from other
frameworks do: `input:0`, `scope/out-1`), that returns its outputs as a dict in another key order
than OUTPUT_NAMES, one of them of shape [batch] only, and takes a dynamic-length id sequence."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

INPUT_NAMES = ["feat.in:0", "tok/ids-1"]
OUTPUT_NAMES = ["score:0", "emb/out-1"]
DYNAMIC_AXES = {"tok/ids-1": {1: "sequence"}}
FEATURES = 6
VOCAB = 20


class Named(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.body = nn.Linear(FEATURES, hidden)
        self.tokens = nn.Embedding(VOCAB, hidden, padding_idx=0)
        self.head = nn.Linear(hidden, 1)

    def forward(self, features: torch.Tensor, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = (ids > 0).unsqueeze(-1).to(features.dtype)
        pooled = (self.tokens(ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        embedding = torch.tanh(self.body(features) + pooled)
        # Keys in the other order than OUTPUT_NAMES: outputs are matched by name.
        return {"emb/out-1": embedding, "score:0": self.head(embedding)[:, 0]}


def build_model(params: dict[str, Any]) -> nn.Module:
    torch.manual_seed(int(params.get("seed", 0)))
    return Named(int(params.get("hidden", 8)))


def example_inputs(batch_size: int) -> dict[str, torch.Tensor]:
    return {
        "feat.in:0": torch.zeros(batch_size, FEATURES),
        "tok/ids-1": torch.ones(batch_size, 7, dtype=torch.int64),
    }


def train(model: nn.Module, dataloader: Any, params: dict[str, Any]) -> nn.Module:
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(int(params.get("epochs", 3))):
        for batch in dataloader.batches("train", 32, params):
            optimizer.zero_grad()
            out = model(*(torch.from_numpy(batch["inputs"][n]) for n in INPUT_NAMES))
            nn.functional.mse_loss(out["score:0"], torch.from_numpy(batch["labels"])).backward()
            optimizer.step()
    return model.eval()
