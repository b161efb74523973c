"""Answers under load against the in-process outputs (deploysnake.underload, issue 32 item 3): the
expected outputs of a real ONNX file run by onnxruntime, each perf sample alone, and the comparison
of a response with them within the format's tolerance, on real arrays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploysnake import perfdata, underload
from deploysnake.contracts import Status
from deploysnake.tolerance import for_format, tolerance

TOLERANCE: dict[str, Any] = {
    "default": {"atol": 1.0e-4, "rtol": 1.0e-3},
    "outputs": {},
    "formats": {"onnx_fp16": {"atol": 1.0e-2, "rtol": 1.0e-2}},
}
IO = {
    "inputs": [{"name": "x", "dtype": "float32", "dims": [-1, 6], "batch_axis": 0}],
    "outputs": [
        {"name": "logits", "dtype": "float32", "dims": [-1, 3], "batch_axis": 0},
        {"name": "score", "dtype": "float32", "dims": [-1], "batch_axis": 0},  # [batch]: dims [1]
    ],
}


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> underload.Expected:
    """A real ONNX model (logits = x @ W, score = sum of logits over axis 1) and 10 perf samples."""
    folder = tmp_path_factory.mktemp("underload")
    weights = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["logits"]),
            helper.make_node("ReduceSum", ["logits", "axes"], ["score"], keepdims=0),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"]),
        ],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(np.array([1]), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, folder / "model.onnx")
    samples = np.random.default_rng(1).normal(size=(10, 6)).astype(np.float32)
    (folder / "input.json").write_text(
        json.dumps({"data": [{"x": perfdata.encode(s)} for s in samples]})
    )
    io_json = folder / "io.json"
    io_json.write_text(json.dumps(IO))
    got = underload.prepare(
        folder / "model.onnx", "onnx", io_json, folder / "input.json", 256, TOLERANCE, 4
    )
    assert got is not None
    return got


def served(expected: underload.Expected, indices: list[int]) -> dict[str, np.ndarray]:
    """What a correct server answers for these samples: their rows, in served shapes (the [batch]
    output as [batch, 1])."""
    logits = np.stack([expected.outputs[i]["logits"] for i in indices])
    return {
        "logits": logits.astype(np.float32),
        "score": logits.sum(axis=1, dtype=np.float64).astype(np.float32)[:, None],
    }


def test_expected_outputs_are_each_sample_alone_in_its_model_shape(
    expected: underload.Expected,
) -> None:
    assert len(expected.samples) == len(expected.outputs) == 10
    assert expected.outputs[3]["logits"].shape == (3,)
    assert expected.outputs[3]["score"].shape == ()  # the [batch] output's row: one value
    assert expected.tolerances == {"logits": (1e-4, 1e-3), "score": (1e-4, 1e-3)}
    assert expected.runtime == "onnxruntime in-process, each sample alone"
    # against numpy on the same samples: onnxruntime's own answers, not copies of the inputs
    assert np.allclose(expected.outputs[3]["score"], expected.outputs[3]["logits"].sum(), atol=1e-5)


def test_a_correct_batch_passes_and_mixed_rows_fail_naming_output_and_rows(
    expected: underload.Expected,
) -> None:
    indices = underload.sample_indices(1, 4, 10)
    assert indices == [4, 5, 6, 7]
    assert underload.sample_indices(2, 4, 10) == [8, 9, 0, 1]  # wraps around, as perf_analyzer
    answer = served(expected, indices)
    assert underload.check_response(expected, indices, answer) == []
    # a batching fault: every row gets the batch's mean (the row_mixer recipe's fault)
    mixed = {
        "logits": np.repeat(answer["logits"].mean(0, keepdims=True), 4, axis=0),
        "score": answer["score"],
    }
    problems = underload.check_response(expected, indices, mixed)
    assert len(problems) == 1 and problems[0].startswith(
        "logits: rows [0, 1, 2, 3] (4 of 4) differ"
    )
    assert "(atol 0.0001)" in problems[0] and "(rtol 0.001)" in problems[0]
    # one row from another request: only that row is named
    swapped = {**answer, "logits": answer["logits"].copy()}
    swapped["logits"][2] = expected.outputs[0]["logits"]
    problems = underload.check_response(expected, indices, swapped)
    assert len(problems) == 1 and "logits: rows [2] (1 of 4) differ" in problems[0]
    # the [batch] output differing is compared in its model shape too
    shifted = {**answer, "score": answer["score"] + 1.0}
    assert underload.check_response(expected, indices, shifted)[0].startswith(
        "score: rows [0, 1, 2, 3] (4 of 4)"
    )


def test_a_formats_narrowed_section_gives_its_bounds_and_holds_no_other_format() -> None:
    """What a job's params carry (tolerance.for_format): the same bounds for its own format, and
    nothing of another format's entry, so changing that entry leaves the job's params as they were."""
    settings = {**TOLERANCE, "outputs": {"score": {"atol": 0.5, "rtol": 0.0}}, "batches": 2}
    for fmt in ("onnx_fp16", "onnx"):
        narrowed = for_format(settings, fmt)
        assert narrowed["batches"] == 2 and set(narrowed["formats"]) <= {fmt}
        for name in ("logits", "score"):
            assert tolerance(narrowed, fmt, name) == tolerance(settings, fmt, name)
    other = {
        **settings,
        "formats": {**settings["formats"], "onnx_int8": {"atol": 2.0, "rtol": 0.5}},
    }
    assert for_format(other, "onnx_fp16") == for_format(settings, "onnx_fp16")
    assert (
        for_format(other, "onnx") == for_format(settings, "onnx") != for_format(other, "onnx_int8")
    )


def test_the_formats_tolerance_applies(expected: underload.Expected) -> None:
    indices = [0, 1]
    answer = served(expected, indices)
    near = {**answer, "logits": answer["logits"] + 5e-3}  # float16's rounding, not a fault
    assert underload.check_response(expected, indices, near)  # beyond onnx's 1e-4
    fp16 = underload.Expected(
        expected.io,
        expected.max_batch_size,
        expected.samples,
        expected.outputs,
        {n: tolerance(TOLERANCE, "onnx_fp16", n) for n in ("logits", "score")},
        expected.runtime,
    )
    assert underload.check_response(fp16, indices, near) == []
    assert underload.check_response(fp16, indices, {**answer, "logits": answer["logits"] + 0.5})


def test_outcome_columns_and_reason() -> None:
    outcome = underload.Outcome(
        checked=4, differed=2, problems=["logits: rows [0] (1 of 1) differ"]
    )
    assert outcome.columns() == {"load_check": Status.FAILED, "load_check_requests": 4}
    reason = outcome.reason("batch 1, concurrency 2", "onnxruntime in-process, each sample alone")
    assert reason.startswith("outputs differ under load (a batching or threading fault")
    assert "2 of 4 side request(s)" in reason and "(batch 1, concurrency 2)" in reason
    assert reason.endswith(
        "onnxruntime in-process, each sample alone: logits: rows [0] (1 of 1) differ"
    )
    assert "\n" not in reason
    assert underload.Outcome(checked=4).columns()["load_check"] == Status.PASSED
    skipped = underload.Outcome(not_checked="perf_analyzer ended before the server answered it")
    assert skipped.columns() == {
        "load_check": "not checked: perf_analyzer ended before the server answered it",
        "load_check_requests": 0,
    }


def test_no_check_without_requests_or_runtime(tmp_path: Path, expected: underload.Expected) -> None:
    io_json = tmp_path / "io.json"
    io_json.write_text(json.dumps(IO))
    data = tmp_path / "input.json"
    data.write_text(json.dumps({"data": [{"x": perfdata.encode(expected.samples[0]["x"])}]}))
    assert underload.prepare(tmp_path / "m.onnx", "onnx", io_json, data, 8, TOLERANCE, 0) is None
    (tmp_path / "model.plan").write_bytes(b"not a plan")  # no in-process runtime: unchecked
    assert (
        underload.prepare(tmp_path / "model.plan", "tensorrt", io_json, data, 8, TOLERANCE, 4)
        is None
    )
