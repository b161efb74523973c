"""A torch model's IO for export: the recipe's example batch, its outputs in the recipe's order
(a model returning a dict or a tuple alike), the IO entries of an example run, the batch axes found
by running it at two batch sizes (probe_batch_axes, with_batch_axes) and torch.export's dynamic
shapes of them (dynamic_shapes)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from .. import shapes
from ..errors import UserError
from ..plugins import Recipe

log = logging.getLogger(__name__)


# Batch used for tracing/export: >= 2 so exporters keep the batch dimension dynamic.
EXAMPLE_BATCH = 4


def example_batch(recipe: Recipe) -> tuple[torch.Tensor, ...]:
    inputs = recipe.model.example_inputs(EXAMPLE_BATCH)
    return tuple(inputs[name] for name in recipe.input_names)


def as_tuple(out: Any, names: list[str]) -> tuple[torch.Tensor, ...]:
    """A model's outputs in OUTPUT_NAMES order: a dict is matched by name, whatever its key order."""
    if isinstance(out, torch.Tensor):
        return (out,)
    if isinstance(out, dict):
        missing = [n for n in names if n not in out]
        if missing:
            raise UserError(
                f"the model returns a dict with keys {sorted(out)}, which lacks OUTPUT_NAMES {missing}"
            )
        return tuple(out[n] for n in names)
    return tuple(out)


class _NamedOutputs(torch.nn.Module):
    """The recipe's model with its dict outputs returned as a tuple in OUTPUT_NAMES order: exporters
    name outputs by position (a dict's insertion order), so the file's names would follow the dict."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, *inputs: torch.Tensor) -> Any:
        return as_tuple(self.model(*inputs), self.names)


def exportable(model: torch.nn.Module, recipe: Recipe) -> torch.nn.Module:
    """The model as the tracer sees it: wrapped only when it returns a dict (other models' files keep
    their own module names)."""
    with torch.no_grad():
        out = model(*example_batch(recipe))
    return _NamedOutputs(model, recipe.output_names) if isinstance(out, dict) else model


def output_order(model: torch.nn.Module, recipe: Recipe) -> list[str]:
    """OUTPUT_NAMES in the order the model returns them: a dict's key order (the ONNX exporters name
    a dict's values by position), else the recipe's."""
    with torch.no_grad():
        out = model(*example_batch(recipe))
    if isinstance(out, dict) and sorted(out) == sorted(recipe.output_names):
        return [str(k) for k in out]
    return recipe.output_names


def describe_outputs(
    names: list[str],
    tensors: tuple[torch.Tensor, ...] | list[NDArray[Any]],
    dynamic: dict[str, dict[int, str]],
) -> list[dict[str, Any]]:
    """IO entries from the example run; the batch axis and the recipe's dynamic axes are -1 (fixed
    up from the probed batch axes by with_batch_axes)."""
    described = []
    for name, tensor in zip(names, tensors, strict=True):
        dims = list(np.asarray(tensor).shape)
        for axis in dynamic.get(name, {}):
            if axis < len(dims):
                dims[axis] = -1
        described.append({"name": name, "dtype": str(np.asarray(tensor).dtype), "dims": dims})
    return described


def probe_batch_axes(
    recipe: Recipe, run: Callable[[dict[str, NDArray[Any]]], dict[str, Any]]
) -> dict[str, list[list[int]]]:
    """Every input's and output's shape from the source model at two batch sizes
    (shapes.PROBE_BATCHES): the axis that follows the batch is the tensor's batch axis."""
    return shapes.probe(recipe.input_names, recipe.output_names, recipe.model.example_inputs, run)


def with_batch_axes(
    io: dict[str, Any], probed: dict[str, list[list[int]]], dynamic: dict[str, dict[int, str]]
) -> dict[str, Any]:
    """io with each tensor's batch_axis from the probes and its dims made full: -1 at the batch axis,
    the dynamic axes and wherever the probes differ; the exported file's size elsewhere. A file that
    froze the example batch as a static size (a traced time-major output) is described by the probes."""
    for key in ("inputs", "outputs"):
        for tensor in io[key]:
            seen = probed.get(tensor["name"])
            if seen is None:
                continue
            axis = shapes.find_batch_axis(seen)
            dims = list(tensor["dims"])
            if len(dims) != len(
                seen[0]
            ):  # the file's rank differs from the model's: trust the model
                dims = list(seen[0])
            tensor["dims"] = shapes.full_dims(dims, seen, axis, dynamic.get(tensor["name"], {}))
            tensor["batch_axis"] = axis
    return io


def dynamic_shapes(
    recipe: Recipe, axes: dict[str, int | None]
) -> tuple[dict[int, Any] | None, ...]:
    """torch.export's dynamic_shapes for the recipe's inputs (in INPUT_NAMES order): each input's
    batch axis (axes; absent names: axis 0, None: no batch axis) as Dim("batch") and the recipe's
    DYNAMIC_AXES as a Dim of their name, all min 1; an input with neither is None (static)."""
    dims = {"batch": torch.export.Dim("batch", min=1)}
    for dynamic in recipe.dynamic_axes.values():
        dims.update({d: torch.export.Dim(d, min=1) for d in dynamic.values() if d not in dims})

    def batch_of(name: str) -> dict[int, str]:
        axis = axes.get(name, 0)
        return {} if axis is None else {axis: "batch"}

    return tuple(
        {
            **{axis: dims[dim] for axis, dim in batch_of(name).items()},
            **{axis: dims[dim] for axis, dim in recipe.dynamic_axes.get(name, {}).items()},
        }
        or None
        for name in recipe.input_names
    )
