"""What a user's files may do when they run: a TorchScript file is code (its methods run whatever
ops they hold), so the file's graph is scanned for ops that read or write files before it first runs,
and the user's code runs under time limits (the config's `timeouts` section).

Which inputs run code: a recipe's plugins (model.py, dataloader.py, metrics.py), a TorchScript file
(its methods; `__setstate__` already when loaded), a SavedModel (its graph's ops, e.g. ReadFile), and
a config that asks for Snakemake's templating (refused, deploysnake.configuration.check_raw). Which
do not: an ONNX file (ONNX Runtime runs only its standard operators) and a checkpoint (loaded with
torch.load(weights_only=True), which unpickles tensors and plain containers only).

A torch.export program (torch.export.save's .pt2 archive) is a JSON graph of registered ops and raw
weights, but torch.export.load (2.13) unpickles without restriction (weights_only=False) any weight
or constant the archive marks as pickled, its custom and opaque objects, and its sample inputs
where they do not load with weights_only=True: check_exported_program refuses such an archive
before torch.export.load reads it, so loading one runs no code from the file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import UserError

# Ops that read or write files, by schema name; with those of torch's registry whose schema takes a
# file name (file_io_ops). torch.load is no TorchScript op; torch.ops.load_library is not scriptable.
FILE_OPS = frozenset({"aten::from_file", "aten::save", "debugprims::load_tensor"})
_FILE_ARGS = frozenset({"filename", "file", "file_name", "filepath", "fname"})

# The time limits of the user's code, in seconds (config `timeouts`), handed to the jobs through
# the environment: the Snakefile sets it from the config in every process (main and jobs).
TIMEOUTS_ENV = "DEPLOYSNAKE_TIMEOUTS"
DEFAULT_TIMEOUTS = {"import_s": 120.0, "train_s": 86400.0, "first_run_s": 600.0}


def timeouts() -> dict[str, float]:
    """{import_s, train_s, first_run_s}: the config's `timeouts` as the Snakefile exported them
    ($DEPLOYSNAKE_TIMEOUTS, JSON), else the defaults (seconds)."""
    try:
        given = json.loads(os.environ.get(TIMEOUTS_ENV, "{}"))
    except ValueError:
        given = {}
    return {k: float(given.get(k, v)) for k, v in DEFAULT_TIMEOUTS.items()}


def file_io_ops() -> frozenset[str]:
    """FILE_OPS and every op of torch's registry whose schema has a file-name argument."""
    import torch

    found = {
        schema.name
        for schema in torch._C._jit_get_all_schemas()
        if any(arg.name in _FILE_ARGS for arg in schema.arguments)
    }
    return FILE_OPS | found


def _serialized_name(op: str) -> str:
    """How TorchScript's serialized code calls an op: aten::save -> torch.save, ns::op -> ops.ns.op."""
    namespace, name = op.split("::", 1)
    return f"torch.{name}" if namespace == "aten" else f"ops.{namespace}.{name}"


def _code_ops(path: Path, ops: frozenset[str]) -> set[str]:
    """The ops of `ops` called in the archive's serialized code (code/**/*.py), read without loading
    the file (loading runs its `__setstate__` methods)."""
    calls = {op: re.compile(rf"(?<![\w.]){re.escape(_serialized_name(op))}\s*\(") for op in ops}
    found = set()
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if "/code/" in f"/{name}" and name.endswith(".py"):
                text = archive.read(name).decode("utf-8", errors="replace")
                found |= {op for op, call in calls.items() if call.search(text)}
    return found


def _nodes(block: Any) -> Iterator[Any]:
    for node in block.nodes():
        yield node
        for sub in node.blocks():
            yield from _nodes(sub)


def graph_ops(module: Any) -> set[str]:
    """Every op kind of a loaded TorchScript module: each method of it and of every submodule, with
    the calls inlined (torch._C._jit_pass_inline) and nested blocks (if, loop) walked."""
    import torch

    kinds: set[str] = set()
    for _, sub in module.named_modules():
        for method in sub._c._method_names():
            # The compiled method itself: getattr may give a Python function where a method is
            # shadowed (case 21's modules), which has no graph.
            graph = sub._c._get_method(method).graph.copy()
            torch._C._jit_pass_inline(graph)
            kinds |= {node.kind() for node in _nodes(graph)}
    return kinds


def check_torchscript(path: str | Path, allow_file_io: bool, where: str) -> None:
    """Refuse a TorchScript file that reads or writes files, unless `allow_file_io`.

    Scans the archive's code before loading it, then the graphs of every method once loaded.
    `where`: the config key of the model (models.<name>). Raises UserError naming the file, the
    ops and the key that allows them."""
    path = Path(path)
    ops = file_io_ops()
    if not zipfile.is_zipfile(path):
        return  # not an archive: torch.jit.load refuses it with its own message
    found = _code_ops(path, ops)
    if not found:
        import torch

        found = graph_ops(torch.jit.load(str(path), map_location="cpu")) & ops
    if found and not allow_file_io:
        raise UserError(
            f"{path} reads or writes files when it runs ({', '.join(sorted(found))}): a TorchScript "
            "file is code, and this one reaches outside the model; use a file without those ops, "
            f"or, if you trust it, set {where}.allow_file_io: true"
        )


class _TimeLimit(BaseException):
    """Raised in the main thread when a time limit fires (a BaseException: `except Exception` in the
    user's code does not swallow it)."""


@contextmanager
def time_limit(seconds: float, what: str, key: str) -> Iterator[None]:
    """Run the block at most `seconds` (SIGALRM; in the main thread only, elsewhere no limit).
    Raises UserError "<what> did not finish within N s (<key>)" when it fires. Python code is
    interrupted between bytecodes; a call stuck inside C code is not (use isolated.call for that)."""
    import threading

    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise _TimeLimit()

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _TimeLimit:
        raise UserError(
            f"{what} did not finish within {seconds:g} s ({key}); make it end sooner, or raise "
            f"{key} in the config"
        ) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_exported_program(path: str | Path, where: str) -> None:
    """Refuse (UserError, one sentence naming the file and the member) a torch.export archive that
    torch.export.load would unpickle without restriction: a weight or tensor constant stored as a
    pickle (`use_pickle` in data/*/model_*_config.json), a custom or opaque object constant
    (custom_obj_*, opaque_obj_*: TorchScript or arbitrary pickles), or sample inputs that do not
    load with torch.load(weights_only=True). Rules from torch/export/pt2_archive/_package.py
    (load_pt2, _load_state_dict, _load_constants) and torch/_export/serde/serialize.py
    (deserialize_torch_artifact) of torch 2.13. Also refuses a file that is no such archive."""
    import io

    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(
            f"{where}.exported_program: {path} is not a torch.export archive ({exc}); save the "
            "program with torch.export.save(torch.export.export(model, args), 'model.pt2')"
        ) from exc
    with archive:
        names = archive.namelist()
        root = names[0].split("/", 1)[0] if names else ""
        if not any(n.startswith(f"{root}/models/") and n.endswith(".json") for n in names):
            raise UserError(
                f"{where}.exported_program: {path} is a zip archive without a models/*.json "
                "program (an AOTInductor package or a TorchScript file is not a torch.export "
                "program); save the program with torch.export.save"
            )
        for name in names:
            member = name[len(root) + 1 :]
            if member.startswith("data/constants/") and member.split("/")[-1].startswith(
                ("custom_obj", "opaque_obj")
            ):
                raise UserError(
                    f"{where}.exported_program: {path} holds the object constant {member}, which "
                    "torch.export.load unpickles without restriction (it can run any code); "
                    "deploysnake does not load it: export a model whose constants are tensors"
                )
            if member.startswith("data/") and member.endswith("_config.json"):
                config = json.loads(archive.read(name)).get("config", {})
                pickled = [k for k, v in config.items() if v.get("use_pickle")]
                if pickled:
                    raise UserError(
                        f"{where}.exported_program: {path} stores {pickled[0]!r} as a pickle "
                        f"({member}), which torch.export.load unpickles without restriction (it "
                        "can run any code); deploysnake does not load it: save plain tensors "
                        "(contiguous, no tensor subclass)"
                    )
            if member.startswith("data/sample_inputs/"):
                import torch

                try:
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception as exc:
                    raise UserError(
                        f"{where}.exported_program: {path}'s sample inputs ({member}) do not load "
                        "as plain tensors (torch.load weights_only=True), and torch.export.load "
                        "would unpickle them without restriction; deploysnake does not load it: "
                        "export with tensor example inputs"
                    ) from exc
