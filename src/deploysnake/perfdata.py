"""perf_analyzer's input data (results/perf_data/<model>/input.json): writing its tensors and reading
them back, one codec for every stage that sends or re-runs them (perf, the native baseline, the serving
floor, capacity, tuning).

The file is perf_analyzer's `--input-data` JSON, `{"data": [sample, ...]}`, each sample
`{input name: tensor}` in its served per-sample shape. A tensor takes one of perf_analyzer's two forms
(perf_analyzer's "input data" documentation, client/src/c++/perf_analyzer/docs/input_data.md):

- decimal: `{"content": [numbers, ...], "shape": [...]}`, the values flattened in C order;
- base64: `{"b64": "...", "shape": [...]}`, base64 of the tensor's raw little-endian bytes in the
  served dtype (perf_analyzer reads the bytes as the model input's datatype).

Float16 and bfloat16 tensors are always written as base64: perf_analyzer refuses them as numbers ("Can
not use explicit tensor description for fp16 datatype"; triton-inference-server/server#5606). Any
other tensor is written as base64 when it has more than B64_MIN_ELEMENTS values: decimal text of a
real-size image costs about 13 bytes per float32 value against 5.3 for base64 (64 samples of
3x224x224 float32: about 195 MB against 51 MB), and perf_analyzer parses it for every point.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .shapes import served_dims

# Tensors with more values than this (per sample) are written as base64; smaller ones stay decimal
# (readable, and about the same size: 4,096 float32 values are about 50 KB of decimal text).
B64_MIN_ELEMENTS = 4096
# Dtypes perf_analyzer takes only as base64.
ALWAYS_B64 = frozenset({"float16", "bfloat16"})


def _dtype(name: str | np.dtype[Any]) -> np.dtype[Any]:
    """numpy's dtype of a name; bfloat16 through ml_dtypes (onnx's dependency), imported only then."""
    if str(name) == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def encode(sample: NDArray[Any]) -> dict[str, Any]:
    """One tensor of one --input-data entry, in its own dtype: base64 of its little-endian bytes for
    float16 / bfloat16 and for more than B64_MIN_ELEMENTS values, else decimal; a string (BYTES)
    tensor as JSON strings. A 0-d sample goes as [1] (dims [1], reshape [])."""
    sample = np.asarray(sample)
    if sample.ndim == 0:
        sample = sample.reshape(1)
    shape = [int(d) for d in sample.shape]
    if sample.dtype.kind in "OSU":  # a string (BYTES) tensor: JSON strings, sent as BYTES
        content = [v.decode() if isinstance(v, bytes) else str(v) for v in sample.ravel().tolist()]
        return {"content": content, "shape": shape}
    if sample.dtype.name in ALWAYS_B64 or sample.size > B64_MIN_ELEMENTS:
        raw = np.ascontiguousarray(sample, dtype=sample.dtype.newbyteorder("<")).tobytes()
        return {"b64": base64.b64encode(raw).decode("ascii"), "shape": shape}
    return {"content": sample.ravel().tolist(), "shape": shape}


def decode(value: Mapping[str, Any], dtype: str | np.dtype[Any]) -> NDArray[Any]:
    """A tensor of an --input-data entry as a numpy array of `dtype` (the served input's) and its
    `shape`, from either form. Raises ValueError where the values do not fill the shape (e.g. base64
    bytes written in another dtype)."""
    target = _dtype(dtype)
    shape = [int(d) for d in value["shape"]]
    if "b64" in value:
        raw = base64.b64decode(value["b64"])
        array = np.frombuffer(raw, dtype=target.newbyteorder("<")).astype(target)
    elif target.kind == "O":  # strings, as the dataloader gave them
        array = np.empty(len(value["content"]), dtype=object)
        array[:] = [str(v) for v in value["content"]]
    else:
        array = np.asarray(value["content"]).astype(target)
    if array.size != int(np.prod(shape)):
        raise ValueError(
            f"perf input data: {array.size} values of {target} do not fill shape {shape}"
        )
    return array.reshape(shape)


def read_samples(
    path: str | Path, dtypes: Mapping[str, str], limit: int | None = None
) -> list[dict[str, NDArray[Any]]]:
    """The samples of an input.json (at most `limit`), each {input name: array in its served per-sample
    shape}, decoded with dtypes[name] (io.json's dtypes)."""
    data = json.loads(Path(path).read_text())["data"]
    return [
        {name: decode(value, dtypes[name]) for name, value in entry.items()}
        for entry in data[:limit]
    ]


def sample_shapes(path: str | Path) -> dict[str, list[int]]:
    """The served per-sample shape of each input in the first sample of an input.json (every sample
    has the same shapes: prepare_input_data cuts and pads the dynamic axes to one length)."""
    first = json.loads(Path(path).read_text())["data"][0]
    return {name: [int(d) for d in value["shape"]] for name, value in first.items()}


def describe_shapes(shapes: Mapping[str, list[int]], io: Mapping[str, Any]) -> str:
    """The `input_shapes` column of perf and native rows: per-sample served shapes in io.json's input
    order, e.g. "categorical:3 numeric:4" or "tokens:20" (20 tokens)."""
    order = [t["name"] for t in io["inputs"] if t["name"] in shapes]
    order += [n for n in shapes if n not in order]
    return " ".join(f"{n}:{'x'.join(map(str, shapes[n]))}" for n in order)


def served_shapes(
    io: Mapping[str, Any], input_data: str | Path | None, max_batch_size: int = 1
) -> dict[str, list[int]]:
    """What perf_analyzer sends per sample: the input data's shapes where there is a file, else the
    served dims with every dynamic dim at 1 (perf_analyzer's random data without --shape)."""
    if input_data and Path(input_data).is_file():
        return sample_shapes(input_data)
    return {
        t["name"]: [d if d > 0 else 1 for d in served_dims(t, max_batch_size)[0]]
        for t in io["inputs"]
    }


def batches(
    samples: list[dict[str, NDArray[Any]]], batch: int, max_bytes: float = 256e6
) -> list[dict[str, NDArray[Any]]]:
    """The requests perf_analyzer makes of these samples at -b batch, in served shapes ([batch,
    *per-sample shape]): batch consecutive samples per request, wrapping around, as many distinct
    requests as the samples give (they cycle after len(samples) / gcd(len(samples), batch)), at most
    max_bytes of them (at least one)."""
    count = len(samples)
    per_call = batch * sum(a.nbytes for a in samples[0].values())
    calls = max(1, min(count // math.gcd(count, batch), int(max_bytes // max(per_call, 1))))
    out = []
    for call in range(calls):
        rows = [samples[(call * batch + i) % count] for i in range(batch)]
        out.append({name: np.stack([r[name] for r in rows]) for name in samples[0]})
    return out
