"""Exported models as the source: an ONNX file, a TorchScript file, a SavedModel, a Triton model
directory or a torch.export program given in the config (`models.<name>.onnx` etc.) instead of a
recipe.

The given file is the reference every conversion is checked against. Its IO (names, dtypes, dims,
batch axis) is read from the file, or from the model directory's config.pbtxt; what a file cannot
tell (which axis is the batch, a dynamic axis's length, an integer input's valid range, a
TorchScript input's dtype and shape) comes from `models.<name>.batch_axis` and
`models.<name>.inputs`, and anything still ambiguous is a UserError naming the tensor and the key.

Without a `dataloader`, inputs are generated from that description with a fixed seed, each input
within its range (`inputs.<name>.low`/`high`, inclusive); without `metrics` there is no task metric,
and the accuracy stage compares outputs with the source's (max abs diff).

Light at import time (the Snakefile imports it at every start): onnx, torch and TensorFlow are
imported only where a file of theirs is read.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import dtypes, modelfiles
from .errors import UserError
from .formats import FAMILIES, SOURCE_PLATFORMS
from .plugins import CONTRACT, Recipe, _load_module, load_recipe, validation_batches
from .trust import check_exported_program, check_torchscript

log = logging.getLogger(__name__)

# Config keys that name an exported source, and the kind of file each names.
SOURCE_KEYS = ("onnx", "torchscript", "savedmodel", "triton_model", "exported_program")
# The source kinds (the model's `framework` once validated) and the format their file is served as.
# A torch.export program is served as none: it is the reference, aoti and onnx are made from it.
KINDS = ("onnx", "torchscript", "savedmodel", "exported_program")
OWN_FORMAT = {"onnx": "onnx", "torchscript": "torchscript", "savedmodel": "savedmodel"}
# Keys that only a recipe takes, and keys that only an exported source takes.
RECIPE_ONLY = ("recipe", "framework", "model", "checkpoint")
SOURCE_ONLY = ("batch_axis", "inputs", "outputs")
# Samples of generated data per split (validation: correctness, accuracy, perf data;
# train: int8 calibration).
GENERATED_SAMPLES = 256
# Each source kind's default file name in a version folder (Triton platforms and backends of a
# model directory -> the source kind of its file: formats.SOURCE_PLATFORMS).
DEFAULT_FILES = {kind: FAMILIES[kind].artifact for kind in ("onnx", "torchscript", "savedmodel")}
# A first axis whose symbolic name says it is the batch ("batch", "batch_size", "N", "unk__0" ...).
BATCH_NAMES = re.compile(r"^(batch.*|.*_batch|n|b|bs|none|unk__\d+|)$", re.IGNORECASE)
DESCRIPTION = "source.json"


def source_key(settings: dict[str, Any]) -> str | None:
    """Which source key (onnx, torchscript, savedmodel, triton_model, exported_program) the settings use, if any."""
    found = [k for k in SOURCE_KEYS if settings.get(k)]
    return found[0] if found else None


def is_source(settings: dict[str, Any]) -> bool:
    return source_key(settings) is not None


# ------------------------------------------------------------------ config


def _triton_config(folder: Path) -> Any:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    path = folder / "config.pbtxt"
    if path.is_symlink() and not modelfiles.inside(path, folder):
        # Refused before it is read: its content is never parsed or printed.
        raise UserError(
            f"{path} is a symbolic link leading outside the model directory {folder}; deploysnake "
            "reads nothing outside a model's folder: put the config.pbtxt itself there"
        )
    if not path.is_file():
        # Triton loads a directory without config.pbtxt by auto-completing everything from the
        # file in its version folder (_triton_kind reads the kind from that file's name).
        return mc.ModelConfig()
    try:
        return text_format.Parse(path.read_text(), mc.ModelConfig())
    except text_format.ParseError as exc:
        raise UserError(f"{path} is not a valid Triton model configuration: {exc}") from exc


def _versions(folder: Path) -> list[int]:
    """The version folders (1/, 2/, ...) of a model directory, highest first."""
    return sorted(
        (int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True
    )


def _triton_kind(cfg: Any, folder: Path) -> str:
    if not cfg.platform and not cfg.backend:
        # No platform or backend (or no config.pbtxt): Triton picks the backend by the default
        # file name in the version folder, and so does this.
        versions = _versions(folder) if folder.is_dir() else []
        found = [
            kind
            for kind, name in DEFAULT_FILES.items()
            if versions and (folder / str(versions[0]) / name).exists()
        ]
        if len(found) == 1:
            return found[0]
        has_config = (folder / "config.pbtxt").is_file()
        raise UserError(
            f"{folder} is not a Triton model directory deploysnake can read: "
            + (
                "its config.pbtxt names no platform or backend"
                if has_config
                else "it has no config.pbtxt"
            )
            + " and its highest version folder holds "
            + ("none" if not found else "more than one")
            + f" of {', '.join(DEFAULT_FILES.values())}; give the file itself instead "
            "(onnx: <dir>/1/model.onnx, torchscript: <dir>/1/model.pt), or a config.pbtxt with its platform"
        )
    kind = SOURCE_PLATFORMS.get(cfg.platform) or SOURCE_PLATFORMS.get(cfg.backend)
    if kind is None:
        raise UserError(
            f"{folder / 'config.pbtxt'}: platform {cfg.platform!r} / backend {cfg.backend!r} is not "
            "one deploysnake takes as a source; "
            f"supported: {', '.join(sorted(SOURCE_PLATFORMS))}"
        )
    return kind


def _triton_file(cfg: Any, folder: Path, kind: str) -> Path:
    numbered = [p for p in folder.iterdir() if p.name.isdigit() and p.is_dir()]
    for version in numbered:
        if not modelfiles.inside(version, folder):
            raise UserError(
                f"{version} is a symbolic link to {version.resolve()}, outside the model directory "
                f"{folder}; deploysnake reads nothing outside a model's folder: put the version "
                "folder itself there"
            )
    versions = sorted((int(p.name) for p in numbered), reverse=True)
    if not versions:
        raise UserError(
            f"{folder} has no version folder (1/, 2/, ...) holding the model file; Triton serves the highest one"
        )
    name = cfg.default_model_filename or DEFAULT_FILES[kind]
    path = folder / str(versions[0]) / name
    if (
        Path(name).is_absolute()
        or ".." in Path(name).parts
        or not modelfiles.inside(path, folder / str(versions[0]))
    ):
        raise UserError(
            f"{folder / 'config.pbtxt'}: default_model_filename {name!r} leads outside the version "
            f"folder {folder / str(versions[0])}; deploysnake reads nothing outside a model's "
            "folder: give the file's plain name (e.g. model.onnx) and keep the file in the version folder"
        )
    if not path.exists():
        raise UserError(
            f"{folder}: version {versions[0]} has no {name} (config.pbtxt's platform is {cfg.platform or cfg.backend})"
        )
    return path


def source_kind(settings: dict[str, Any]) -> str:
    """onnx, torchscript or savedmodel: the kind of the given file (a model directory's: from its
    config.pbtxt's platform or backend)."""
    key = source_key(settings)
    if key is None:
        raise UserError("not a source model: give one of " + ", ".join(SOURCE_KEYS))
    if key == "triton_model":
        folder = Path(settings[key])
        return _triton_kind(_triton_config(folder), folder)
    return key


def source_file(settings: dict[str, Any]) -> Path:
    """The model file (a SavedModel: its folder) that is the reference."""
    key = source_key(settings)
    assert key is not None
    path = Path(settings[key])
    if key == "triton_model":
        cfg = _triton_config(path)
        return _triton_file(cfg, path, _triton_kind(cfg, path))
    return path


def source_files(settings: dict[str, Any]) -> list[Path]:
    """Every given file the source is made of, each resolved inside the model's folder: an ONNX
    file and its external-data side files, a SavedModel's files, a Triton model directory's
    config.pbtxt and every file of the version folder it serves (an ONNX file there with its side
    files), a TorchScript file. Raises UserError naming the file, tensor or link that leads outside
    (modelfiles); nothing outside is read."""
    key = source_key(settings)
    if key is None:
        raise UserError("not a source model: give one of " + ", ".join(SOURCE_KEYS))
    given = Path(settings[key])
    if key == "triton_model":
        path = source_file(settings)
        version = path.parent
        config = given / "config.pbtxt"  # absent: Triton (and deploysnake) complete it all
        listed = [config] if config.exists() or config.is_symlink() else []
        files = [*listed, *modelfiles.tree_files(version, root=version)]
        if source_kind(settings) == "onnx":
            modelfiles.onnx_files(path, root=version)
        return files
    if key == "savedmodel":
        return modelfiles.tree_files(given)
    if key == "onnx":
        return modelfiles.onnx_files(given)
    return [given]


def config_problems(name: str, settings: dict[str, Any], project: Path) -> list[str]:
    """Problems of one source model's settings (config validation). Relative paths that do not exist
    here but do under the project are made absolute (like the shipped recipes), and the model's
    `framework` is set to its source kind, which the workflow plans formats and rules by."""
    where = f"config.models.{name}"
    given = [k for k in SOURCE_KEYS if settings.get(k)]
    if len(given) > 1:
        return [f"{where}: give one source, not {' and '.join(given)}"]
    problems = [
        f"{where}.{k}: applies to recipes only; a {given[0]} source's framework and weights come from its file"
        for k in RECIPE_ONLY
        if settings.get(k)
    ]
    for key in (given[0], "dataloader", "metrics"):
        if not settings.get(key):
            continue
        path = Path(settings[key])
        if not path.is_absolute() and not path.exists() and (project / path).exists():
            path = project / path
            settings[key] = str(path)
        want_dir = key in ("savedmodel", "triton_model")
        if not (path.is_dir() if want_dir else path.is_file()):
            what = "folder" if want_dir else "file"
            problems.append(f"{where}.{key}: {what} {path} does not exist")
    if problems:
        return problems
    try:
        settings["framework"] = source_kind(settings)
        source_file(settings)
        if given[0] != "onnx":  # an ONNX file's side files are checked by the model's first job
            source_files(settings)
    except UserError as exc:
        return [f"{where}.{given[0]}: {exc}"]
    except Exception:  # a file that is not ONNX: the model's first job says so
        pass
    if settings["framework"] == "savedmodel" and importlib.util.find_spec("tensorflow") is None:
        problems.append(
            f"{where}: a SavedModel source needs TensorFlow (and tf2onnx for its ONNX): pip install -e '.[tf]'"
        )
    if settings.get("batch_axis", 0) != 0:
        problems.append(
            f"{where}.batch_axis: {settings['batch_axis']}; Triton batches along the first axis only (0): "
            "move the batch axis first in the model, or serve it unbatched outside deploysnake"
        )
    return problems


def rule_inputs(settings: dict[str, Any]) -> list[str]:
    """The given files a source's first job reads (source_files: an ONNX file's side files, a
    SavedModel's or version folder's files): editing any of them re-runs the model's jobs. Where a
    file leads outside the model's folder, the given path alone: the first job then refuses it."""
    path = Path(settings[source_key(settings) or ""])
    try:
        files = [str(p) for p in source_files(settings)]
    except (
        Exception
    ):  # refused (UserError), unreadable, not ONNX (DecodeError): the first job says why
        config = path / "config.pbtxt"
        triton = source_key(settings) == "triton_model" and (config.exists() or config.is_symlink())
        files = [str(config)] if triton else [str(path)]
    return files + [str(settings[k]) for k in ("dataloader", "metrics") if settings.get(k)]


# ------------------------------------------------------------------ IO description


def _read_onnx(path: Path) -> Any:
    """The ONNX file's model proto without its external data; a file that is not ONNX, cut short or
    without a graph as one UserError naming the file."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and kin: not ONNX, or cut short
        raise UserError(
            f"{path} cannot be read as an ONNX file ({_last_line(exc)}): it is not ONNX or it is "
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
    cfg = _triton_config(folder)
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
        return listed_in or _torchscript_inputs(path, settings, where), listed_out
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


def _load_torchscript(path: Path) -> Any:
    """torch.jit.load of a source file, its failure (not TorchScript, truncated, saved by a newer
    torch) as one UserError naming the file."""
    import torch

    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise UserError(
            f"{path} cannot be read as a TorchScript file ({_last_line(exc)}); give a file written by "
            "torch.jit.save (torch.jit.script or torch.jit.trace), or the model as onnx:"
        ) from exc


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {(lines[-1] if lines else '')[:400]}"


def _leaf_tensors(kind_of: Any) -> int | None:
    """How many tensors a TorchScript return type holds, depth-first through tuples; None where it
    holds something else (a list, a dict, a scalar)."""
    kind = kind_of.kind()
    if kind == "TensorType":
        return 1
    if kind == "TupleType":
        counts = [_leaf_tensors(e) for e in kind_of.elements()]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
    return None


def torchscript_signature(path: Path) -> dict[str, Any]:
    """The argument and return types of a TorchScript file's forward(), read from its schema
    (`forward.schema.arguments` / `.returns`) before anything runs, checked against what Triton's
    PyTorch backend (pytorch_backend, libtorch.cc) can bind: one tensor per configured input, or a
    single Dict[str, Tensor] argument bound by key; a tensor or a tuple of tensors back.

    Returns {"arguments": [names], "dict_argument": name or None, "returns": the return type as
    written, "leaves": tensors returned (depth-first), "nested": whether tuples nest (the served
    file is then a wrapper returning a flat tuple)}. Raises UserError naming the argument or the
    return type, and the change to forward() that serves it."""
    module = _load_torchscript(path)
    schema = module.forward.schema
    args = list(schema.arguments[1:])
    dict_argument = None
    if len(args) == 1 and str(args[0].type) == "Dict[str, Tensor]":
        dict_argument = args[0].name
    else:
        for arg in args:
            written = str(arg.type)
            if written != "Tensor":
                raise UserError(
                    f"forward() of {path} takes argument {arg.name!r} of type {written}: Triton's "
                    "PyTorch backend passes one tensor per configured input (or a single "
                    "Dict[str, Tensor] bound by key), so forward() must take tensors, one argument "
                    f"each (e.g. forward(self, features, context) in place of one {written}); "
                    "change forward() and script it again"
                )
    returns = list(schema.returns)
    written = str(returns[0].type) if len(returns) == 1 else str([str(r.type) for r in returns])
    leaves = _leaf_tensors(returns[0].type) if len(returns) == 1 else None
    if leaves is None and not written.startswith("Dict[str, Tensor]"):
        raise UserError(
            f"forward() of {path} returns {written}: Triton's PyTorch backend reads back a tensor or "
            "a tuple of tensors; return a tuple of tensors (e.g. (scores, boxes, label)) and script "
            "it again"
        )
    nested = returns[0].type.kind() == "TupleType" and any(
        e.kind() == "TupleType" for e in returns[0].type.elements()
    )
    return {
        "arguments": [a.name for a in args],
        "dict_argument": dict_argument,
        "returns": written,
        "leaves": leaves,
        "nested": nested,
    }


def load_program(path: Path, where: str) -> Any:
    """The torch.export ExportedProgram saved at path, once trust.check_exported_program has found
    nothing in it that torch.export.load would unpickle without restriction; a file torch cannot
    read as one UserError naming the file."""
    import torch

    check_exported_program(path, where)
    try:
        return torch.export.load(str(path))
    except Exception as exc:
        raise UserError(
            f"{where}.exported_program: {path} cannot be read as a torch.export program "
            f"({_last_line(exc)}); save it again with torch.export.save in torch "
            f"{torch.__version__.split('+')[0]}"
        ) from exc


def _dims_of_program(
    path: Path, settings: dict[str, Any], where: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Inputs and outputs from the program's graph signature: the user inputs' placeholder names,
    each tensor's dtype and dims from the graph's example values (a symbolic size: a str, i.e.
    dynamic). Outputs are named by `outputs` (default output__0, ...), in the order forward()
    returns them, flattened."""
    program = load_program(path, where)
    signature = program.graph_signature
    values = {node.name: node.meta.get("val") for node in program.graph.nodes}

    def tensor(name: str, value: Any, kind: str) -> dict[str, Any]:
        if value is None or not hasattr(value, "shape"):
            raise UserError(
                f"{where}.exported_program: {path}'s {kind} {name!r} is not a tensor "
                f"({type(value).__name__}); Triton serves tensors only: export a forward() that "
                "takes and returns tensors"
            )
        dims = [int(d) if str(d).lstrip("-").isdigit() else str(d) for d in value.shape]
        return {"name": name, "dtype": str(value.dtype).removeprefix("torch."), "dims": dims}

    inputs = [tensor(n, values.get(n), "input") for n in signature.user_inputs]
    user_outputs = list(signature.user_outputs)
    names = list(settings.get("outputs") or [f"output__{k}" for k in range(len(user_outputs))])
    if len(names) != len(user_outputs):
        raise UserError(
            f"{path} returns {len(user_outputs)} tensor(s), but {where}.outputs names "
            f"{len(names)}: {names}; name each tensor in the order forward() returns them"
        )
    outputs = [
        tensor(name, values.get(given), "output")
        for name, given in zip(names, user_outputs, strict=True)
    ]
    return inputs, outputs


def _torchscript_inputs(path: Path, settings: dict[str, Any], where: str) -> list[dict[str, Any]]:
    signature = torchscript_signature(path)
    declared = settings.get("inputs") or {}
    names = signature["arguments"]
    if signature["dict_argument"]:
        # Triton's PyTorch backend binds a single Dict[str, Tensor] argument by key: the configured
        # inputs are its keys.
        names = list(declared)
        if not names:
            raise UserError(
                f"forward() of {path} takes one Dict[str, Tensor] argument "
                f"{signature['dict_argument']!r}: Triton's PyTorch backend binds it by key to the "
                f"configured inputs; list its keys under {where}.inputs, each with dtype and dims "
                "(e.g. inputs: {features: {dtype: float32, dims: [6]}})"
            )
    out = []
    for name in names:
        spec = declared.get(name) or {}
        if "dims" not in spec or "dtype" not in spec:
            raise UserError(
                f"TorchScript input {name!r} of {path}: a TorchScript file does not record input dtypes and shapes; "
                f"set {where}.inputs.{name}.dtype (e.g. float32) and {where}.inputs.{name}.dims "
                "(the sizes without the batch axis, e.g. [64])"
            )
        out.append({"name": name, "dtype": spec["dtype"], "dims": ["batch", *spec["dims"]]})
    return out


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
        inputs, outputs = _dims_of_program(path, settings, where)
    else:
        inputs, outputs = _torchscript_inputs(path, settings, where), []
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
        # A nested tuple is served flat: its own format is a wrapper (export.flat_torchscript).
        doc["flatten"] = torchscript_signature(path)["nested"]
    if kind == "torchscript" and not doc["outputs"]:  # else config.pbtxt named them
        doc["outputs"] = _torchscript_outputs(path, doc, settings, where)
    return doc


def _torchscript_outputs(
    path: Path, doc: dict[str, Any], settings: dict[str, Any], where: str
) -> list[dict[str, Any]]:
    """Run the TorchScript file once on the dataloader's (or generated) inputs: its outputs' dtypes
    and dims (a nested tuple's tensors depth-first, as the served wrapper returns them)."""
    from .runtime import ArtifactRuntime

    signature = torchscript_signature(path)
    runtime = ArtifactRuntime(path, "torchscript", [t["name"] for t in doc["inputs"]], [])
    example = example_data(doc, settings, 2)
    given = "the dataloader's" if settings.get("dataloader") else "generated"
    try:
        outs = runtime.run_flat(example)
    except Exception as exc:
        raise UserError(
            f"{path} fails on {given} inputs "
            f"({', '.join(f'{n} {a.dtype} {list(a.shape)}' for n, a in example.items())}): "
            f"{_last_line(exc)}; check {where}.inputs (dtype, dims) against what forward() expects"
        ) from exc
    names = list(settings.get("outputs") or [f"output__{k}" for k in range(len(outs))])
    if len(names) != len(outs):
        raise UserError(
            f"forward() of {path} returns {signature['returns']} ({len(outs)} tensor(s), depth-first), "
            f"but {where}.outputs names {len(names)}: {names}; name each tensor in that order"
        )
    return [
        {
            "name": n,
            "dtype": str(t.dtype),
            "dims": [-1, *(int(d) for d in t.shape[1:])],
            "dynamic": {},
        }
        for n, t in zip(names, outs, strict=True)
    ]


def io_entries(doc: dict[str, Any]) -> dict[str, Any]:
    """The io.json fields of a description: names, dtypes, dims (-1: batch and dynamic axes)."""
    return {
        kind: [{k: t[k] for k in ("name", "dtype", "dims")} for t in doc[kind]]
        for kind in ("inputs", "outputs")
    }


# ------------------------------------------------------------------ generated data


def generate(doc: dict[str, Any], samples: int, seed: int) -> dict[str, NDArray[Any]]:
    """Inputs of `samples` rows from the description, with a fixed seed.

    Floats: uniform in [low, high] (default [0, 1]); integers: uniform in [low, high] inclusive,
    which must be given (ids must stay inside an embedding's table); bool: either value.
    Raises UserError naming the input and the key to set where a size or range is missing."""
    rng = np.random.default_rng(seed)
    where = f"models.{doc.get('model', '<name>')}"
    out = {}
    for tensor in doc["inputs"]:
        name, dtype = tensor["name"], np.dtype(tensor["dtype"])
        if tensor["shape"] is None:
            axes = ", ".join(f"{a} ({d})" for a, d in tensor["dynamic"].items())
            raise UserError(
                f"input {name!r} has dynamic axes {axes} and no dataloader gives its data: set "
                f"{where}.inputs.{name}.dims to the sizes to generate (without the batch axis), or give a dataloader"
            )
        shape = [samples, *tensor["shape"]]
        low, high = tensor.get("low"), tensor.get("high")
        if dtypes.is_string(dtype):
            raise UserError(
                f"input {name!r} is a string tensor and no dataloader gives its data: strings "
                f"cannot be made up; set {where}.dataloader to a file whose batches() yields "
                "object arrays of str for it"
            )
        if dtype.kind == "b":
            out[name] = rng.integers(0, 2, shape).astype(bool)
        elif dtype.kind in "iu":
            if low is None or high is None:
                raise UserError(
                    f"input {name!r} is an integer tensor ({dtype}) and no dataloader gives its "
                    "data: set its value range, "
                    f"{where}.inputs.{name}.low and .high (inclusive; for ids, 0 and the embedding table's size - 1)"
                )
            out[name] = rng.integers(int(low), int(high), shape, endpoint=True).astype(dtype)
        else:
            lo = 0.0 if low is None else float(low)
            hi = 1.0 if high is None else float(high)
            out[name] = rng.uniform(lo, hi, shape).astype(dtype)
    return out


def _generated_dataloader(doc: dict[str, Any]) -> ModuleType:
    module = ModuleType("deploysnake_generated_dataloader")
    module.__file__ = "<generated from the IO description>"

    def batches(split: str, batch_size: int, params: dict[str, Any]) -> Any:
        seed = int(params.get("seed", 0)) + (0 if split == "validation" else 1)
        data = generate(doc, GENERATED_SAMPLES, seed)
        for start in range(0, GENERATED_SAMPLES, batch_size):
            stop = min(start + batch_size, GENERATED_SAMPLES)
            yield {
                "ids": np.arange(start, stop),
                "inputs": {n: a[start:stop] for n, a in data.items()},
                "labels": np.full(stop - start, -1, dtype=np.int64),
            }

    module.batches = batches  # type: ignore[attr-defined]
    module.GENERATED = True  # type: ignore[attr-defined]
    return module


def _no_metrics() -> ModuleType:
    module = ModuleType("deploysnake_no_task_metric")
    module.__file__ = "<no task metric given>"
    module.compute = lambda outputs, labels: {}  # type: ignore[attr-defined]
    module.NO_TASK_METRIC = True  # type: ignore[attr-defined]
    return module


def dataloader_examples(
    dataloader: ModuleType, params: dict[str, Any], size: int
) -> dict[str, NDArray[Any]]:
    """`size` rows of the dataloader's validation split (its first batch of that size, rows taken
    in turn again where it holds fewer): the user's data for every step that runs the model before
    correctness (the first run, the batch-axis probe, an exporter's example)."""
    first = next(iter(dataloader.batches("validation", size, params)), None)
    if first is None:
        raise UserError(f"dataloader {dataloader.__file__} yields no validation batches")
    out = {}
    for name, value in first["inputs"].items():
        array = np.asarray(value)
        rows = np.arange(size) % max(1, len(array))
        out[name] = np.ascontiguousarray(array[rows])
    return out


def example_data(
    doc: dict[str, Any], settings: dict[str, Any], size: int
) -> dict[str, NDArray[Any]]:
    """`size` rows for a run of the source file: from the config's dataloader
    (models.<name>.dataloader) where given, else generated from the description (generate)."""
    if settings.get("dataloader"):
        dataloader = _load_module(Path(settings["dataloader"]), "dataloader")
        return dataloader_examples(dataloader, settings.get("params") or {}, size)
    return generate(doc, size, seed=0)


def _model_module(doc: dict[str, Any], dataloader: ModuleType | None = None) -> ModuleType:
    module = ModuleType("deploysnake_source_model")
    module.__file__ = doc["path"]
    module.INPUT_NAMES = [t["name"] for t in doc["inputs"]]  # type: ignore[attr-defined]
    module.OUTPUT_NAMES = [t["name"] for t in doc["outputs"]]  # type: ignore[attr-defined]
    module.DYNAMIC_AXES = {  # type: ignore[attr-defined]
        t["name"]: {int(a): d for a, d in t["dynamic"].items()}
        for t in doc["inputs"] + doc["outputs"]
        if t["dynamic"]
    }
    params = doc.get("params") or {}
    module.example_inputs = (  # type: ignore[attr-defined]
        (lambda size: dataloader_examples(dataloader, params, size))
        if dataloader is not None
        else (lambda size: generate(doc, size, seed=0))
    )
    return module


def source_recipe(settings: dict[str, Any], name: str = "<name>") -> Recipe:
    """A Recipe (plugins.Recipe) for a source model: its model module describes the file's IO, its
    example_inputs are the given dataloader's rows (generated data only where none is given); the
    dataloader and metrics are the given files, or generated data and no task metric."""
    doc = describe(settings, name)
    dataloader = (
        _load_module(Path(settings["dataloader"]), "dataloader")
        if settings.get("dataloader")
        else None
    )
    return Recipe(
        folder=Path(settings.get("dataloader") or doc["path"]).parent,
        model=_model_module({**doc, "params": settings.get("params") or {}}, dataloader),
        dataloader=dataloader or _generated_dataloader(doc),
        metrics=(
            _load_module(Path(settings["metrics"]), "metrics")
            if settings.get("metrics")
            else _no_metrics()
        ),
    )


def has_task_metric(recipe: Any) -> bool:
    return not getattr(recipe.metrics, "NO_TASK_METRIC", False)


# ------------------------------------------------------------------ stages


def write_description(name: str, settings: dict[str, Any], output: str | Path) -> dict[str, Any]:
    """The source's first job: describe its IO (UserError where ambiguous), run the given file once on
    a batch of the dataloader's (or generated) data, check the dataloader's input names and the
    metrics' return value, and write results/checkpoint/<model>/source.json. A TorchScript file that
    reads or writes files is refused first (trust.check_torchscript)."""
    if source_kind(settings) == "torchscript":
        check_torchscript(
            source_file(settings), bool(settings.get("allow_file_io")), f"models.{name}"
        )
    if source_kind(settings) == "exported_program":
        check_exported_program(source_file(settings), f"models.{name}")
    recipe = source_recipe(settings, name)
    doc = describe(settings, name)
    batch = validation_batches(recipe, settings.get("params") or {}, 8, limit=1)[0]
    for tensor in doc["inputs"]:
        got = np.asarray(batch["inputs"][tensor["name"]])
        if str(got.dtype) != tensor["dtype"]:
            strings = dtypes.is_string(tensor["dtype"])
            raise UserError(
                f"{settings.get('dataloader') or 'generated data'}: input {tensor['name']!r} is "
                f"{got.dtype}, but {doc['path']} takes "
                + (
                    "strings: yield an object array of str (np.array(texts, dtype=object))"
                    if strings
                    else tensor["dtype"]
                )
            )
    try:
        with _quiet_onnxruntime(doc):
            runner = source_runner_of(doc)
    except Exception as exc:  # each runtime raises its own types for a file it cannot load
        missing = missing_locale_error(doc, exc)
        if missing is not None:
            raise missing from exc
        raise UserError(
            f"{doc['path']} cannot be loaded by the runtime that serves {doc['format']}: "
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:500]}"
        ) from exc
    outputs = _run_at_two_sizes(runner, doc, batch["inputs"], name)
    metrics = recipe.metrics.compute(outputs, np.asarray(batch["labels"]))
    if has_task_metric(recipe) and (
        not isinstance(metrics, dict)
        or not metrics
        or not all(isinstance(v, (int, float, np.number)) for v in metrics.values())
    ):
        raise UserError(
            f"{settings['metrics']}: compute() must return a non-empty dict of metric name -> number, got {metrics!r}"
        )
    doc.update(
        # Over every file of the source (model, side files, version folder): new weights, new hash.
        sha256=_source_sha256(settings),
        dataloader=settings.get("dataloader") or None,
        metrics=settings.get("metrics") or None,
        task_metric=has_task_metric(recipe),
    )
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(doc, indent=2) + "\n")
    log.info("source %s (%s): %s", name, doc["kind"], json.dumps(io_entries(doc)))
    if not doc["task_metric"]:
        log.info("no metrics given: outputs are compared with the source's, no task metric")
    return doc


def _source_sha256(settings: dict[str, Any]) -> str:
    files = source_files(settings)
    key = source_key(settings)
    base = Path(settings[key]) if key in ("savedmodel", "triton_model") else files[0].parent
    return modelfiles.sha256(files, base)


def write_description_isolated(
    name: str, settings: dict[str, Any], output: str | Path, timeout_s: float | None = None
) -> None:
    """write_description in a child process, at most timeout_s seconds (default the config's
    timeouts.first_run_s): the first run of the user's file (and plugins). Raises UserError naming
    the file when it times out, crashes or fails."""
    from .isolated import call
    from .trust import timeouts

    limit = timeouts()["first_run_s"] if timeout_s is None else float(timeout_s)
    outcome = call(
        "deploysnake.sources:write_description",
        {"name": name, "settings": dict(settings), "output": str(output)},
        limit,
    )
    if outcome.failure is None:
        return
    if outcome.user_error is not None:
        raise UserError(outcome.user_error)
    path = source_file(settings)
    if outcome.failure.startswith("timed out"):
        raise UserError(
            f"the first run of {path} did not finish within {limit:g} s "
            f"(timeouts.first_run_s): {outcome.failure}; raise timeouts.first_run_s if it is "
            "this slow"
        )
    raise UserError(f"the first run of {path} failed: {outcome.failure}")


# ONNX Runtime's message where a StringNormalizer's locale is not installed (string_normalizer.cc).
LOCALE_FAILURE = re.compile(r"Failed to construct locale with name:\s*([^\s:]+)")


def missing_locale_error(doc: dict[str, Any], exc: BaseException) -> UserError | None:
    """The refusal of an ONNX file whose StringNormalizer node needs a locale this machine lacks
    (ONNX Runtime builds the node's `locale`, en_US.UTF-8 where it names none, when the session is
    created): names the node, the locale and both ways out. None for any other failure."""
    found = LOCALE_FAILURE.search(str(exc))
    if found is None or doc.get("format") != "onnx":
        return None
    import onnx

    locale = found.group(1)
    graph = onnx.load(doc["path"], load_external_data=False).graph
    nodes = [n.name or n.output[0] for n in graph.node if n.op_type == "StringNormalizer"]
    named = ", ".join(repr(n) for n in nodes) or "a StringNormalizer node"
    return UserError(
        f"{doc['path']}: its StringNormalizer node {named} needs the {locale} locale, which this "
        f"machine does not have (ONNX Runtime cannot create the session): install the {locale} "
        "locale on every machine that runs or serves the model (Debian: locales package, "
        f"locale-gen {locale}), or convert the model again with skl2onnx's locale option "
        "(options={id(vectorizer): {'locale': 'C'}}) so the node needs none"
    )


@contextlib.contextmanager
def _quiet_onnxruntime(doc: dict[str, Any]) -> Iterator[None]:
    """ONNX Runtime's own logger off while the file is first loaded: a session that cannot be
    created also prints its exception (multi-line, in colour) before raising it, and the first job
    says what went wrong in one sentence instead. Its default severity (warning) is set again."""
    if doc.get("format") != "onnx":
        yield
        return
    import onnxruntime as ort

    ort.set_default_logger_severity(4)  # fatal only
    try:
        yield
    finally:
        ort.set_default_logger_severity(2)


# The second batch size the first job runs the source at (the first: the dataloader's batch of 8).
SECOND_BATCH = 3


def _run_at_two_sizes(
    runner: Any, doc: dict[str, Any], inputs: dict[str, Any], name: str
) -> dict[str, NDArray[Any]]:
    """Run the source on the batch and on its first SECOND_BATCH rows; every output must have as
    many rows as the input. A file whose batch is fixed inside (a constant Reshape to 1 under a
    dynamic-looking input) fails or answers with the wrong rows at one of the two: a UserError
    naming the output's shape, or the node ONNX Runtime names. Returns the full batch's outputs."""
    arrays = {n: np.asarray(a) for n, a in inputs.items()}
    rows = len(next(iter(arrays.values())))
    sizes = [rows] + ([SECOND_BATCH] if rows > SECOND_BATCH else [])
    results: dict[int, dict[str, NDArray[Any]]] = {}
    for size in sizes:
        part = {n: a[:size] for n, a in arrays.items()}
        try:
            results[size] = runner(part)
        except Exception as exc:  # each runtime raises its own types
            at_one = None
            if size > 1:
                try:
                    runner({n: a[:1] for n, a in arrays.items()})
                    at_one = True
                except Exception:
                    at_one = False
            if at_one:
                raise UserError(
                    f"{doc['path']} runs at batch 1 but fails at batch {size} although its inputs' "
                    f"first axis is dynamic: its batch is fixed inside the graph ({_last_line(exc)}); "
                    "export it again with the batch dynamic throughout (no reshape to a constant "
                    "batch), or serve it unbatched outside deploysnake"
                ) from exc
            raise UserError(
                f"{doc['path']} fails on a batch of {size} of "
                f"{'the dataloader' if doc.get('dataloader') else 'generated data'}'s rows "
                f"({', '.join(f'{n} {a.dtype} {list(a.shape)}' for n, a in part.items())}): "
                f"{_last_line(exc)}; check the file against models.{name}.inputs and the dataloader"
            ) from exc
        for out_name, value in results[size].items():
            shape = list(np.shape(value))
            if not shape or shape[0] != size:
                raise UserError(
                    f"{doc['path']}: output {out_name!r} has shape {shape} for a batch of {size} "
                    "rows although the inputs' first axis is dynamic: its batch is fixed inside the "
                    "graph (e.g. a constant Reshape); export it again with the batch dynamic "
                    "throughout, or serve it unbatched outside deploysnake"
                )
    return results[rows]


def source_runner_of(doc: dict[str, Any]) -> Any:
    from .runtime import ArtifactRuntime

    if doc["kind"] == "exported_program":  # refused before torch.export.load unpickles anything
        check_exported_program(doc["path"], f"models.{doc.get('model', '<name>')}")
    return ArtifactRuntime(
        doc["path"],
        doc["format"],
        [t["name"] for t in doc["inputs"]],
        [t["name"] for t in doc["outputs"]],
    )


def source_runner(description: str | Path) -> Any:
    """The reference: the given file run by the runtime that reads it, from its source.json."""
    return source_runner_of(json.loads(Path(description).read_text()))


def load_settings(settings: dict[str, Any]) -> Recipe:
    """The recipe of one model's config settings (models.<name>); an exported source's (onnx:,
    torchscript:, ...) describes its file's IO, with its given or generated data (below)."""
    if not settings.get("recipe"):
        return source_recipe(settings)
    return load_recipe(settings["recipe"], {kind: settings.get(kind) for kind in CONTRACT})
