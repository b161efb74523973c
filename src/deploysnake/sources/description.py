"""The source's description job (results/checkpoint/<model>/source.json): the given file described,
run at two batch sizes to check the batch axis, its files hashed (write_description, in a child
process: write_description_isolated), and the runner that executes the source in-process for the
correctness and accuracy stages (source_runner), and the recipe a source stands in
(source_recipe: its IO as the model module, the given dataloader and metrics or generated ones)."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import dtypes, modelfiles
from ..errors import UserError
from ..plugins import CONTRACT, Recipe, _load_module, load_recipe, validation_batches
from ..trust import check_exported_program, check_torchscript
from .data import dataloader_examples, generate, generated_dataloader, no_metrics
from .describe import describe, io_entries
from .kinds import source_file, source_files, source_key, source_kind
from .torchscript import last_line

log = logging.getLogger(__name__)


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
        dataloader=dataloader or generated_dataloader(doc),
        metrics=(
            _load_module(Path(settings["metrics"]), "metrics")
            if settings.get("metrics")
            else no_metrics()
        ),
    )


def has_task_metric(recipe: Any) -> bool:
    return not getattr(recipe.metrics, "NO_TASK_METRIC", False)


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
    from ..isolated import call
    from ..trust import timeouts

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
                    f"first axis is dynamic: its batch is fixed inside the graph ({last_line(exc)}); "
                    "export it again with the batch dynamic throughout (no reshape to a constant "
                    "batch), or serve it unbatched outside deploysnake"
                ) from exc
            raise UserError(
                f"{doc['path']} fails on a batch of {size} of "
                f"{'the dataloader' if doc.get('dataloader') else 'generated data'}'s rows "
                f"({', '.join(f'{n} {a.dtype} {list(a.shape)}' for n, a in part.items())}): "
                f"{last_line(exc)}; check the file against models.{name}.inputs and the dataloader"
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
    from ..runtime import ArtifactRuntime

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
