"""Every Triton data type through the real tritonserver and both bundled runners (issue 30 item 1):
string (BYTES, length-prefixed on the wire) inputs and outputs, integers of every width, bool,
float16, bfloat16; 80 inputs and outputs; the config's TYPE_* from the library maps. Small ONNX graphs written here."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from deploysnake import dtypes, repository, server
from deploysnake.accuracy import infer_served
from deploysnake.errors import UserError
from deploysnake.measuring import floor, workload
from deploysnake.runtime import ArtifactRuntime

TRITON = {
    "max_batch_size": 16,
    # A queue delay, so concurrent requests of different sizes meet in one batch.
    "dynamic_batching": {"preferred_batch_sizes": [], "max_queue_delay_us": 200_000},
    "instances": {"cpu": 1},
}
NUMERIC = [
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "int8",
    "int16",
    "int32",
    "int64",
    "float16",
    "float64",
    "bool",
]


def _write(
    path: Path,
    inputs: list[tuple[str, str, list[int]]],
    nodes: list[Any],
    outputs: list[tuple[str, str, list[int]]],
    initializers: tuple[Any, ...] = (),
) -> dict[str, Any]:
    """An ONNX file of these nodes and its io.json entries (batch on axis 0)."""

    def info(name: str, dtype: str, dims: list[int]) -> Any:
        return helper.make_tensor_value_info(name, dtypes.onnx_type(dtype), ["batch", *dims])

    graph = helper.make_graph(
        nodes, "g", [info(*t) for t in inputs], [info(*t) for t in outputs], list(initializers)
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    io = {
        kind: [{"name": n, "dtype": d, "dims": [-1, *dims]} for n, d, dims in tensors]
        for kind, tensors in (("inputs", inputs), ("outputs", outputs))
    }
    return {"format": "onnx", "artifact": path.name, **io}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    out = tmp_path_factory.mktemp("dtypes")
    found = {}
    # Strings in, numbers out: the in-process runner reads BYTES; every numeric width round-trips.
    ins = [("text", "object", [1])] + [(f"x_{d}", d, [2]) for d in NUMERIC]
    nodes = [
        helper.make_node("Equal", ["text", "hello"], ["is_hello"]),
        *(helper.make_node("Identity", [f"x_{d}"], [f"y_{d}"]) for d in NUMERIC),
    ]
    graph_outs = [("is_hello", "bool", [1])] + [(f"y_{d}", d, [2]) for d in NUMERIC]
    path = out / "strings_in.onnx"
    hello = helper.make_tensor("hello", TensorProto.STRING, [], [b"hello"])
    io = _write(path, ins, nodes, graph_outs, (hello,))
    found["strings_in"] = (path, io)
    # A string output too: served by the python runner whatever the flavour asked.
    path = out / "strings_out.onnx"
    io = _write(
        path,
        [("text", "object", [1])],
        [helper.make_node("Identity", ["text"], ["echo"])],
        [("echo", "object", [1])],
    )
    found["strings_out"] = (path, io)
    # bfloat16 in and out (ONNX Runtime's numpy interface has none: the runtime goes through
    # OrtValues), beside a float32 computed from it.
    path = out / "bf16.onnx"
    io = _write(
        path,
        [("x", "bfloat16", [2])],
        [
            helper.make_node("Identity", ["x"], ["y"]),
            helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT),
        ],
        [("y", "bfloat16", [2]), ("f", "float32", [2])],
    )
    found["bf16"] = (path, io)
    # More tensors than the in-process backend once held (64): no limit of ours.
    wide = [(f"w{k}", "float32", [1]) for k in range(80)]
    path = out / "wide.onnx"
    io = _write(
        path,
        wide,
        [helper.make_node("Identity", [f"w{k}"], [f"v{k}"]) for k in range(80)],
        [(f"v{k}", "float32", [1]) for k in range(80)],
    )
    found["wide"] = (path, io)
    return found


def _inputs(io: dict[str, Any], rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    words = np.array(["hello", "héllo wörld", "", "a\x00b", "hello " * 40], dtype=object)
    out: dict[str, np.ndarray] = {}
    for t in io["inputs"]:
        dtype = np.dtype(t["dtype"])
        shape = (rows, *t["dims"][1:])
        if dtype.kind == "O":
            out[t["name"]] = words[rng.integers(0, len(words), shape)]
        elif dtype.kind == "b":
            out[t["name"]] = rng.integers(0, 2, shape).astype(bool)
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            out[t["name"]] = np.array([info.min, info.max], dtype=dtype)[rng.integers(0, 2, shape)]
        else:
            out[t["name"]] = rng.standard_normal(shape).astype(dtype)
    return out


def test_config_types_come_from_the_library_maps() -> None:
    assert dtypes.config_type("object") == repository.mc.TYPE_STRING
    assert dtypes.config_type("bfloat16") == repository.mc.TYPE_BF16
    assert dtypes.config_type("uint32") == repository.mc.TYPE_UINT32
    assert dtypes.from_config("TYPE_STRING") == "object"
    assert dtypes.from_config("TYPE_BF16") == "bfloat16"
    with pytest.raises(
        UserError, match="output 'z' has dtype complex64, which Triton cannot carry"
    ):
        dtypes.config_type("complex64", "output 'z'")


@pytest.mark.parametrize("flavour", ["inprocess", "python"])
def test_every_dtype_round_trips_through_the_server(
    flavour: str, models: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    for name, (path, io) in models.items():
        json_path = tmp_path / f"{name}.json"
        json_path.write_text(json.dumps(io))
        model_dir = repository.write_repository(
            name, path, json_path, TRITON, "cpu", flavour, tmp_path / name
        )
        repo.mkdir(exist_ok=True)
        model_dir.rename(repo / model_dir.name)
        text = (repo / model_dir.name / "config.pbtxt").read_text()
        if name.startswith("strings"):
            assert 'name: "text"\n  data_type: TYPE_STRING\n  dims: 1' in text, text
        if name == "bf16":
            assert 'name: "x"\n  data_type: TYPE_BF16\n' in text, text
    assert (repo / "strings_out_onnx" / "1" / "model.py").exists()  # the python runner
    runner = "deploysnake" if flavour == "inprocess" else "python"
    binary = server.locate("bundled", runner)
    assert binary.flavour == flavour
    sizes = [1, 3, 5, 2]
    with server.TritonServer(
        repo, binary, tmp_path / "server.log", readiness_timeout_s=120
    ) as running:
        for name, (path, io) in models.items():
            batches = [_inputs(io, rows, seed) for seed, rows in enumerate(sizes)]
            local = ArtifactRuntime(
                path, "onnx", [t["name"] for t in io["inputs"]], [t["name"] for t in io["outputs"]]
            )
            with ThreadPoolExecutor(len(sizes)) as pool:  # joined by the dynamic batcher
                served = list(
                    pool.map(
                        lambda x, n=name, i=io: infer_served(
                            running, f"{n}_onnx", i, x, timeout_s=30
                        ),
                        batches,
                    )
                )
            for x, got in zip(batches, served, strict=True):
                want = local(x)
                for t in io["outputs"]:
                    assert got[t["name"]].dtype == want[t["name"]].dtype, t
                    np.testing.assert_array_equal(got[t["name"]], want[t["name"]])
            if name == "strings_in":
                assert served[0]["is_hello"].any() or not (batches[0]["text"] == "hello").any()
        # Shared-memory output regions are sized from what the server returns, strings included.
        texts = ["hello", "héllo wörld " * 30, ""]
        data = {"data": [{"text": {"content": [t], "shape": [1]}} for t in texts]}
        (tmp_path / "input.json").write_text(json.dumps(data, ensure_ascii=False))
        io = models["strings_out"][1]
        got = workload.measured_output_bytes(
            running, "strings_out_onnx", io, tmp_path / "input.json"
        )
        assert got == max(4 + len(t.encode()) for t in texts)
    log = (tmp_path / "server.log").read_text()
    assert ("deploysnake backend: Python runner in the server process" in log) == (
        flavour == "inprocess"
    )


def test_floor_serves_strings(
    models: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path
) -> None:
    """The serving floor of a model with string inputs and outputs: an ONNX graph ONNX Runtime runs."""
    path, io = models["strings_out"]
    floor.floor_onnx(models["strings_in"][1], tmp_path / "a.onnx")
    floor.floor_onnx(io, tmp_path / "b.onnx")
    x = {"text": np.array([["a"], ["bc"], ["d"]], dtype=object)}
    got = ArtifactRuntime(tmp_path / "b.onnx", "onnx", ["text"], ["echo"])(x)
    assert (
        got["echo"].shape == (3, 1)
        and got["echo"].dtype == object
        and set(got["echo"].ravel()) == {""}
    )
    names = [t["name"] for t in models["strings_in"][1]["inputs"]]
    feed = _inputs(models["strings_in"][1], 2, 0)
    out = ArtifactRuntime(
        tmp_path / "a.onnx", "onnx", names, [t["name"] for t in models["strings_in"][1]["outputs"]]
    )(feed)
    assert out["y_uint16"].dtype == np.uint16 and out["y_uint16"].shape == (2, 2)


def test_string_inputs_need_their_data(
    models: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path
) -> None:
    """Strings cannot be generated: without a dataloader the first job says so; a dataloader that
    yields numpy's fixed-width str instead of an object array is told what to yield."""
    from deploysnake import sources

    path, _ = models["strings_out"]
    with pytest.raises(UserError, match="input 'text' is a string tensor and no dataloader"):
        sources.write_description("echo", {"onnx": str(path)}, tmp_path / "a.json")
    loader = tmp_path / "dataloader.py"
    loader.write_text(
        "import numpy as np\n"
        "def batches(split, batch_size, params):\n"
        "    yield {'ids': np.arange(2), 'inputs': {'text': np.array([['a'], ['b']])},"
        " 'labels': np.zeros(2)}\n"
    )
    with pytest.raises(UserError, match=r"is <U1, but .* takes strings: yield an object array"):
        sources.write_description(
            "echo", {"onnx": str(path), "dataloader": str(loader)}, tmp_path / "b.json"
        )
    loader.write_text(
        loader.read_text().replace(
            "np.array([['a'], ['b']])", "np.array([['a'], ['b']], dtype=object)"
        )
    )
    doc = sources.write_description(
        "echo", {"onnx": str(path), "dataloader": str(loader)}, tmp_path / "c.json"
    )
    assert doc["inputs"][0]["dtype"] == "object"
