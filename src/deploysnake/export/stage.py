"""The export job: each format of a recipe's checkpoint (export) or of a given file
(export_from_source), written with its io.json read back from the artifact; an export that fails is
a failure record naming the root cause (failure, root_cause), never a stop of the run."""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from numpy.typing import NDArray

from .. import dtypes, modelfiles, shapes, sources
from ..contracts import Status
from ..errors import UserError
from ..frameworks import ModelSource, load_state
from ..plugins import Recipe
from .aoti import compile_aoti, export_aoti
from .to_onnx import (
    describe_onnx,
    export_onnx,
    export_onnx_from_savedmodel,
    location_free_onnx,
    location_free_text,
    mark_dynamic,
    program_to_onnx,
    torchscript_to_onnx,
)
from .torch_io import probe_batch_axes, with_batch_axes
from .torchscript import export_torchscript_script, export_torchscript_trace, flat_torchscript

log = logging.getLogger(__name__)


def root_cause(exc: BaseException) -> str:
    """The innermost cause's first line: exporters wrap the useful message ("No ONNX function found
    for aten._linalg_eigh") in generic ones ("Failed to convert ... step 3/3")."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:400] if lines else ''}"


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


def _probe(source: ModelSource, model: torch.nn.Module | None) -> dict[str, list[list[int]]]:
    """Each tensor's shapes at shapes.PROBE_BATCHES, from `model` (the torch model already
    loaded) or else the source's own runner. Raises UserError naming the recipe's model.py."""
    from ..frameworks import source_outputs

    recipe = source.recipe
    run: Callable[[dict[str, NDArray[Any]]], dict[str, NDArray[Any]]]
    if model is not None:
        torch_model = model

        def run(inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
            return source_outputs(torch_model, recipe, inputs)
    else:
        run = source.runner()
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
    source: ModelSource,
    fmt: str,
    artifact: str | Path,
    io_json: str | Path,
    options: dict[str, Any],
    savedmodel: str | Path | None = None,
) -> None:
    """Export one format of `source` to `artifact`, its IO description (dims, dtypes, batch axes,
    build_seconds: the export's wall time in s) to `io_json`; keras models export a SavedModel, and
    ONNX from that SavedModel (`savedmodel`). options: the export section (onnx_opset,
    onnx_exporter, batched). An exporter's exception is recorded in io_json as a failed export, not
    raised; UserError for a format the framework has no exporter for, or a model a batched Triton
    cannot serve (shapes.check_batchable)."""
    recipe, params, checkpoint, framework = (
        source.recipe,
        source.params,
        source.checkpoint,
        source.framework,
    )
    if fmt not in ("torchscript_trace", "torchscript_script", "onnx", "aoti", "savedmodel"):
        raise UserError(
            f"format {fmt!r} is not exported from the checkpoint: choose torchscript_trace, "
            "torchscript_script, onnx, aoti or savedmodel"
        )
    artifact = Path(artifact)
    artifact.parent.mkdir(parents=True, exist_ok=True)
    model = load_state(recipe, params, checkpoint) if framework == "torch" else None
    probed = _probe(source, model)
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
            from ..frameworks import export_savedmodel

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
                torchscript_to_onnx(doc, settings, artifact, opset)
            elif doc["kind"] == "exported_program":
                program_to_onnx(doc, name, artifact, opset)
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
