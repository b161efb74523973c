"""The serving floor: a model with the served model's inputs and outputs that computes nothing,
served with the same configuration and runner and measured the same way. What it serves is the ceiling of
the serving path itself on this machine, whatever the model: beside an online sweep it tells whether
the model or the path limits single-sample traffic.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from ..contracts import ServedSettings, Target
from ..dtypes import is_string, onnx_type

FLOOR = "floor"  # the floor model's name in its repository


def floor_onnx(io: dict[str, Any], path: str | Path, like: str | Path | None = None) -> Path:
    """Write an ONNX graph with io.json's inputs and outputs (names, dtypes, dims; -1 dims dynamic)
    whose every output is zeros (empty strings for a string output): batch from the first input
    (of any dtype, strings too), other dims as declared (a dynamic one: 1). like: an exported
    ONNX file whose IR version and opsets to reuse. Raises ValueError (onnx.helper) for a dtype
    ONNX has no type for."""
    import onnx
    from onnx import TensorProto, helper

    def info(tensor: dict[str, Any], prefix: str) -> Any:
        dims = [
            f"{prefix}{k}" if (k == 0 or int(d) < 0) else int(d)
            for k, d in enumerate(tensor["dims"])
        ]
        return helper.make_tensor_value_info(tensor["name"], onnx_type(tensor["dtype"]), dims)

    first = io["inputs"][0]["name"]
    nodes = [
        helper.make_node("Shape", [first], ["in_shape"]),
        helper.make_node("Slice", ["in_shape", "zero", "one", "zero"], ["batch"]),
    ]
    initializers = [
        helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
    ]
    for k, out in enumerate(io["outputs"]):
        rest = [int(d) if int(d) > 0 else 1 for d in out["dims"][1:]]
        initializers.append(helper.make_tensor(f"rest{k}", TensorProto.INT64, [len(rest)], rest))
        nodes.append(helper.make_node("Concat", ["batch", f"rest{k}"], [f"shape{k}"], axis=0))
        if is_string(out["dtype"]):  # ConstantOfShape makes no strings: "" expanded to the shape
            initializers.append(helper.make_tensor(f"empty{k}", TensorProto.STRING, [1], [b""]))  # type: ignore[list-item]
            nodes.append(helper.make_node("Expand", [f"empty{k}", f"shape{k}"], [out["name"]]))
            continue
        nodes.append(
            helper.make_node(
                "ConstantOfShape",
                [f"shape{k}"],
                [out["name"]],
                value=helper.make_tensor("v", onnx_type(out["dtype"]), [1], [0]),
            )
        )
    graph = helper.make_graph(
        nodes,
        FLOOR,
        [info(t, "in") for t in io["inputs"]],
        [info(t, "out") for t in io["outputs"]],
        initializers,
    )
    kwargs: dict[str, Any] = {"ir_version": 8, "opset_imports": [helper.make_opsetid("", 17)]}
    if like and Path(like).is_file():
        exported = onnx.load(str(like), load_external_data=False)
        kwargs = {"ir_version": exported.ir_version, "opset_imports": exported.opset_import}
    model = helper.make_model(graph, **kwargs)
    onnx.checker.check_model(model)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return Path(path)


def floor_repository(model_dir: str | Path, io: dict[str, Any], into: str | Path) -> Path:
    """A repository at `into` holding FLOOR: the served model folder `model_dir` (config.pbtxt and
    version 1) with its artifact replaced by floor_onnx, its name by FLOOR, and its runner told the
    format is ONNX (native repositories: platform onnxruntime_onnx). Batching, instances, runtime
    threads and IO stay the served model's. Returns `into`."""
    model_dir, into = Path(model_dir), Path(into)
    shutil.rmtree(into, ignore_errors=True)
    floor = into / FLOOR
    (floor / "1").mkdir(parents=True)
    cfg = text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())
    like = None
    for item in (model_dir / "1").iterdir():  # the runner files; not the artifact
        if item.suffix == ".py":
            shutil.copy2(item, floor / "1" / item.name)
        elif item.suffix == ".onnx":
            like = item
    cfg.name = FLOOR
    if cfg.platform:
        if cfg.platform == "tensorrt_plan":
            cfg.ClearField("optimization")  # a plan's CUDA graphs do not apply to ONNX Runtime
        cfg.platform = "onnxruntime_onnx"
        cfg.default_model_filename = "model.onnx"
    else:
        cfg.parameters["artifact"].string_value = "model.onnx"
        cfg.parameters["format"].string_value = "onnx"
    floor_onnx(io, floor / "1" / "model.onnx", like)
    (floor / "config.pbtxt").write_text(text_format.MessageToString(cfg))
    return into


def measure_floor(
    executable: str,
    model_dir: str | Path,
    io_json: str | Path,
    triton: dict[str, Any],
    settings: dict[str, Any],
    target: Target,
    served: ServedSettings,
    output: str | Path,
    server_log: str | Path,
    provenance: dict[str, str] | None = None,
    input_data: str | Path | None = None,
) -> list[dict[str, Any]]:
    """The online sweep of `settings` (the perf section) against the floor of the served model
    folder `model_dir`, served as `served` (its batching: an unbatched model is sent whole
    samples), on a server of its own (the `triton` section's binary and runner); rows as
    perf.measure's, with served_model "floor", written to `output`."""
    import json
    import tempfile

    from .. import server
    from . import perf

    io = json.loads(Path(io_json).read_text())
    with tempfile.TemporaryDirectory(prefix="deploysnake-floor-") as tmp:
        repository = floor_repository(model_dir, io, Path(tmp) / "repository")
        with server.from_settings(repository, triton, server_log) as running:
            return perf.measure(
                executable,
                running,
                target,
                replace(served, model_name=FLOOR),
                io_json,
                {**settings, "repeats": 0},  # the floor is a reference, not a headline figure
                "online",
                output,
                {**(provenance or {}), "served_model": FLOOR},
                input_data,
            )
