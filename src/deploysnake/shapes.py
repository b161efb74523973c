"""Tensor shapes as Triton serves them: each tensor's batch axis, found from the model itself, and
the dims, reshapes and joins that follow from it.

An IO entry (io.json) is {"name", "dtype", "dims", "batch_axis"}: `dims` is the tensor's full shape
with -1 for every axis that varies (the batch axis and the recipe's dynamic axes); `batch_axis` is the
axis that follows the number of samples in a call (0 for most models), or None for a tensor whose shape
does not depend on it (a scalar, a per-call summary). io.json files written before batch axes were
recorded have no `batch_axis`: 0 is assumed.

Triton's rules (model configuration guide, "Maximum Batch Size", "Reshape"): with max_batch_size > 0
every tensor's axis 0 is the batch, left out of `dims`, and Triton splits outputs along it; a tensor
with only the batch axis is declared `dims: [1]` with `reshape: { shape: [] }`. With max_batch_size 0
the dims are the full shape and the model is called once per request, as sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import UserError

# Two batch sizes to run the source model at: an axis that is 3 then 5 is the batch axis. Odd values
# that few models have as a fixed size (classes, features), and different from export's example batch.
PROBE_BATCHES = (3, 5)


def batch_axis(tensor: Mapping[str, Any]) -> int | None:
    """The recorded batch axis of an IO entry (0 where io.json predates the field)."""
    axis: int | None = tensor.get("batch_axis", 0)
    return axis


def probe(
    input_names: list[str],
    output_names: list[str],
    example_inputs: Callable[[int], Mapping[str, Any]],
    run: Callable[[dict[str, NDArray[Any]]], Mapping[str, Any]],
) -> dict[str, list[list[int]]]:
    """Each tensor's shape at PROBE_BATCHES: {name: [shape at 3, shape at 5]} (inputs, then outputs).

    example_inputs: the recipe's example_inputs(batch_size); run: the source model on named numpy
    inputs, returning named outputs."""
    shapes: dict[str, list[list[int]]] = {}
    for size in PROBE_BATCHES:
        inputs = {n: np.asarray(t) for n, t in example_inputs(size).items()}
        outputs = run(inputs)
        for name in input_names:
            shapes.setdefault(name, []).append(list(inputs[name].shape))
        for name in output_names:
            shapes.setdefault(name, []).append(list(np.shape(np.asarray(outputs[name]))))
    return shapes


def find_batch_axis(shapes: list[list[int]]) -> int | None:
    """The first axis whose size is PROBE_BATCHES[k] at probe k; None if there is none."""
    first, second = shapes
    if len(first) != len(second):
        return None
    for axis, (a, b) in enumerate(zip(first, second, strict=True)):
        if (a, b) == PROBE_BATCHES:
            return axis
    return None


def full_dims(
    example_shape: list[int], shapes: list[list[int]], axis: int | None, dynamic: Mapping[int, str]
) -> list[int]:
    """The full dims of a tensor: -1 at its batch axis, at the recipe's dynamic axes and wherever the
    probes' shapes differ; the example's size elsewhere."""
    dims = [int(d) for d in example_shape]
    varying = (
        {k for k, (a, b) in enumerate(zip(*shapes, strict=True)) if a != b}
        if len(shapes[0]) == len(shapes[1])
        else set()
    )
    for k in range(len(dims)):
        if k == axis or k in varying or k in dynamic:
            dims[k] = -1
    return dims


def unbatchable(io: dict[str, Any], shapes: dict[str, list[list[int]]]) -> list[str]:
    """Why this IO cannot be served with max_batch_size > 0: one line per tensor whose batch is not
    axis 0, naming it with its shapes at the two probe batches and the fix."""
    problems = []
    for kind, key in (("input", "inputs"), ("output", "outputs")):
        for tensor in io[key]:
            axis = batch_axis(tensor)
            if axis == 0:
                continue
            name = tensor["name"]
            seen = shapes.get(name)
            at = (
                f"its shape is {seen[0]} at batch {PROBE_BATCHES[0]} and {seen[1]} at batch {PROBE_BATCHES[1]}"
                if seen
                else f"its dims are {tensor['dims']}"
            )
            if axis is None:
                problems.append(
                    f"{kind} {name!r} has no batch axis ({at}): a batched Triton model gives each "
                    f"request its rows of every tensor along axis 0. Return one value per sample "
                    f"(shape [batch, ...], e.g. {name}.expand(batch, 1)), or serve the model unbatched "
                    f"with triton.max_batch_size: 0 (full shapes, one call per request)"
                )
            else:
                problems.append(
                    f"{kind} {name!r} carries the batch on axis {axis}, not axis 0 ({at}): Triton "
                    f"splits and joins batches along axis 0. Return it batch-first (e.g. "
                    f"{name}.transpose(0, {axis}) in forward()), or serve the model unbatched with "
                    f"triton.max_batch_size: 0"
                )
    return problems


def scalars(io: dict[str, Any]) -> list[str]:
    """Why an unbatched model cannot serve this IO: Triton has no 0-d tensors (a non-batching model's
    output "cannot have empty reshape ... as scalar tensors are not supported", tritonserver 2.51)."""
    return [
        f"{kind} {tensor['name']!r} is a scalar (shape []): Triton serves no 0-d tensors, not even "
        f"with triton.max_batch_size: 0. Return it with shape [1] (e.g. {tensor['name']}.reshape(1))"
        for kind, key in (("input", "inputs"), ("output", "outputs"))
        for tensor in io[key]
        if batch_axis(tensor) is None and not tensor["dims"]
    ]


def check_batchable(
    io: dict[str, Any], max_batch_size: int, shapes: dict[str, list[list[int]]] | None = None
) -> None:
    """Raise UserError naming every tensor this model cannot serve: batched (max_batch_size > 0),
    one without the batch on axis 0; unbatched, a scalar."""
    if max_batch_size <= 0:
        if problems := scalars(io):
            raise UserError(
                "triton.max_batch_size is 0 (unbatched), but:\n  " + "\n  ".join(problems)
            )
        return
    problems = unbatchable(io, shapes or {})
    if problems:
        raise UserError(
            "triton.max_batch_size is above 0 (Triton batches the model), but:\n  "
            + "\n  ".join(problems)
        )


def served_dims(
    tensor: Mapping[str, Any], max_batch_size: int
) -> tuple[list[int], list[int] | None]:
    """(dims, reshape) of config.pbtxt for an IO entry: batched, the dims after the batch axis;
    unbatched, the full dims. A [batch] tensor batched is declared [1] with reshape [] (Triton's
    documented form); reshape is None otherwise. (Scalars are refused by check_batchable.)"""
    dims = list(tensor["dims"][1:] if max_batch_size > 0 else tensor["dims"])
    if not dims:
        return [1], []
    return [int(d) for d in dims], None


def to_served(array: NDArray[Any], tensor: Mapping[str, Any], max_batch_size: int) -> NDArray[Any]:
    """An input as the client sends it: a model shape that Triton declares with a reshape gets its
    [1] axis back ([batch] -> [batch, 1]; a scalar -> [1])."""
    _, reshape = served_dims(tensor, max_batch_size)
    if reshape is None:
        return array
    return array.reshape((array.shape[0], 1) if max_batch_size > 0 else (1,))


def from_served(
    array: NDArray[Any], tensor: Mapping[str, Any], max_batch_size: int
) -> NDArray[Any]:
    """An output as the model returned it: a served tensor declared [1] with reshape [] loses the axis
    a server may add ([batch, 1] -> [batch]; [1] -> a scalar)."""
    _, reshape = served_dims(tensor, max_batch_size)
    if reshape is None:
        return array
    return array.reshape((-1,) if max_batch_size > 0 else ())


def join(parts: list[NDArray[Any]], axis: int | None, fill: float | int = 0) -> NDArray[Any]:
    """Join per-call outputs: along their batch axis, padding other axes to the longest (a dynamic
    sequence); outputs with no batch axis (one value per call) are stacked along a new axis 0."""
    arrays = [np.asarray(a) for a in parts]
    if axis is None:
        arrays = [a[np.newaxis] for a in arrays]
        axis = 0
    moved = [np.moveaxis(a, axis, 0) for a in arrays]
    if len({a.shape[1:] for a in moved}) > 1:
        width = np.max([a.shape[1:] for a in moved], axis=0)
        moved = [
            np.pad(
                a,
                [(0, 0)] + [(0, int(w) - s) for w, s in zip(width, a.shape[1:], strict=True)],
                constant_values=fill,
            )
            for a in moved
        ]
    return np.moveaxis(np.concatenate(moved), 0, axis)
