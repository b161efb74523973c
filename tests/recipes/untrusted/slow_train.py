"""A test-only model plugin (with tests/recipes/wine's dataloader and metrics) whose train() takes
params.sleep_s seconds: a run that is busy for a while (the lock test) or past its time-out."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

INPUT_NAMES = ["features"]
OUTPUT_NAMES = ["scores"]


def build_model(params: dict[str, Any]) -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(13, 3)


def example_inputs(batch_size: int) -> dict[str, torch.Tensor]:
    return {"features": torch.zeros(batch_size, 13)}


def train(model: nn.Module, dataloader: Any, params: dict[str, Any]) -> nn.Module:
    end = time.monotonic() + float(params.get("sleep_s", 3600))
    while time.monotonic() < end:
        time.sleep(0.2)
    return model.eval()
