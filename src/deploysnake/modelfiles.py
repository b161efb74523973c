"""The files a model is made of, kept inside its folder, and how they travel through results/.

A model is often more than one file: an ONNX file whose initializers keep their data in side files
(ONNX's "external data", named by each tensor's `location`; torch's default exporter writes
`model.onnx` + `model.onnx.data`), a SavedModel folder (`saved_model.pb`, `variables/`, `assets/`),
a Triton model directory's version folder. Every one of those files must resolve inside the model's
own folder: a location or a link that leads elsewhere (`../x`, an absolute path, a symbolic link)
is refused with its name before anything reads it, as onnx and ONNX Runtime do for external data
(onnx/onnx#3991 and #7686), so nothing outside the model's folder is read, copied into results/ or
archived.

Within results/, files are hard-linked where the copy is never written (export -> served
repository); the deploy repository and its archive hold real copies.

Light at import time: onnx is imported only where an ONNX file is read.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UserError

# Protobuf's limit on one serialized message (2 GiB): an ONNX model above it must keep its weights
# in a side file (https://onnx.ai/onnx/repo-docs/ExternalData.html).
PROTOBUF_LIMIT = 2**31 - 1
# The side file deploysnake writes beside a model above the limit: <artifact>.data, a relative name
# (ONNX Runtime's quantizer uses the same convention).
SIDE_SUFFIX = ".data"
FIX = (
    "keep the weights beside the model file under a relative name, e.g. "
    "onnx.save_model(model, 'model.onnx', save_as_external_data=True, location='model.onnx.data')"
)


def inside(path: Path, root: Path) -> bool:
    """Whether path, with every symbolic link on the way resolved (links are read, not the file),
    lies inside root."""
    return path.resolve().is_relative_to(root.resolve())


@functools.lru_cache(maxsize=64)
def _external_data(path: str, _mtime_ns: int, _size: int) -> tuple[tuple[str, str], ...]:
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    model = onnx.load(path, load_external_data=False)
    return tuple(
        (tensor.name, ExternalDataInfo(tensor).location)
        for tensor in _get_all_tensors(model)  # initializers and tensors in subgraph attributes
        if uses_external_data(tensor)
    )


def external_data(path: Path) -> list[tuple[str, str]]:
    """(tensor name, location as written) of every tensor of the ONNX file whose data lives in a
    side file, in file order; the graph is parsed, no weight is read (cached per file version)."""
    stat = path.stat()
    return list(_external_data(str(path), stat.st_mtime_ns, stat.st_size))


def _side_problem(location: str, side: Path, root: Path) -> str | None:
    if not location:
        return "an empty location"
    if Path(location).is_absolute():
        return "an absolute path"
    if ".." in Path(location).parts:
        return "a path leading out of the folder (..)"
    if not inside(side, root):
        return "a symbolic link leading out of the folder"
    return None


def onnx_files(path: str | Path, root: str | Path | None = None) -> list[Path]:
    """The ONNX file and the side files its tensors' data live in (each once, in first-use order).

    Raises UserError naming the tensor and its location where a location is absolute, holds `..`,
    resolves (through a link) outside root (default: the file's folder), or does not exist; nothing
    is read from such a location."""
    path = Path(path)
    root = path.parent if root is None else Path(root)
    files = [path]
    for tensor, location in external_data(path):
        side = path.parent / location
        problem = _side_problem(location, side, root)
        if problem is not None:
            raise UserError(
                f"{path}: initializer {tensor!r} keeps its data in {location!r}, {problem}: it "
                f"points outside the model's folder {root}, which onnx and ONNX Runtime refuse and "
                f"deploysnake never reads or copies; {FIX}"
            )
        if not side.is_file():
            raise UserError(
                f"{path}: initializer {tensor!r} keeps its data in {location!r}, which does not "
                f"exist in {path.parent}; hand over the side file with the model (torch.onnx.export "
                "writes model.onnx and model.onnx.data: give both, in one folder)"
            )
        if side not in files:
            files.append(side)
    return files


def _walk(folder: Path, root: Path, seen: frozenset[Path]) -> Iterator[Path]:
    real = folder.resolve()
    if real in seen:
        raise UserError(f"{folder}: a symbolic link loops back to a folder above it; remove it")
    for entry in sorted(folder.iterdir()):
        if entry.is_symlink() and not inside(entry, root):
            raise UserError(
                f"{entry} is a symbolic link to {os.readlink(entry)}, outside the model's folder "
                f"{root}; deploysnake reads and copies nothing outside it: replace the link by the "
                "file itself"
            )
        if entry.is_dir():
            yield entry
            yield from _walk(entry, root, seen | {real})
        elif entry.is_file():
            yield entry


def tree(folder: str | Path, root: str | Path | None = None) -> list[Path]:
    """Every folder and file under folder (sorted, depth first). Raises UserError naming the link
    where a symbolic link under it leads outside root (default: folder itself), before anything
    under it is read."""
    folder = Path(folder)
    return list(_walk(folder, folder if root is None else Path(root), frozenset()))


def tree_files(folder: str | Path, root: str | Path | None = None) -> list[Path]:
    """The files of tree(folder, root)."""
    return [p for p in tree(folder, root) if not p.is_dir()]


def artifact_files(artifact: str | Path, fmt: str) -> list[Path]:
    """The files of an artifact in results/export: an ONNX format's file and its side files, a
    SavedModel's files, else the one file."""
    artifact = Path(artifact)
    if artifact.is_dir():
        return tree_files(artifact)
    if fmt.startswith("onnx") and artifact.stat().st_size:
        return onnx_files(artifact)
    return [artifact]


def size(files: list[Path]) -> int:
    """Bytes of the files together."""
    return sum(f.stat().st_size for f in files)


def sha256(files: list[Path], base: Path) -> str:
    """One digest over the files' contents; with more than one file, each file's name relative to
    base is hashed before its bytes, so a renamed side file changes the digest too."""
    digest = hashlib.sha256()
    for file in files:
        if len(files) > 1:
            digest.update(file.relative_to(base).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def place(source: Path, target: Path, link: bool) -> None:
    """Copy source to target (replacing it); with link, a hard link where the file system allows
    one (the caller guarantees neither side is written in place afterwards)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    if link:
        try:
            os.link(source, target)
            return
        except OSError:  # another file system, or links not allowed: copy
            pass
    shutil.copyfile(source, target)


def copy_artifact(artifact: str | Path, fmt: str, target: str | Path, link: bool) -> None:
    """Copy an artifact with every file it needs to target (a file's side files beside it under
    their relative names, a folder whole), hard-linked where link allows."""
    artifact, target = Path(artifact), Path(target)
    if artifact.is_dir():
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for entry in tree(artifact):
            if entry.is_dir():
                (target / entry.relative_to(artifact)).mkdir(parents=True, exist_ok=True)
            else:
                place(entry, target / entry.relative_to(artifact), link)
        return
    for file in artifact_files(artifact, fmt):
        name = target.name if file == artifact else file.relative_to(artifact.parent)
        place(file, target.parent / name, link)


def side_file(target: Path) -> Path:
    """The side file deploysnake writes beside an ONNX file above protobuf's limit."""
    return target.with_name(target.name + SIDE_SUFFIX)


def clear_side_file(target: Path) -> None:
    """Remove a side file left by an earlier run: a writer that reopens it would otherwise write
    through a hard link into a served copy."""
    side_file(target).unlink(missing_ok=True)


def save_onnx(model: Any, target: str | Path, limit: int | None = None) -> None:
    """Write an ONNX ModelProto (its data loaded) to target: one self-contained file below limit
    bytes (protobuf's 2 GiB by default), else the graph in target and every tensor of 1 KiB or more
    in target.data beside it (a relative location, so the pair moves together)."""
    import onnx

    target = Path(target)
    clear_side_file(target)
    try:
        large = model.ByteSize() >= (PROTOBUF_LIMIT if limit is None else limit)
    except Exception:  # a message protobuf cannot size is above its limit
        large = True
    if large:
        onnx.save_model(
            model,
            str(target),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=side_file(target).name,
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(target))
