"""Wide & Deep click model (as in the Wide & Deep deployment guide): int64 categorical ids and float
features as two named inputs; the click logit and probability as two outputs."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

INPUT_NAMES = ["categorical", "numeric"]
OUTPUT_NAMES = ["logit", "probability"]

# Cardinalities of the categorical columns (user, item, item category) and the numeric feature count.
CARDINALITIES = [200, 100, 10]
NUMERIC = 4


class WideAndDeep(nn.Module):
    def __init__(self, embedding: int = 8, hidden: int = 32) -> None:
        super().__init__()
        # wide: one weight per id (a linear model on one-hot columns) plus the numeric features
        self.wide = nn.ModuleList(nn.Embedding(n, 1) for n in CARDINALITIES)
        self.wide_numeric = nn.Linear(NUMERIC, 1)
        # deep: embeddings and numeric features through an MLP
        self.embeddings = nn.ModuleList(nn.Embedding(n, embedding) for n in CARDINALITIES)
        self.deep = nn.Sequential(
            nn.Linear(embedding * len(CARDINALITIES) + NUMERIC, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(
        self, categorical: torch.Tensor, numeric: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        wide = self.wide_numeric(numeric)
        deep_in = [numeric]
        for column, (w, e) in enumerate(zip(self.wide, self.embeddings, strict=True)):
            ids = categorical[:, column]
            wide = wide + w(ids)
            deep_in.append(e(ids))
        logit = wide + self.deep(torch.cat(deep_in, dim=1))
        return logit, torch.sigmoid(logit)


def build_model(params: dict[str, Any]) -> nn.Module:
    return WideAndDeep(int(params.get("embedding", 8)), int(params.get("hidden", 32)))


def example_inputs(batch_size: int) -> dict[str, torch.Tensor]:
    return {
        "categorical": torch.zeros(batch_size, len(CARDINALITIES), dtype=torch.int64),
        "numeric": torch.zeros(batch_size, NUMERIC),
    }


def train(model: nn.Module, dataloader: Any, params: dict[str, Any]) -> nn.Module:
    optimizer = torch.optim.Adam(model.parameters(), lr=float(params.get("lr", 1e-2)))
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(int(params.get("epochs", 5))):
        for batch in dataloader.batches("train", int(params.get("batch_size", 128)), params):
            optimizer.zero_grad()
            inputs = batch["inputs"]
            logit, _ = model(
                torch.from_numpy(inputs["categorical"]), torch.from_numpy(inputs["numeric"])
            )
            loss = loss_fn(logit[:, 0], torch.from_numpy(batch["labels"]).float())
            loss.backward()
            optimizer.step()
    return model.eval()
