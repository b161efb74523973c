"""Test recipe: the digits CNN plus an eigenvalue op that TorchScript traces but ONNX cannot express."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

_spec = importlib.util.spec_from_file_location(
    "digits_model", Path(__file__).parents[3] / "recipes" / "digits" / "model.py"
)
assert _spec is not None and _spec.loader is not None
digits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(digits)

INPUT_NAMES = digits.INPUT_NAMES
OUTPUT_NAMES = digits.OUTPUT_NAMES
example_inputs = digits.example_inputs


class Unexportable(digits.DigitsCNN):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        bounded = torch.tanh(
            torch.nan_to_num(image[:, 0])
        )  # perf_analyzer sends arbitrary random floats
        gram = bounded @ bounded.transpose(1, 2) + torch.eye(bounded.shape[-1])  # well-conditioned
        # aten._linalg_eigh has no ONNX function: the ONNX export of this model fails.
        return super().forward(image) + 0.0 * torch.linalg.eigvalsh(gram).sum(dim=1, keepdim=True)


def build_model(params: dict[str, Any]) -> torch.nn.Module:
    return Unexportable(channels=int(params.get("channels", 16)))


def train(model: torch.nn.Module, dataloader: Any, params: dict[str, Any]) -> torch.nn.Module:
    return digits.train(model, dataloader, params)
