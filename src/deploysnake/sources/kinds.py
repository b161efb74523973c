"""What a model's given files are: the source keys (`models.<name>.onnx`, `torchscript`,
`savedmodel`, `triton_model`, `exported_program`), each kind's own format and its files (a Triton
model directory's version folder and platform, an ONNX file's side files), the config's problems
with them, and the files the workflow's jobs take as inputs (rule_inputs). Light: the Snakefile
imports it at every start."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from .. import modelfiles
from ..errors import UserError
from ..formats import FAMILIES, SOURCE_PLATFORMS

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


def triton_config(folder: Path) -> Any:
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
        return _triton_kind(triton_config(folder), folder)
    return key


def source_file(settings: dict[str, Any]) -> Path:
    """The model file (a SavedModel: its folder) that is the reference."""
    key = source_key(settings)
    assert key is not None
    path = Path(settings[key])
    if key == "triton_model":
        cfg = triton_config(path)
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
