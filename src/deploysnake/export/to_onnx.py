"""ONNX formats: torch's exporter on the recipe's model, a TorchScript file or a torch.export
program; tf2onnx on a SavedModel; the dynamic axes marked, paths of the machine taken out of the
file (location_free_onnx, location_free_text) and the IO read back from the written file
(describe_onnx)."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import sources
from ..plugins import Recipe
from .torch_io import dynamic_shapes, example_batch, output_order

log = logging.getLogger(__name__)


def export_onnx(
    model: torch.nn.Module,
    recipe: Recipe,
    artifact: Path,
    opset: int,
    dynamo: bool,
    axes: dict[str, int | None] | None = None,
) -> dict[str, Any]:
    """axes: each tensor's batch axis (None: none), as probed; absent names: axis 0."""
    axes = axes or {}

    def batch_of(name: str) -> dict[int, str]:
        axis = axes.get(name, 0)
        return {} if axis is None else {axis: "batch"}

    example = example_batch(recipe)
    output_names = output_order(model, recipe)
    kwargs: dict[str, Any] = {"dynamo": dynamo}
    if dynamo:
        kwargs["dynamic_shapes"] = dynamic_shapes(recipe, axes)
        kwargs["external_data"] = False  # one self-contained file, as Triton's model.onnx
    else:
        kwargs["dynamic_axes"] = {
            name: {**batch_of(name), **recipe.dynamic_axes.get(name, {})}
            for name in recipe.input_names + output_names
        }
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            example,
            str(artifact),
            input_names=recipe.input_names,
            output_names=output_names,
            opset_version=opset,
            **kwargs,
        )
    if recipe.dynamic_axes:
        mark_dynamic(artifact, recipe.dynamic_axes)
    location_free_onnx(artifact)
    return describe_onnx(artifact)


# Exporters' debugging records that name the build machine's paths (the checkout, the venv).
ONNX_PATH_METADATA = ("pkg.torch.onnx.stack_trace",)


def location_free_onnx(artifact: Path) -> None:
    """Rewrite an ONNX file without what names the machine it was built on, so the same model gives
    the same bytes wherever the checkout lives: the node metadata in ONNX_PATH_METADATA (the dynamo
    exporter's Python stack trace per node, with absolute paths) and every doc_string (tf2onnx's
    "converted from <path>", the TorchScript-based exporter's source locations). Weights, graph and
    the other metadata (module names, scopes) are kept."""
    import onnx

    # The graph only: tensors in a side file keep their (relative) locations, their data untouched.
    proto = onnx.load(str(artifact), load_external_data=False)

    def clean(holder: onnx.GraphProto | onnx.FunctionProto) -> None:
        holder.doc_string = ""
        for node in holder.node:
            node.doc_string = ""
            kept = [p for p in node.metadata_props if p.key not in ONNX_PATH_METADATA]
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
            for attribute in node.attribute:  # control flow (If, Loop, Scan) holds subgraphs
                if attribute.HasField("g"):  # (reading an unset g would add an empty one)
                    clean(attribute.g)
                for graph in attribute.graphs:
                    clean(graph)

    proto.doc_string = ""
    clean(proto.graph)
    for function in proto.functions:
        clean(function)
    onnx.save(proto, str(artifact))


def mark_dynamic(artifact: Path, dynamic_axes: dict[str, dict[int, str]]) -> None:
    """Declare the recipe's dynamic axes in the ONNX graph's IO. The dynamo exporter writes the
    example's length into some outputs' shapes (an LSTM's: -1 x 12 x 5 for a dynamic sequence), which
    the graph does not depend on; left so, Triton would reject other lengths."""
    import onnx

    proto = onnx.load(str(artifact), load_external_data=False)
    changed = False
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        for axis, name in dynamic_axes.get(value.name, {}).items():
            if axis < len(dims) and dims[axis].dim_param != name:
                dims[axis].Clear()
                dims[axis].dim_param = name
                changed = True
    if changed:
        onnx.save(proto, str(artifact))


def describe_onnx(artifact: Path) -> dict[str, Any]:
    """Inputs and outputs read back from the ONNX file: names, dtypes, dims (-1: dynamic), in the
    file's order (export() puts them in the recipe's)."""
    import onnx

    graph = onnx.load(str(artifact), load_external_data=False).graph

    def describe(values: Any) -> list[dict[str, Any]]:
        described = []
        for value in values:
            tensor = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
            described.append({"name": value.name, "dtype": str(np.dtype(dtype)), "dims": dims})
        return described

    return {"inputs": describe(graph.input), "outputs": describe(graph.output)}


def export_onnx_from_savedmodel(savedmodel: Path, artifact: Path, opset: int) -> dict[str, Any]:
    """tf2onnx on the SavedModel (its from_keras path fails with Keras 3), in a subprocess: it prints
    a lot and keeps TensorFlow state that is better not shared with this process."""
    command = [
        sys.executable,
        "-m",
        "tf2onnx.convert",
        "--saved-model",
        str(savedmodel),
        "--opset",
        str(opset),
        "--output",
        str(artifact),
    ]
    log.info("running %s", " ".join(command))
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL
    )
    log.info("tf2onnx output:\n%s", (done.stdout + done.stderr)[-4000:])
    if done.returncode != 0:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        raise RuntimeError(f"tf2onnx failed (exit {done.returncode}): {lines[-1] if lines else ''}")
    location_free_onnx(artifact)
    return describe_onnx(artifact)


def location_free_text(text: str) -> str:
    """text with this machine's folders (the checkout, the working directory, the Python
    environment) written as <checkout>, <workdir>, <venv>, <python>: a failure's message and
    traceback in io.json name no path of the build machine."""
    places = {
        str(Path(__file__).resolve().parents[2]): "<checkout>",
        str(Path.cwd().resolve()): "<workdir>",
        sys.prefix: "<venv>",
        sys.base_prefix: "<python>",
    }
    for place in sorted(places, key=len, reverse=True):  # the innermost folder first
        if place != "/":
            text = text.replace(place, places[place])
    return text


def torchscript_to_onnx(
    doc: dict[str, Any], settings: dict[str, Any], artifact: Path, opset: int
) -> None:
    import warnings

    module = torch.jit.load(doc["path"], map_location="cpu").eval()
    example = sources.example_data(doc, settings, 4)
    tensors = tuple(torch.from_numpy(example[t["name"]]) for t in doc["inputs"])
    arguments = module.forward.schema.arguments[1:]
    if len(arguments) == 1 and str(arguments[0].type).startswith("Dict["):
        # Measured (torch 2.x): a dict argument leaves the ONNX graph's inputs untyped, and a
        # traced wrapper building the dict is refused by the tracer; recorded as this format's
        # failure, the TorchScript format goes on.
        raise RuntimeError(
            f"forward() takes one Dict[str, Tensor] argument ({arguments[0].name}), which torch.onnx's "
            "TorchScript-based exporter does not convert; the torchscript format serves it (bound by key)"
        )
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tensors,
            str(artifact),
            input_names=[t["name"] for t in doc["inputs"]],
            output_names=[t["name"] for t in doc["outputs"]],
            opset_version=opset,
            dynamo=False,  # the dynamo exporter takes nn.Modules, not TorchScript
            dynamic_axes={
                t["name"]: {0: "batch", **{int(a): d for a, d in t["dynamic"].items()}}
                for t in doc["inputs"] + doc["outputs"]
            },
        )


def program_to_onnx(doc: dict[str, Any], name: str, artifact: Path, opset: int) -> None:
    """ONNX of a torch.export program: torch.onnx's dynamo exporter takes the ExportedProgram as it
    is (its dynamic axes included), with the description's input and output names."""
    program = sources.load_program(Path(doc["path"]), f"models.{name}")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            program,
            (),
            str(artifact),
            input_names=[t["name"] for t in doc["inputs"]],
            output_names=[t["name"] for t in doc["outputs"]],
            opset_version=opset,
            dynamo=True,
            external_data=False,  # one self-contained file, as Triton's model.onnx
        )
