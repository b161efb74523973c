"""Sequence tagger: a small BiLSTM giving one tag per token, over sequences of any length.

The sequence axis is dynamic through export (DYNAMIC_AXES), the Triton config (dims -1) and perf
(perf_analyzer --input-data with real lengths, --shape)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

INPUT_NAMES = ["tokens"]
OUTPUT_NAMES = ["tag_logits"]
# Axes besides the batch that vary between requests: the sequence, in the input and the output.
DYNAMIC_AXES = {"tokens": {1: "sequence"}, "tag_logits": {1: "sequence"}}

VOCAB = 64  # token ids 1..63; 0 pads
TAGS = 5


class BiLSTMTagger(nn.Module):
    def __init__(self, embedding: int = 32, hidden: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, embedding, padding_idx=0)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, TAGS)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(self.embed(tokens))
        return self.head(states)


def build_model(params: dict[str, Any]) -> nn.Module:
    return BiLSTMTagger(int(params.get("embedding", 32)), int(params.get("hidden", 32)))


def example_inputs(batch_size: int) -> dict[str, torch.Tensor]:
    """Any length works; 12 tokens for tracing and export (>= 2, so the axis stays dynamic)."""
    return {"tokens": torch.ones(batch_size, 12, dtype=torch.int64)}


def train(model: nn.Module, dataloader: Any, params: dict[str, Any]) -> nn.Module:
    optimizer = torch.optim.Adam(model.parameters(), lr=float(params.get("lr", 1e-2)))
    loss_fn = nn.CrossEntropyLoss(ignore_index=-1)  # -1: padding, no tag
    model.train()
    for _ in range(int(params.get("epochs", 6))):
        for batch in dataloader.batches("train", int(params.get("batch_size", 32)), params):
            optimizer.zero_grad()
            logits = model(torch.from_numpy(batch["inputs"]["tokens"]))
            loss = loss_fn(logits.reshape(-1, TAGS), torch.from_numpy(batch["labels"]).reshape(-1))
            loss.backward()
            optimizer.step()
    return model.eval()
