"""A given file's IO read from the file itself: ONNX (its graph's inputs and outputs), SavedModel
(its serving signature; stateful ops refused), a Triton model directory (its config.pbtxt, completed
from the model file), TorchScript and torch.export programs (torchscript); the batch axis resolved
from the dims or `models.<name>.batch_axis` (describe: the IO description written to source.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import dtypes
from ..errors import UserError
from .kinds import (
    BATCH_NAMES,
    OWN_FORMAT,
    source_file,
    source_files,
    source_key,
    source_kind,
    triton_config,
)
from .torchscript import (
    dims_of_program,
    last_line,
    torchscript_inputs,
    torchscript_outputs,
    torchscript_signature,
)


def _read_onnx(path: Path) -> Any:
    """The ONNX file's model proto without its external data; a file that is not ONNX, cut short or
    without a graph as one UserError naming the file."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and kin: not ONNX, or cut short
        raise UserError(
            f"{path} cannot be read as an ONNX file ({last_line(exc)}): it is not ONNX or it is "
            "truncated; export it again (torch.onnx.export, skl2onnx, tf2onnx) or copy it whole"
        ) from exc
    if not model.ir_version or not model.graph.output:
        raise UserError(
            f"{path} is not an ONNX model (it parses, but holds no IR version or no graph outputs); "
            "give the .onnx file an exporter wrote (torch.onnx.export, skl2onnx, tf2onnx)"
        )
    return model


def _dims_of_onnx(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import onnx

    model = _read_onnx(path)
    graph = model.graph
    initializers = {i.name for i in graph.initializer}

    def tensors(values: Any) -> list[dict[str, Any]]:
        out = []
        for value in values:
            if value.name in initializers:  # older files list weights as inputs too
                continue
            tensor = value.type.tensor_type
            if not value.type.HasField("tensor_type"):
                raise UserError(
                    f"{path}: {value.name!r} is not a tensor ({value.type.WhichOneof('value')}); "
                    "Triton serves tensors only "
                    "(a scikit-learn classifier converted with zipmap gives a sequence of maps: "
                    "convert with options={id(model): {'zipmap': False}})"
                )
            dims: list[Any] = [
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in tensor.shape.dim
            ]
            dtype = str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)))
            out.append({"name": value.name, "dtype": dtype, "dims": dims})
        return out

    return tensors(graph.input), tensors(graph.output)


def _dims_of_savedmodel(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    if "serving_default" not in loaded.signatures:
        raise UserError(
            f"{path}: the SavedModel has no serving_default signature (it has "
            f"{sorted(loaded.signatures)}); Triton serves that one"
        )
    signature = loaded.signatures["serving_default"]

    def tensors(specs: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "dtype": str(np.dtype(spec.dtype.as_numpy_dtype)),
                "dims": [None if d is None else int(d) for d in spec.shape.as_list()],
            }
            for name, spec in sorted(specs.items())
        ]

    return tensors(signature.structured_input_signature[1]), tensors(signature.structured_outputs)


def _refuse_stateful(cfg: Any, folder: Path) -> None:
    """A model directory whose config.pbtxt uses Triton's sequence batcher keeps state between
    requests (control inputs such as START, implicit state): refuse it, naming those tensors."""
    if not cfg.HasField("sequence_batching"):
        return
    from tritonclient.grpc import model_config_pb2 as mc

    seq = cfg.sequence_batching
    controls = [
        f"{c.name} ({', '.join(mc.ModelSequenceBatching.Control.Kind.Name(k.kind) for k in c.control)})"
        for c in seq.control_input
    ]
    states = [f"{s.input_name} -> {s.output_name}" for s in seq.state]
    found = "; ".join(
        part
        for part in (
            f"control input(s) {', '.join(controls)}" if controls else "",
            f"implicit state {', '.join(states)}" if states else "",
        )
        if part
    )
    step_inputs = [c.name for c in seq.control_input] + [s.input_name for s in seq.state]
    raise UserError(
        f"{folder / 'config.pbtxt'} uses Triton's sequence batcher (a stateful model"
        + (f": {found}" if found else "")
        + "); deploysnake serves and measures stateless models through the dynamic batcher and "
        "will not run it with made-up state; give the step model with explicit state instead "
        f"(onnx: {folder}/<version>/model.onnx, with a dataloader that sends "
        + (", ".join(step_inputs) if step_inputs else "the state")
        + " with each row)"
    )


def _dims_of_triton(cfg: Any, batched: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from tritonclient.grpc import model_config_pb2 as mc

    def tensors(entries: Any, kind: str) -> list[dict[str, Any]]:
        out = []
        for entry in entries:
            type_name = mc.DataType.Name(entry.data_type)
            dtype = dtypes.from_config(type_name)
            if dtype is None:
                raise UserError(
                    f"config.pbtxt {kind} {entry.name!r} has data_type {type_name}, which is no "
                    "tensor type: give it one of Triton's TYPE_* (TYPE_FP32, TYPE_STRING, ...)"
                )
            dims = [None if d < 0 else int(d) for d in entry.dims]
            out.append(
                {"name": entry.name, "dtype": dtype, "dims": ["batch", *dims] if batched else dims}
            )
        return out

    return tensors(cfg.input, "input"), tensors(cfg.output, "output")


def _check_listed(
    listed: list[dict[str, Any]], found: list[dict[str, Any]], kind: str, where: Path, path: Path
) -> None:
    """Each tensor config.pbtxt lists must be the file's: same name, dtype, and the same fixed
    sizes after the batch axis (the ONNX Runtime backend refuses a mismatch at load)."""
    by_name = {t["name"]: t for t in found}
    for tensor in listed:
        own = by_name.get(tensor["name"])
        if own is None:
            raise UserError(
                f"{where} lists {kind} {tensor['name']!r}, which {path} does not have; its {kind}s: "
                f"{sorted(by_name)}: fix the name, or remove the {kind} entries (Triton and deploysnake "
                "complete them from the file)"
            )
        mine, theirs = tensor["dims"][1:], own["dims"][1:]
        if (
            tensor["dtype"] != own["dtype"]
            or len(mine) != len(theirs)
            or any(
                isinstance(a, int) and isinstance(b, int) and a != b
                for a, b in zip(mine, theirs, strict=True)
            )
        ):
            raise UserError(
                f"{where} lists {kind} {tensor['name']!r} as {tensor['dtype']} {mine} (after the batch "
                f"axis), but {path} has {own['dtype']} {theirs}: fix the entry, or remove it "
                "(Triton and deploysnake complete it from the file)"
            )


def _complete_triton(
    folder: Path, kind: str, path: Path, settings: dict[str, Any], where: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A model directory's IO as Triton reads it with auto-complete: what config.pbtxt lists, checked
    against the file; what it leaves out (inputs, outputs, max_batch_size, or the whole file) read
    from the file (ONNX, SavedModel). As Triton's ONNX Runtime backend decides
    (onnxruntime_backend's AutoCompleteMaxBatch): a config.pbtxt without max_batch_size and without
    inputs and outputs, over a file whose every first axis is dynamic, is batched; the served
    config then takes the workflow's `triton:` batching settings. TorchScript records no IO: its
    inputs come from config.pbtxt or models.<name>.inputs, its outputs from a run."""
    cfg = triton_config(folder)
    cfg_path = folder / "config.pbtxt"
    _refuse_stateful(cfg, folder)
    file_io: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
    if kind == "onnx":
        file_io = _dims_of_onnx(path)
    elif kind == "savedmodel":
        file_io = _dims_of_savedmodel(path)
    batched = cfg.max_batch_size > 0
    if not batched:
        lists_io = bool(cfg.input or cfg.output)
        all_dynamic = file_io is not None and all(
            t["dims"] and not isinstance(t["dims"][0], int) for t in file_io[0] + file_io[1]
        )
        if lists_io or not all_dynamic:
            why = (
                "it lists inputs or outputs, so Triton's auto-complete leaves batching off"
                if lists_io and all_dynamic
                else f"{path}'s first axes are not all dynamic"
                if file_io is not None
                else "a TorchScript file cannot tell Triton its batch axis"
            )
            raise UserError(
                f"{cfg_path if cfg_path.is_file() else folder} sets no max_batch_size (0: no batch "
                f"axis; {why}); deploysnake serves batched models: set max_batch_size (e.g. 16) in "
                "config.pbtxt if the model's first axis is the batch"
            )
    listed_in, listed_out = _dims_of_triton(cfg, batched)
    if file_io is None:  # TorchScript
        return listed_in or torchscript_inputs(path, settings, where), listed_out
    _check_listed(listed_in, file_io[0], "input", cfg_path, path)
    _check_listed(listed_out, file_io[1], "output", cfg_path, path)
    listed_names = {t["name"] for t in listed_in}
    missing = [t["name"] for t in file_io[0] if t["name"] not in listed_names]
    if listed_in and missing:
        raise UserError(
            f"{cfg_path} lists inputs {sorted(listed_names)} but {path} also takes {missing}: "
            "list every input, or none (Triton and deploysnake complete them from the file)"
        )
    return listed_in or file_io[0], listed_out or file_io[1]


def _resolve_batch(
    tensor: dict[str, Any], kind: str, explicit: bool, where: str, path: Path
) -> dict[int, str]:
    """Check that axis 0 is the batch; return the other dynamic axes {axis: name}."""
    name, dims = tensor["name"], tensor["dims"]
    if not dims:
        raise UserError(
            f"{kind} {name!r} of {path} is a scalar: it has no batch axis; deploysnake serves batched models "
            "(re-export it with a first, dynamic batch axis)"
        )
    if isinstance(dims[0], int):
        raise UserError(
            f"{kind} {name!r} of {path} has dims {dims}: its first axis is fixed at {dims[0]}, so "
            "it has no dynamic batch axis; "
            "re-export it with a dynamic first axis (torch.onnx.export "
            "dynamic_axes/dynamic_shapes, skl2onnx [None, ...])"
        )
    dynamic = {
        a: (d or f"{name}_axis{a}") for a, d in enumerate(dims) if a and not isinstance(d, int)
    }
    if kind == "input" and dynamic and not explicit and not BATCH_NAMES.match(str(dims[0] or "")):
        axes = ", ".join(f"{a} ({d or '?'})" for a, d in enumerate(dims) if not isinstance(d, int))
        raise UserError(
            f"input {name!r} of {path} has dynamic axes {axes}: which one is the batch axis cannot "
            "be read from the file; "
            f"set {where}.batch_axis: 0 if the first axis is the batch (Triton batches along the first axis only)"
        )
    return {a: str(d) for a, d in dynamic.items()}


def describe(settings: dict[str, Any], name: str = "<name>") -> dict[str, Any]:
    """The source's IO description, raising UserError for anything ambiguous.

    Returns {"kind", "format", "path", "inputs": [...], "outputs": [...]}, each tensor
    {"name", "dtype", "dims" (batch and dynamic axes -1), "dynamic": {axis: name}, "shape" (the
    non-batch sizes generated data uses; None where a dynamic axis has no `inputs.<name>.dims`),
    "low", "high" (inclusive value range of generated data; None: the default)}."""
    where = f"models.{name}"
    key = source_key(settings)
    kind = source_kind(settings)
    path = source_file(settings)
    if kind == "onnx":  # a file that is not ONNX: one sentence, before its side files are sought
        _read_onnx(path)
    source_files(settings)  # every file inside the model's folder, before any is read
    explicit = "batch_axis" in settings
    if key == "triton_model":
        inputs, outputs = _complete_triton(Path(settings[key]), kind, path, settings, where)
        explicit = True  # a batching config.pbtxt states that axis 0 is the batch
    elif kind == "onnx":
        inputs, outputs = _dims_of_onnx(path)
    elif kind == "savedmodel":
        inputs, outputs = _dims_of_savedmodel(path)
    elif kind == "exported_program":
        inputs, outputs = dims_of_program(path, settings, where)
    else:
        inputs, outputs = torchscript_inputs(path, settings, where), []
        explicit = True
    declared = dict(settings.get("inputs") or {})
    unknown = sorted(set(declared) - {t["name"] for t in inputs})
    if unknown:
        raise UserError(
            f"{where}.inputs names {unknown}, which {path} does not have; its inputs: {[t['name'] for t in inputs]}"
        )
    described_in = []
    for tensor in inputs:
        dynamic = _resolve_batch(tensor, "input", explicit, where, path)
        spec = declared.get(tensor["name"]) or {}
        if spec.get("dtype") and spec["dtype"] != tensor["dtype"]:
            raise UserError(
                f"{where}.inputs.{tensor['name']}.dtype is {spec['dtype']}, but {path} declares "
                f"{tensor['dtype']}; remove the key or fix it"
            )
        shape = None
        if "dims" in spec:
            shape = [int(d) for d in spec["dims"]]
            fixed = tensor["dims"][1:]
            if len(shape) != len(fixed) or any(
                isinstance(f, int) and f != s for f, s in zip(fixed, shape, strict=True)
            ):
                raise UserError(
                    f"{where}.inputs.{tensor['name']}.dims {shape} do not fit the file's dims {fixed} "
                    "(give the sizes without the batch axis; a fixed size must be the file's)"
                )
        elif not dynamic:
            shape = [int(d) for d in tensor["dims"][1:]]
        low, high = spec.get("low"), spec.get("high")
        if low is not None and high is not None and low > high:
            raise UserError(f"{where}.inputs.{tensor['name']}: low {low} above high {high}")
        described_in.append(
            {
                "name": tensor["name"],
                "dtype": tensor["dtype"],
                "dims": [-1, *(d if isinstance(d, int) else -1 for d in tensor["dims"][1:])],
                "dynamic": dynamic,
                "shape": shape,
                "low": low,
                "high": high,
            }
        )
    described_out = [
        {
            "name": t["name"],
            "dtype": t["dtype"],
            "dims": [-1, *(d if isinstance(d, int) else -1 for d in t["dims"][1:])],
            "dynamic": _resolve_batch(t, "output", True, where, path),
        }
        for t in outputs
    ]
    doc = {
        "model": name,
        "kind": kind,
        "format": OWN_FORMAT.get(kind, kind),  # the runtime of the reference (runtime.py)
        "path": str(path),
        "inputs": described_in,
        "outputs": described_out,
    }
    if kind == "torchscript":
        # A nested tuple is served flat: its own format is a wrapper (export.torchscript.flat_torchscript).
        doc["flatten"] = torchscript_signature(path)["nested"]
    if kind == "torchscript" and not doc["outputs"]:  # else config.pbtxt named them
        doc["outputs"] = torchscript_outputs(path, doc, settings, where)
    return doc


def io_entries(doc: dict[str, Any]) -> dict[str, Any]:
    """The io.json fields of a description: names, dtypes, dims (-1: batch and dynamic axes)."""
    return {
        kind: [{k: t[k] for k in ("name", "dtype", "dims")} for t in doc[kind]]
        for kind in ("inputs", "outputs")
    }
