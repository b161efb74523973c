"""A bidirectional GRU tagger (embedding + GRU + linear head) whose `onnx_fp16` variant crashes ONNX
Runtime 1.31 with SIGSEGV at session creation or first run (see the project's measured facts): the
test of a runtime that kills the process, which no try/except catches.

Uses recipes/tagger's dataloader and metrics (name them in the config)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

INPUT_NAMES = ["tokens"]
OUTPUT_NAMES = ["tag_logits"]
DYNAMIC_AXES = {"tokens": {1: "sequence"}, "tag_logits": {1: "sequence"}}

VOCAB = 64
TAGS = 5


class BiGRUTagger(nn.Module):
    def __init__(self, embedding: int = 16, hidden: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, embedding, padding_idx=0)
        self.gru = nn.GRU(embedding, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, TAGS)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(self.embed(tokens))
        return self.head(states)


def build_model(params: dict[str, Any]) -> nn.Module:
    torch.manual_seed(int(params.get("seed", 0)))
    return BiGRUTagger(int(params.get("embedding", 16)), int(params.get("hidden", 16)))


def example_inputs(batch_size: int) -> dict[str, torch.Tensor]:
    return {"tokens": torch.ones(batch_size, 12, dtype=torch.int64)}


def train(model: nn.Module, dataloader: Any, params: dict[str, Any]) -> nn.Module:
    optimizer = torch.optim.Adam(model.parameters(), lr=float(params.get("lr", 1e-2)))
    loss_fn = nn.CrossEntropyLoss(ignore_index=-1)
    model.train()
    for _ in range(int(params.get("epochs", 1))):
        for batch in dataloader.batches("train", int(params.get("batch_size", 64)), params):
            optimizer.zero_grad()
            logits = model(torch.from_numpy(batch["inputs"]["tokens"]))
            loss = loss_fn(logits.reshape(-1, TAGS), torch.from_numpy(batch["labels"]).reshape(-1))
            loss.backward()
            optimizer.step()
    return model.eval()
