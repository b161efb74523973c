"""Config validation: the JSON schema (config/config.schema.yaml) plus the checks a schema cannot
express. Every problem is reported before any job runs, naming the key and what is allowed."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from .errors import UserError
from .formats import ARTIFACTS, FRAMEWORK_FORMATS, TENSORRT, tensorrt_unavailable
from .plugins import plugin_paths
from .sources import OWN_FORMAT, SOURCE_KEYS, SOURCE_ONLY, config_problems, is_source

PROJECT = Path(__file__).resolve().parents[2]
SCHEMA = PROJECT / "config" / "config.schema.yaml"


def _with_defaults(cls: Any) -> Any:
    """A validator that also fills in schema defaults (as snakemake.utils.validate does)."""
    check_properties = cls.VALIDATORS["properties"]

    def properties(
        validator: Any, props: dict[str, Any], instance: Any, schema: dict[str, Any]
    ) -> Any:
        if isinstance(instance, dict):
            for key, sub in props.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, props, instance, schema)

    return validators.extend(cls, {"properties": properties})


def _where(path: Any) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in path]
    return "config" + "".join(parts)


def _explain(error: Any) -> str:
    if error.validator in ("oneOf", "anyOf") and error.context:
        # Explain the alternative that got furthest (e.g. a list with a bad item), not "no schema matched".
        deepest = max(error.context, key=lambda e: len(e.absolute_path))
        if len(deepest.absolute_path) > len(error.absolute_path):
            return _explain(deepest)
    where = _where(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys: {', '.join(allowed)}"
    if error.validator == "enum":
        return (
            f"{where}: {error.instance!r} is not allowed; allowed values: "
            f"{', '.join(map(str, error.validator_value))}"
        )
    if "propertyNames" in error.schema_path:
        return (
            f"{where}: name {error.instance!r} is not allowed: use letters, digits, '_', '.', '-' "
            "(no '/', spaces or shell characters), at most 64, starting with a letter or digit"
        )
    if error.validator == "type":
        return f"{where}: {error.instance!r} should be of type {error.validator_value}"
    return f"{where}: {error.message}"


def load_schema(path: Path = SCHEMA) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Return the config with defaults filled in, or raise UserError listing every problem."""
    config = copy.deepcopy(dict(config))
    validator = _with_defaults(Draft202012Validator)(load_schema())
    problems = sorted({_explain(e) for e in validator.iter_errors(config)})
    if problems:
        raise UserError("invalid config:\n  " + "\n  ".join(problems))
    problems = semantic_problems(config)
    if problems:
        raise UserError("invalid config:\n  " + "\n  ".join(problems))
    return config


def plan_formats(config: dict[str, Any]) -> tuple[dict[str, list[str]], list[dict[str, str]]]:
    """The formats each model goes through, and the ones skipped with the reason (for the report).

    `formats: auto` takes every format of the model's framework that this machine can build; a format
    listed by name that the machine cannot build is a config error (raised by validate)."""
    trt_reason = tensorrt_unavailable()
    planned: dict[str, list[str]] = {}
    skipped: list[dict[str, str]] = []
    for name, model in sorted(config["models"].items()):
        framework = model["framework"]
        candidates = (
            FRAMEWORK_FORMATS[framework] if config["formats"] == "auto" else config["formats"]
        )
        planned[name] = []
        if framework in OWN_FORMAT and OWN_FORMAT[framework] not in candidates:
            # An exported source's own format (its given file) is always served: the reference.
            candidates = [OWN_FORMAT[framework], *candidates]
        for fmt in candidates:
            if fmt not in FRAMEWORK_FORMATS[framework]:
                skipped.append(
                    {"model": name, "format": fmt, "reason": f"not a format of {framework} models"}
                )
            elif fmt in TENSORRT and trt_reason:
                skipped.append({"model": name, "format": fmt, "reason": f"skipped: {trt_reason}"})
            else:
                planned[name].append(fmt)
    return planned, skipped


def semantic_problems(config: dict[str, Any]) -> list[str]:
    problems = []
    if config["formats"] != "auto":
        wanted = [f for f in config["formats"] if f in TENSORRT]
        if wanted and (reason := tensorrt_unavailable()):
            problems.append(
                f"config.formats: {wanted} cannot be built on this machine: {reason}; remove "
                "them, or use formats: auto to skip what this machine cannot build"
            )
    max_batch = config["triton"]["max_batch_size"]
    if max_batch == 0 and config["tuning"]["formats"]:
        problems.append(
            f"config.tuning.formats: {config['tuning']['formats']} cannot be tuned with triton.max_batch_size: 0 "
            "(an unbatched model has no batching to search); remove them or serve the model batched"
        )
    for key, sizes in (
        ("perf.offline.batch_sizes", config["perf"]["offline"]["batch_sizes"]),
        ("perf.online.batch_size", [config["perf"]["online"]["batch_size"]]),
        ("accuracy.batch_size", [config["accuracy"]["batch_size"]]),
    ):
        # max_batch_size 0: each request is one whole sample; the batch sizes are not sent.
        too_big = [b for b in sizes if b > max_batch] if max_batch > 0 else []
        if too_big:
            problems.append(
                f"config.{key}: {too_big} above triton.max_batch_size ({max_batch}); lower it or "
                "raise triton.max_batch_size"
            )
    for name, model in config["models"].items():
        if is_source(model):
            problems += config_problems(name, model, PROJECT)
            continue
        if not model.get("recipe"):
            problems.append(
                f"config.models.{name}: give a recipe (a folder with model.py, dataloader.py, "
                "metrics.py) or an exported model: " + ", ".join(SOURCE_KEYS)
            )
            continue
        model.setdefault("framework", "torch")
        problems += [
            f"config.models.{name}.{key}: applies to exported models (onnx, torchscript, ...) only; "
            "a recipe's model.py declares its IO"
            for key in SOURCE_ONLY
            if key in model
        ]
        recipe = Path(model["recipe"])
        if not recipe.is_absolute() and not recipe.exists() and (PROJECT / recipe).is_dir():
            # The shipped recipes also work when Snakemake runs in another --directory.
            recipe = PROJECT / recipe
            model["recipe"] = str(recipe)
        if not recipe.is_dir():
            problems.append(
                f"config.models.{name}.recipe: folder {recipe} does not exist (it holds model.py, "
                "dataloader.py, metrics.py)"
            )
        for kind, path in plugin_paths(model).items():
            if recipe.is_dir() and not path.is_file():
                problems.append(
                    f"config.models.{name}: {kind} plugin {path} does not exist; write it or name "
                    f"another file in config.models.{name}.{kind}"
                )
        if model["checkpoint"] and not Path(model["checkpoint"]).is_file():
            problems.append(
                f"config.models.{name}.checkpoint: file {model['checkpoint']} does not exist; "
                "give a trained state_dict or leave it empty to train"
            )
    keras = [name for name, model in config["models"].items() if model.get("framework") == "keras"]
    if keras and (
        importlib.util.find_spec("tensorflow") is None
        or importlib.util.find_spec("tf2onnx") is None
    ):
        problems.append(
            f"config.models: {keras} are keras models, which need TensorFlow and tf2onnx: pip "
            "install -e '.[tf]' (make test installs them)"
        )
    tuning = config["tuning"]
    unknown = [f for f in tuning["formats"] if f not in ARTIFACTS]
    if unknown:
        problems.append(
            f"config.tuning.formats: {unknown} are not formats; allowed: {', '.join(ARTIFACTS)}"
        )
    if tuning["formats"]:
        # The tuned configuration is the one served: it must take every batch the workflow sends.
        needed = max(
            [
                *config["perf"]["offline"]["batch_sizes"],
                config["perf"]["online"]["batch_size"],
                config["accuracy"]["batch_size"],
            ]
        )
        small = [b for b in tuning["space"]["max_batch_size"] if b < needed]
        if small:
            problems.append(
                f"config.tuning.space.max_batch_size: {small} below the largest batch the "
                f"workflow sends ({needed}, from perf.offline.batch_sizes, "
                "perf.online.batch_size and accuracy.batch_size); raise them or lower those batches"
            )
    low, high = tuning["batch_range"]
    if low > high:
        problems.append(
            f"config.tuning.batch_range: [{low}, {high}] is empty; give [low, high] with low <= high"
        )
    from .capacity import config_problems as capacity_problems

    problems += capacity_problems(config)
    # Whether the machine or cluster has each GPU device is checked when the run starts (devices.check_available):
    # a cluster's submit host has no GPU of its own.
    return problems
