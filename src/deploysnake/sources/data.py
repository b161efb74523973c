"""Inputs and labels for a source model without a recipe: samples generated from the IO
description with a fixed seed within each input's range (generate), or the team's dataloader's
(dataloader_examples, example_data)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import dtypes
from ..errors import UserError
from ..plugins import _load_module
from .kinds import GENERATED_SAMPLES


def generate(doc: dict[str, Any], samples: int, seed: int) -> dict[str, NDArray[Any]]:
    """Inputs of `samples` rows from the description, with a fixed seed.

    Floats: uniform in [low, high] (default [0, 1]); integers: uniform in [low, high] inclusive,
    which must be given (ids must stay inside an embedding's table); bool: either value.
    Raises UserError naming the input and the key to set where a size or range is missing."""
    rng = np.random.default_rng(seed)
    where = f"models.{doc.get('model', '<name>')}"
    out = {}
    for tensor in doc["inputs"]:
        name, dtype = tensor["name"], np.dtype(tensor["dtype"])
        if tensor["shape"] is None:
            axes = ", ".join(f"{a} ({d})" for a, d in tensor["dynamic"].items())
            raise UserError(
                f"input {name!r} has dynamic axes {axes} and no dataloader gives its data: set "
                f"{where}.inputs.{name}.dims to the sizes to generate (without the batch axis), or give a dataloader"
            )
        shape = [samples, *tensor["shape"]]
        low, high = tensor.get("low"), tensor.get("high")
        if dtypes.is_string(dtype):
            raise UserError(
                f"input {name!r} is a string tensor and no dataloader gives its data: strings "
                f"cannot be made up; set {where}.dataloader to a file whose batches() yields "
                "object arrays of str for it"
            )
        if dtype.kind == "b":
            out[name] = rng.integers(0, 2, shape).astype(bool)
        elif dtype.kind in "iu":
            if low is None or high is None:
                raise UserError(
                    f"input {name!r} is an integer tensor ({dtype}) and no dataloader gives its "
                    "data: set its value range, "
                    f"{where}.inputs.{name}.low and .high (inclusive; for ids, 0 and the embedding table's size - 1)"
                )
            out[name] = rng.integers(int(low), int(high), shape, endpoint=True).astype(dtype)
        else:
            lo = 0.0 if low is None else float(low)
            hi = 1.0 if high is None else float(high)
            out[name] = rng.uniform(lo, hi, shape).astype(dtype)
    return out


def generated_dataloader(doc: dict[str, Any]) -> ModuleType:
    module = ModuleType("deploysnake_generated_dataloader")
    module.__file__ = "<generated from the IO description>"

    def batches(split: str, batch_size: int, params: dict[str, Any]) -> Any:
        seed = int(params.get("seed", 0)) + (0 if split == "validation" else 1)
        data = generate(doc, GENERATED_SAMPLES, seed)
        for start in range(0, GENERATED_SAMPLES, batch_size):
            stop = min(start + batch_size, GENERATED_SAMPLES)
            yield {
                "ids": np.arange(start, stop),
                "inputs": {n: a[start:stop] for n, a in data.items()},
                "labels": np.full(stop - start, -1, dtype=np.int64),
            }

    module.batches = batches  # type: ignore[attr-defined]
    module.GENERATED = True  # type: ignore[attr-defined]
    return module


def no_metrics() -> ModuleType:
    module = ModuleType("deploysnake_no_task_metric")
    module.__file__ = "<no task metric given>"
    module.compute = lambda outputs, labels: {}  # type: ignore[attr-defined]
    module.NO_TASK_METRIC = True  # type: ignore[attr-defined]
    return module


def dataloader_examples(
    dataloader: ModuleType, params: dict[str, Any], size: int
) -> dict[str, NDArray[Any]]:
    """`size` rows of the dataloader's validation split (its first batch of that size, rows taken
    in turn again where it holds fewer): the user's data for every step that runs the model before
    correctness (the first run, the batch-axis probe, an exporter's example)."""
    first = next(iter(dataloader.batches("validation", size, params)), None)
    if first is None:
        raise UserError(f"dataloader {dataloader.__file__} yields no validation batches")
    out = {}
    for name, value in first["inputs"].items():
        array = np.asarray(value)
        rows = np.arange(size) % max(1, len(array))
        out[name] = np.ascontiguousarray(array[rows])
    return out


def example_data(
    doc: dict[str, Any], settings: dict[str, Any], size: int
) -> dict[str, NDArray[Any]]:
    """`size` rows for a run of the source file: from the config's dataloader
    (models.<name>.dataloader) where given, else generated from the description (generate)."""
    if settings.get("dataloader"):
        dataloader = _load_module(Path(settings["dataloader"]), "dataloader")
        return dataloader_examples(dataloader, settings.get("params") or {}, size)
    return generate(doc, size, seed=0)
