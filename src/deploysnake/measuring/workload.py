"""What perf_analyzer sends: the points of a sweep (Point, sweep), the perf input data written from
the recipe's validation set (prepare_input_data: real samples, their typical lengths, JSON with each
tensor as base64 of its raw bytes), the --shape of dynamic inputs, the bytes of the outputs (for
shared-memory buffers) and one model's Load under some perf settings (plan_load)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import UserError
from ..perfdata import describe_shapes, encode, read_samples, sample_shapes, served_shapes
from ..plugins import Recipe, validation_batches
from ..server import TritonServer
from ..shapes import served_dims
from ..underload import Expected

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Point:
    """One perf_analyzer load: closed loop (concurrency requests in flight) or, with request_rate
    (requests/s), open loop: requests issued on a schedule whether or not answers came back
    (`--request-rate-range R:R:1`, arrivals by `distribution`: poisson or constant)."""

    batch: int
    concurrency: int
    request_rate: float | None = None
    distribution: str = "poisson"


def sweep(
    mode: str, settings: dict[str, Any], instances: int = 1, max_batch_size: int = 1
) -> list[Point]:
    """The points of one sweep. instances: the served model's instance count; offline, with more than
    one, 2 x instances requests in flight is measured too (the batch capacity of the whole server:
    two in flight fill one instance, not two). max_batch_size 0 (an unbatched model): every request
    is one whole sample, so the batch sizes collapse to 1 (perf_analyzer runs without -b)."""
    if max_batch_size == 0:
        points = sweep(mode, settings, instances)
        return list(dict.fromkeys(Point(1, p.concurrency) for p in points))
    if mode == "offline":
        offline = settings["offline"]
        concurrencies = [int(c) for c in offline.get("concurrency", [1])]
        if instances > 1:
            concurrencies = sorted({*concurrencies, 2 * instances})
        return [Point(int(b), c) for b in offline["batch_sizes"] for c in concurrencies]
    online = settings["online"]
    return [Point(int(online.get("batch_size", 1)), int(c)) for c in online["concurrency"]]


def prepare_input_data(
    recipe: Recipe,
    params: dict[str, Any],
    samples: int,
    output: str | Path,
    unbatched: bool = False,
    input_data: str = "dataloader",
) -> dict[str, Any]:
    """perf_analyzer --input-data JSON from the validation split, one entry per sample with its shape,
    each tensor in its dtype as deploysnake.perfdata.encode writes it (base64 for float16/bfloat16
    and for large tensors, decimal otherwise).

    perf_analyzer stacks entries into a batch, so they must share a shape: along the recipe's dynamic
    axes (a sequence) every sample is cut or zero-padded to the median length of the validation
    batches, a realistic length that the CSVs and the report name ("tokens:1x20" -> 20 tokens).
    unbatched (triton.max_batch_size 0): a sample is one whole dataloader batch (a set, a graph),
    sent as one request; its axis 0 is cut to the median batch length, and batches shorter than that
    are left out (zero rows would be made-up members). A [batch] input's sample is sent as [1] (its
    served shape, dims [1] with reshape []).

    Raises UserError, before any perf job, for input_data "random" (perf.input_data) with an integer
    input: see refuse_random_integers."""
    batches = validation_batches(recipe, params, batch_size=min(samples, 256))
    if input_data == "random":
        refuse_random_integers({n: np.asarray(a) for n, a in batches[0]["inputs"].items()})
    lengths = _typical_lengths(recipe, batches)
    rows = max(1, int(np.median([len(b["ids"]) for b in batches])))
    data: list[dict[str, Any]] = []
    for batch in batches:
        if unbatched:
            if len(batch["ids"]) < rows:
                continue
            whole = {
                name: _fit(
                    np.asarray(array),
                    {
                        0: rows,
                        **{a: lengths[d] for a, d in recipe.dynamic_axes.get(name, {}).items()},
                    },
                )
                for name, array in batch["inputs"].items()
            }
            data.append({n: encode(a) for n, a in whole.items()})
            if len(data) >= samples:
                break
            continue
        for i in range(len(batch["ids"])):
            if len(data) >= samples:
                break
            entry = {}
            for name, array in batch["inputs"].items():
                sample = _fit(
                    np.asarray(array[i]),
                    {
                        axis - 1: lengths[dim]
                        for axis, dim in recipe.dynamic_axes.get(name, {}).items()
                    },
                )
                entry[name] = encode(sample)
            data.append(entry)
        if len(data) >= samples:
            break
    doc = {"data": data}
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(doc))
    log.info(
        "%d samples of %s for perf_analyzer in %s (dynamic lengths %s)",
        len(data),
        sorted(data[0]) if data else [],
        output,
        lengths or "none",
    )
    return doc


def refuse_random_integers(inputs: dict[str, NDArray[Any]]) -> None:
    """perf_analyzer's random data for an integer input are integers drawn over the dtype's range
    (ids like 1936311911; triton-inference-server/server#3512): not valid ids of an embedding table
    or indices into anything, so every request fails inside the model (Gather: index out of
    bounds), and nothing is measured. Bool inputs are fine. Raises UserError naming the inputs, with
    the validation data's range, and `perf.input_data: dataloader` as the fix."""
    integer = {n: a for n, a in inputs.items() if a.dtype.kind in "iu"}
    if not integer:
        return
    described = ", ".join(
        f"{n} ({a.dtype}, {int(a.min())}..{int(a.max())} in the validation data)"
        for n, a in integer.items()
    )
    raise UserError(
        f"perf.input_data is random, but {described} "
        f"{'is an integer input' if len(integer) == 1 else 'are integer inputs'}: perf_analyzer's "
        "random integers are not valid ids or indices (an embedding table's rows), so every request "
        "would fail inside the model and nothing would be measured. Set perf.input_data: dataloader "
        "(real validation samples, the default)"
    )


def _typical_lengths(recipe: Recipe, batches: list[dict[str, Any]]) -> dict[str, int]:
    """Median size of each named dynamic axis over the validation batches."""
    seen: dict[str, list[int]] = {}
    for batch in batches:
        for name, axes in recipe.dynamic_axes.items():
            if name in batch["inputs"]:
                for axis, dim in axes.items():
                    seen.setdefault(dim, []).append(
                        int(np.asarray(batch["inputs"][name]).shape[axis])
                    )
    return {dim: max(1, int(np.median(sizes))) for dim, sizes in seen.items()}


def _fit(sample: NDArray[Any], sizes: dict[int, int]) -> NDArray[Any]:
    for axis, size in sizes.items():
        if sample.shape[axis] > size:
            sample = np.take(sample, range(size), axis=axis)
        elif sample.shape[axis] < size:
            pad = [(0, 0)] * sample.ndim
            pad[axis] = (0, size - sample.shape[axis])
            sample = np.pad(sample, pad)
    return sample


def input_shapes(input_data: str | Path | None, io: dict[str, Any], max_batch_size: int = 1) -> str:
    """The per-sample input shapes perf_analyzer sends, for the CSV ("image:1x8x8"): the input data's
    where given, else the served dims with dynamic dims at 1 (deploysnake.perfdata)."""
    return describe_shapes(served_shapes(io, input_data, max_batch_size), io)


def dynamic_shapes(
    io: dict[str, Any], prepared: str | Path, max_batch_size: int = 1
) -> dict[str, list[int]]:
    """Per-sample shapes of the inputs that have dynamic dims in their served dims (perf_analyzer
    --shape): besides the batch; unbatched (max_batch_size 0), axis 0 too."""
    first = sample_shapes(prepared)
    return {
        t["name"]: first[t["name"]]
        for t in io["inputs"]
        if any(d < 0 for d in served_dims(t, max_batch_size)[0]) and t["name"] in first
    }


def output_bytes(io: dict[str, Any], longest: int = 4096, max_batch_size: int = 1) -> int:
    """Bytes of one sample's outputs (one request's, unbatched), dynamic dims taken as longest."""
    total = 0
    for tensor in io["outputs"]:
        dims = served_dims(tensor, max_batch_size)[0]
        # A dynamic non-batch dim has no size until run time: size the buffer for the longest input dim.
        elements = int(np.prod([d if d > 0 else longest for d in dims])) if dims else 1
        total += elements * np.dtype(tensor["dtype"]).itemsize
    return total


def measured_output_bytes(
    server: TritonServer, model_name: str, io: dict[str, Any], input_data: str | Path
) -> int | None:
    """Bytes of one sample's outputs as the server returns them: each sample of the perf input data
    sent alone (one request each, in its served shape), the largest sum of its outputs' raw bytes
    on the wire (a BYTES output's length-prefixed strings included). What the shared-memory output
    regions must hold per sample, where dims or strings leave the size open until run time. None
    where a sample cannot be sent (the sweep then reports that request's error itself)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    client = grpcclient.InferenceServerClient(server.grpc_url)
    largest = 0
    try:
        dtypes = {t["name"]: t["dtype"] for t in io["inputs"]}
        for sample in read_samples(input_data, dtypes):
            requests = []
            for tensor in io["inputs"]:
                array = np.ascontiguousarray(sample[tensor["name"]][np.newaxis])
                item = grpcclient.InferInput(
                    tensor["name"], list(array.shape), np_to_triton_dtype(array.dtype)
                )
                item.set_data_from_numpy(array)
                requests.append(item)
            response = client.infer(model_name, requests, client_timeout=60).get_response()
            largest = max(largest, sum(len(raw) for raw in response.raw_output_contents))
    except (InferenceServerException, KeyError, ValueError) as exc:
        log.warning("output sizes could not be measured (%s): sized from the dims", exc)
        return None
    finally:
        client.close()
    return largest


@dataclass(frozen=True)
class Load:
    """What perf_analyzer sends for one model under some perf settings, and how long a call may run."""

    data: str | Path | None  # the --input-data file; None: perf_analyzer's random data
    shapes: dict[str, list[int]]  # --shape of the inputs with dynamic dims
    output_size: int  # bytes of one sample's outputs (shared-memory buffers)
    timeout_s: float
    batched: bool = True  # False: max_batch_size 0, no -b
    verbose: bool = False  # perf_analyzer -v: each window's figures (the sweeps' spread)
    tensors: tuple[str, ...] = ()  # the model's input and output names (shm.turn's region names)
    # the in-process outputs of the perf samples: each point's answers under load are checked
    # against them (deploysnake.underload); None: not checked
    expected: Expected | None = None


def plan_load(
    io: dict[str, Any],
    settings: dict[str, Any],
    input_data: str | Path | None,
    max_batch_size: int = 1,
) -> Load:
    """What to send: max_batch_size is the served config's (0: whole samples, no -b)."""
    data = input_data if settings.get("input_data", "dataloader") == "dataloader" else None
    shapes = dynamic_shapes(io, input_data, max_batch_size) if input_data else {}
    longest = max((d for shape in shapes.values() for d in shape), default=4096)
    # Bound each call: at most max_trials windows plus start-up, whatever perf_analyzer does.
    timeout_s = 60.0 + 3 * settings["measurement_interval_ms"] / 1000.0 * int(
        settings["max_trials"]
    )
    tensors = tuple(t["name"] for t in io["inputs"] + io["outputs"])
    return Load(
        data,
        shapes,
        output_bytes(io, longest, max_batch_size),
        timeout_s,
        max_batch_size > 0,
        tensors=tensors,
    )
