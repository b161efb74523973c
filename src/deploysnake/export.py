"""Export stage: the checkpointed model to TorchScript (trace, script) and ONNX, with an IO description.

The IO description (io.json) is read back from the exported artifact, not from the recipe, so the
Triton config describes what the server will really load.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from . import dtypes, modelfiles, shapes, sources
from .contracts import Status
from .errors import UserError
from .frameworks import load_state
from .plugins import Recipe

log = logging.getLogger(__name__)

# Batch used for tracing/export: >= 2 so exporters keep the batch dimension dynamic.
EXAMPLE_BATCH = 4


def _example(recipe: Recipe) -> tuple[torch.Tensor, ...]:
    inputs = recipe.model.example_inputs(EXAMPLE_BATCH)
    return tuple(inputs[name] for name in recipe.input_names)


def _as_tuple(out: Any, names: list[str]) -> tuple[torch.Tensor, ...]:
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
        return _as_tuple(self.model(*inputs), self.names)


def _exportable(model: torch.nn.Module, recipe: Recipe) -> torch.nn.Module:
    """The model as the tracer sees it: wrapped only when it returns a dict (other models' files keep
    their own module names)."""
    with torch.no_grad():
        out = model(*_example(recipe))
    return _NamedOutputs(model, recipe.output_names) if isinstance(out, dict) else model


def _output_order(model: torch.nn.Module, recipe: Recipe) -> list[str]:
    """OUTPUT_NAMES in the order the model returns them: a dict's key order (the ONNX exporters name
    a dict's values by position), else the recipe's."""
    with torch.no_grad():
        out = model(*_example(recipe))
    if isinstance(out, dict) and sorted(out) == sorted(recipe.output_names):
        return [str(k) for k in out]
    return recipe.output_names


def _describe(
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


def export_torchscript_trace(
    model: torch.nn.Module, recipe: Recipe, artifact: Path
) -> dict[str, Any]:
    example = _example(recipe)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter(
            "ignore", DeprecationWarning
        )  # torch.jit is deprecated in 2.13 but Triton's libtorch backend needs it
        traced = torch.jit.trace(_exportable(model, recipe), example)
        torch.jit.save(traced, str(artifact))
        location_free_torchscript(artifact)
        loaded = torch.jit.load(str(artifact))
        outputs = _as_tuple(loaded(*example), recipe.output_names)
    return {
        "inputs": _describe(recipe.input_names, [t.numpy() for t in example], recipe.dynamic_axes),
        "outputs": _describe(
            recipe.output_names, [t.numpy() for t in outputs], recipe.dynamic_axes
        ),
    }


def export_torchscript_script(
    model: torch.nn.Module, recipe: Recipe, artifact: Path
) -> dict[str, Any]:
    example = _example(recipe)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), str(artifact))
        location_free_torchscript(artifact)
        # A scripted dict is kept as is: the runtimes read its outputs by name.
        outputs = _as_tuple(torch.jit.load(str(artifact))(*example), recipe.output_names)
    return {
        "inputs": _describe(recipe.input_names, [t.numpy() for t in example], recipe.dynamic_axes),
        "outputs": _describe(
            recipe.output_names, [t.numpy() for t in outputs], recipe.dynamic_axes
        ),
    }


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


# Inductor's compile cache, under the working directory (ignored by git, kept between runs).
INDUCTOR_CACHE = Path(".cache") / "torchinductor"


def compile_aoti(program: Any, artifact: Path) -> None:
    """AOTInductor: compile a torch.export ExportedProgram ahead of time with this machine's C++
    compiler into one .pt2 package at artifact (torch._inductor.aoti_compile_and_package; CPU code
    where the program's weights are on CPU). Inductor's cache is shared between compiles: its
    precompiled torch headers are most of a small model's compile (docs/formats.md has the
    figures); entries are keyed by content and torch version. The cache is TORCHINDUCTOR_CACHE_DIR
    where set, else INDUCTOR_CACHE under the working directory (the project's folder, never
    torch's default /tmp/torchinductor_<user>, which other users' and runs' files share)."""
    import torch._inductor

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path.cwd() / INDUCTOR_CACHE))
    torch._inductor.aoti_compile_and_package(program, package_path=str(artifact))


def run_aoti(
    artifact: Path, names: list[str], inputs: dict[str, NDArray[Any]]
) -> list[NDArray[Any]]:
    """The outputs (in `names` order) of a .pt2 package run once on named numpy inputs given in the
    package's argument order, with the runtime that serves it (runtime.ArtifactRuntime)."""
    from .runtime import ArtifactRuntime

    outputs = ArtifactRuntime(artifact, "aoti", list(inputs), names)(inputs)
    return [outputs[n] for n in names]


def export_aoti(
    model: torch.nn.Module,
    recipe: Recipe,
    artifact: Path,
    axes: dict[str, int | None] | None = None,
) -> dict[str, Any]:
    """torch.export.export with the ONNX export's dynamic batch and DYNAMIC_AXES (dynamic_shapes),
    then AOTInductor (compile_aoti) into artifact (model.pt2); the package is loaded back and run on
    the example to describe its outputs. Raises what torch.export or Inductor raise (export()
    records it as the format's failure)."""
    example = _example(recipe)
    try:
        with torch.no_grad():
            program = torch.export.export(
                _exportable(model, recipe),
                example,
                dynamic_shapes=dynamic_shapes(recipe, axes or {}),
            )
    except Exception as exc:
        # A dynamic axis the model's code fixes (nn.LSTM's sequence in torch 2.13): torch.export
        # says so on a later line of its message; that line is the reason recorded.
        said = [line.strip(" -") for line in str(exc).splitlines() if "specialized it" in line]
        if not said:
            raise
        log.warning("torch.export failed:\n%s", exc)
        raise RuntimeError(
            f"torch.export cannot keep the dynamic axes: {said[0]} (the model's code fixes that "
            "axis, so no package of it takes other sizes; serve the model as onnx or torchscript)"
        ) from None
    compile_aoti(program, artifact)
    inputs = {n: t.numpy() for n, t in zip(recipe.input_names, example, strict=True)}
    outputs = run_aoti(artifact, recipe.output_names, inputs)
    return {
        "inputs": _describe(recipe.input_names, list(inputs.values()), recipe.dynamic_axes),
        "outputs": _describe(recipe.output_names, outputs, recipe.dynamic_axes),
    }


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

    example = _example(recipe)
    output_names = _output_order(model, recipe)
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


def location_free_torchscript(artifact: Path) -> None:
    """Rewrite a TorchScript archive without its debug members (*.debug_pkl: the exporting
    process's call stack, with absolute paths) so the same model gives the same bytes wherever the
    checkout lives; torch's writer then derives .data/serialization_id from the content instead of
    the random one. torch.jit.load (the loader Triton's libtorch backend uses too, torch::jit::load)
    reads it as before; error traces point into the archive's code/ instead of the Python source."""
    reader = torch._C.PyTorchFileReader(str(artifact))
    records = [
        (name, reader.get_record(name))
        for name in reader.get_all_records()
        if not name.endswith(".debug_pkl") and name != ".data/serialization_id"
    ]
    del reader
    # The writer names the archive's folder after the file: write one of the same name, then move.
    with tempfile.TemporaryDirectory(dir=artifact.parent) as tmp:
        target = Path(tmp) / artifact.name
        writer = torch._C.PyTorchFileWriter(str(target))
        for name, data in records:
            writer.write_record(name, data, len(data))
        writer.write_end_of_file()
        del writer
        os.replace(target, artifact)


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


def root_cause(exc: BaseException) -> str:
    """The innermost cause's first line: exporters wrap the useful message ("No ONNX function found
    for aten._linalg_eigh") in generic ones ("Failed to convert ... step 3/3")."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:400] if lines else ''}"


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


def failure(exc: BaseException) -> dict[str, Any]:
    """The io.json fields of a format that could not be made: its root cause and a traceback excerpt."""
    return {
        "status": Status.FAILED,
        "error": location_free_text(root_cause(exc)),
        "log_excerpt": location_free_text("".join(traceback.format_exception(exc)[-12:])[-4000:]),
        "inputs": [],
        "outputs": [],
    }


def in_recipe_order(io: dict[str, Any], recipe: Recipe, fmt: str) -> dict[str, Any]:
    """io's inputs and outputs matched to INPUT_NAMES / OUTPUT_NAMES by name, in the recipe's order
    (an exporter may list them in another); names missing from the file raise UserError with both
    lists, and an exporter's renaming (the legacy ONNX exporter's `name.1`) is said so."""
    for key, expected in (("inputs", recipe.input_names), ("outputs", recipe.output_names)):
        by_name = {t["name"]: t for t in io[key]}
        missing = [n for n in expected if n not in by_name]
        extra = [n for n in by_name if n not in expected]
        if missing or extra:
            renamed = [
                f"{n!r} became {e!r}" for n in missing for e in extra if e.startswith(f"{n}.")
            ]
            raise UserError(
                f"exported {fmt} has {key} {list(by_name)}, but model.py names {expected}"
                + (f": the exporter renamed {', '.join(renamed)}" if renamed else "")
                + " (an input and an output of the same name are renamed by exporters: give them distinct names)"
            )
        io[key] = [by_name[n] for n in expected]
    return io


def _probe(
    recipe: Recipe,
    params: dict[str, Any],
    checkpoint: str | Path,
    framework: str,
    model: torch.nn.Module | None,
) -> dict[str, list[list[int]]]:
    from .frameworks import source_model, source_outputs

    run: Callable[[dict[str, NDArray[Any]]], dict[str, NDArray[Any]]]
    if model is not None:
        torch_model = model

        def run(inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
            return source_outputs(torch_model, recipe, inputs)
    else:
        run = source_model(framework, recipe, params, checkpoint)
    try:
        return probe_batch_axes(recipe, run)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"{recipe.folder / 'model.py'}: running the model on example_inputs({shapes.PROBE_BATCHES[0]}) "
            f"and example_inputs({shapes.PROBE_BATCHES[1]}) to find each tensor's batch axis failed: "
            f"{root_cause(exc)}"
        ) from exc


def export(
    recipe: Recipe,
    params: dict[str, Any],
    checkpoint: str | Path,
    fmt: str,
    artifact: str | Path,
    io_json: str | Path,
    options: dict[str, Any],
    framework: str = "torch",
    savedmodel: str | Path | None = None,
) -> None:
    """Export one format; keras models export a SavedModel, and ONNX from that SavedModel."""
    if fmt not in ("torchscript_trace", "torchscript_script", "onnx", "aoti", "savedmodel"):
        raise UserError(
            f"format {fmt!r} is not exported from the checkpoint: choose torchscript_trace, "
            "torchscript_script, onnx, aoti or savedmodel"
        )
    artifact = Path(artifact)
    artifact.parent.mkdir(parents=True, exist_ok=True)
    model = load_state(recipe, params, checkpoint) if framework == "torch" else None
    probed = _probe(recipe, params, checkpoint, framework, model)
    axes = {name: shapes.find_batch_axis(seen) for name, seen in probed.items()}
    log.info("batch axes from the source model at batches %s: %s", shapes.PROBE_BATCHES, axes)
    # A model that a batched Triton cannot serve stops here, before any file is written.
    shapes.check_batchable(
        {
            key: [{"name": n, "dims": probed[n][0], "batch_axis": axes[n]} for n in names]
            for key, names in (("inputs", recipe.input_names), ("outputs", recipe.output_names))
        },
        1 if options.get("batched", True) else 0,
        probed,
    )
    log.info("exporting %s (%s) to %s", fmt, framework, artifact)
    started = time.perf_counter()
    try:
        if framework == "keras":
            from .frameworks import export_savedmodel

            if fmt == "savedmodel":
                io = export_savedmodel(recipe, params, checkpoint, artifact)
            elif fmt == "onnx" and savedmodel is not None:
                io = export_onnx_from_savedmodel(
                    Path(savedmodel), artifact, int(options.get("onnx_opset", 18))
                )
            else:
                raise UserError(
                    f"format {fmt!r} is not a format of keras models: use savedmodel or onnx (and its variants)"
                )
        elif model is None:
            raise UserError(
                f"framework {framework!r} is not one deploysnake exports: torch or keras"
            )
        elif fmt == "torchscript_trace":
            io = export_torchscript_trace(model, recipe, artifact)
        elif fmt == "torchscript_script":
            io = export_torchscript_script(model, recipe, artifact)
        elif fmt == "aoti":
            io = export_aoti(model, recipe, artifact, axes=axes)
        else:
            io = export_onnx(
                model,
                recipe,
                artifact,
                opset=int(options.get("onnx_opset", 18)),
                dynamo=options.get("onnx_exporter", "dynamo") == "dynamo",
                axes=axes,
            )
    except UserError:
        raise
    except Exception as exc:
        # A format the exporter cannot handle is a result to report, not a crash: the other formats go on.
        log.exception("%s export failed", fmt)
        if fmt == "savedmodel":  # placeholder output; io.json says the export failed
            artifact.mkdir(exist_ok=True)
        else:
            artifact.write_bytes(b"")
        failed = {"format": fmt, "artifact": artifact.name, **failure(exc)}
        Path(io_json).write_text(json.dumps(failed, indent=2) + "\n")
        return
    build_seconds = round(time.perf_counter() - started, 3)
    io = in_recipe_order(io, recipe, fmt)
    io = with_batch_axes(io, probed, recipe.dynamic_axes)
    io["format"] = fmt
    io["artifact"] = artifact.name
    io["status"] = Status.OK
    io["build_seconds"] = build_seconds  # export (and compile) wall time, for the report
    Path(io_json).write_text(json.dumps(dtypes.with_datatypes(io), indent=2) + "\n")
    log.info("io: %s", io)


def export_from_source(
    name: str,
    settings: dict[str, Any],
    description: str | Path,
    fmt: str,
    artifact: str | Path,
    io_json: str | Path,
    options: dict[str, Any],
) -> dict[str, Any]:
    """The source's own format (a copy of the given file) or ONNX converted from it (TorchScript:
    torch.onnx's TorchScript-based exporter; SavedModel: tf2onnx; a torch.export program: the
    dynamo exporter), or aoti compiled from a torch.export program (compile_aoti). A conversion that fails is
    recorded in io.json as failed, like a failed export: the source's own format goes on."""
    doc = json.loads(Path(description).read_text())
    artifact = Path(artifact)
    artifact.parent.mkdir(parents=True, exist_ok=True)
    source = Path(doc["path"])
    started = time.perf_counter()
    if fmt == doc["format"]:
        if artifact.exists():
            shutil.rmtree(artifact) if artifact.is_dir() else artifact.unlink()
        modelfiles.clear_side_file(artifact)
        files = sources.source_files(settings)  # each inside the model's folder, or refused
        if source.is_dir():  # a SavedModel: its files (variables/, assets/), links refused
            modelfiles.copy_artifact(source, fmt, artifact, link=False)
        elif doc.get("flatten"):
            flat_torchscript(doc, settings, artifact)
        elif fmt == "onnx" and len(modelfiles.onnx_files(source)) > 1:
            # External data: one self-contained file below protobuf's limit, else the graph and
            # one side file <artifact>.data (a relative location) beside it.
            import onnx

            modelfiles.save_onnx(onnx.load(str(source)), artifact)
        else:
            shutil.copyfile(source, artifact)
        log.info("%s: copied from %d given file(s)", artifact, len(files))
        io = sources.io_entries(doc)
    elif fmt == "aoti" and doc["kind"] == "exported_program":
        try:
            compile_aoti(sources.load_program(source, f"models.{name}"), artifact)
        except UserError:
            raise
        except Exception as exc:  # Inductor cannot compile it: this format's failure, not the job's
            log.exception("aoti from the exported program failed")
            artifact.write_bytes(b"")
            io = {"format": fmt, "artifact": artifact.name, **failure(exc)}
            Path(io_json).write_text(json.dumps(io, indent=2) + "\n")
            return io
        io = sources.io_entries(doc)
    elif fmt == "onnx":
        names = [t["name"] for t in doc["inputs"]], [t["name"] for t in doc["outputs"]]
        opset = int(options.get("onnx_opset", 18))
        try:
            if doc["kind"] == "torchscript":
                _torchscript_to_onnx(doc, settings, artifact, opset)
            elif doc["kind"] == "exported_program":
                _program_to_onnx(doc, name, artifact, opset)
            else:
                export_onnx_from_savedmodel(source, artifact, opset)
            dynamic = {t["name"]: t["dynamic"] for t in doc["inputs"] + doc["outputs"]}
            if any(dynamic.values()):
                mark_dynamic(
                    artifact, {n: {int(a): d for a, d in v.items()} for n, v in dynamic.items()}
                )
            location_free_onnx(artifact)
            io = describe_onnx(artifact)
            got = [t["name"] for t in io["inputs"]], [t["name"] for t in io["outputs"]]
            if sorted(got[0]) != sorted(names[0]) or sorted(got[1]) != sorted(names[1]):
                raise RuntimeError(
                    f"the converted ONNX file has inputs/outputs {got}, the source {names}"
                )
        except Exception as exc:
            log.exception("%s from the %s source failed", fmt, doc["kind"])
            artifact.write_bytes(b"")
            io = failure(exc)
            io = {"format": fmt, "artifact": artifact.name, **io}
            Path(io_json).write_text(json.dumps(io, indent=2) + "\n")
            return io
    else:
        raise UserError(f"format {fmt!r} is not made from a {doc['kind']} source")
    io.update(format=fmt, artifact=artifact.name, status=Status.OK, source=doc["path"])
    io["build_seconds"] = round(time.perf_counter() - started, 3)
    Path(io_json).write_text(json.dumps(dtypes.with_datatypes(io), indent=2) + "\n")
    log.info("%s of %s: %s", fmt, name, io)
    return io


class _Flat(torch.nn.Module):
    """A TorchScript module whose forward() returns nested tuples, returning its tensors as one
    flat tuple (depth-first), the form Triton's PyTorch backend reads back."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        def leaves(out: Any) -> list[torch.Tensor]:
            if isinstance(out, torch.Tensor):
                return [out]
            return [t for item in out for t in leaves(item)]

        return tuple(leaves(self.inner(*inputs)))


def flat_torchscript(doc: dict[str, Any], settings: dict[str, Any], artifact: Path) -> None:
    """The served file of a TorchScript source whose forward() returns nested tuples: the file
    wrapped by a module that returns its tensors as a flat tuple. Traced around the scripted file,
    which the trace keeps as a call (its control flow and dynamic batch stay); only the tuple
    unpacking is recorded."""
    module = torch.jit.load(doc["path"], map_location="cpu").eval()
    example = sources.example_data(doc, settings, 4)
    args = tuple(torch.from_numpy(example[t["name"]]) for t in doc["inputs"])
    with torch.no_grad():
        traced = torch.jit.trace(_Flat(module), args, check_trace=False)
    torch.jit.save(traced, str(artifact))


def _torchscript_to_onnx(
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


def _program_to_onnx(doc: dict[str, Any], name: str, artifact: Path, opset: int) -> None:
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
