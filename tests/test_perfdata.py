"""perf_analyzer's input data (deploysnake.perfdata): both of its tensor forms decode to the same
arrays, float16 and large tensors are written as base64, and the native baseline runs the samples
and shapes perf_analyzer is sent (issue 29, item 3)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from deploysnake import native, perf, perfdata
from deploysnake.plugins import Recipe

from .conftest import PARAMS


@pytest.mark.parametrize(
    ("dtype", "shape"),
    [
        ("float32", (3, 8)),
        ("float16", (64,)),
        ("int64", (20,)),
        ("uint8", (8, 8, 1)),
        ("bool", (5,)),
        ("float32", (3, 40, 40)),  # 4,800 values: base64 by size
    ],
)
def test_b64_and_decimal_forms_decode_to_the_same_array(dtype: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    array = (rng.random(shape) * 16).astype(dtype)
    decimal = {"content": array.ravel().tolist(), "shape": list(shape)}
    raw = {"b64": base64.b64encode(array.astype(array.dtype.newbyteorder("<")).tobytes()).decode()}
    b64 = {**raw, "shape": list(shape)}
    for form in (decimal, b64, perfdata.encode(array)):
        got = perfdata.decode(json.loads(json.dumps(form)), dtype)
        assert got.dtype == np.dtype(dtype) and got.shape == shape
        np.testing.assert_array_equal(got, array)
    written = perfdata.encode(array)
    large = array.size > perfdata.B64_MIN_ELEMENTS
    assert ("b64" in written) == (dtype == "float16" or large), written.keys()
    # base64 is of the little-endian bytes, whatever the machine
    if "b64" in written:
        assert base64.b64decode(written["b64"]) == array.astype(f"<{array.dtype.str[1:]}").tobytes()


def test_bfloat16_is_written_as_base64() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    array = np.arange(6, dtype=np.float32).astype(ml_dtypes.bfloat16)
    written = perfdata.encode(array)
    assert set(written) == {"b64", "shape"} and len(base64.b64decode(written["b64"])) == 12
    np.testing.assert_array_equal(perfdata.decode(written, "bfloat16"), array)


def test_base64_of_another_dtype_is_refused() -> None:
    written = perfdata.encode(np.zeros(64, dtype=np.float16))
    with pytest.raises(ValueError, match="do not fill shape"):
        perfdata.decode(written, "float32")


def test_native_baseline_runs_the_perf_samples_and_shapes(
    recipe: Recipe, exported: dict[str, Path], tmp_path: Path
) -> None:
    """The in-process baseline's calls are perf_analyzer's: input.json's samples, batch consecutive
    ones per call, and its rows record the same input_shapes as the perf rows."""
    data = tmp_path / "input.json"
    perf.prepare_input_data(recipe, PARAMS, 16, data)
    io = json.loads(exported["onnx/io"].read_text())
    samples = perfdata.read_samples(data, {t["name"]: t["dtype"] for t in io["inputs"]})
    assert len(samples) == 16
    name = io["inputs"][0]["name"]
    calls = native.perf_batches(io, samples, 8)
    assert len(calls) == 2  # 16 samples, 8 per call: two distinct calls, then the data cycles
    np.testing.assert_array_equal(calls[1][name], np.stack([s[name] for s in samples[8:16]]))
    wrapped = native.perf_batches(io, samples, 12)  # 16 / gcd(16, 12) = 4 calls, wrapping around
    assert len(wrapped) == 4
    np.testing.assert_array_equal(
        wrapped[1][name], np.stack([s[name] for s in samples[12:16] + samples[0:8]])
    )
    rows = native.measure(
        "digits",
        "onnx",
        "cpu",
        exported["onnx"],
        exported["onnx/io"],
        [1, 8],
        1,
        5.0,
        4,
        tmp_path / "n.csv",
        input_data=data,
    )
    expected = perf.input_shapes(data, io)
    assert expected == f"{name}:{'x'.join(map(str, samples[0][name].shape))}"
    assert [(r["input_shapes"], r["input_data"]) for r in rows] == [(expected, "dataloader")] * 2
    random_rows = native.measure(
        "digits",
        "onnx",
        "cpu",
        exported["onnx"],
        exported["onnx/io"],
        [4],
        1,
        5.0,
        4,
        tmp_path / "r.csv",
        input_data=data,
        perf_input="random",
    )
    assert [(r["input_shapes"], r["input_data"]) for r in random_rows] == [(expected, "random")]
