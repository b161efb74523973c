"""Config validation: the JSON schema (config/config.schema.yaml) plus the checks a schema cannot
express. Every problem is reported before any job runs, naming the key and what is allowed."""

from __future__ import annotations

import copy
import importlib.util
import ipaddress
import math
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from .errors import UserError
from .formats import (
    ARTIFACTS,
    CPU_FP16_NOT_AUTO,
    FRAMEWORK_FORMATS,
    NOT_AUTO,
    TENSORRT,
    cpu_has_float16_arithmetic,
    tensorrt_unavailable,
)
from .plugins import plugin_paths
from .sources.kinds import OWN_FORMAT, SOURCE_KEYS, SOURCE_ONLY, config_problems, is_source

PROJECT = Path(__file__).resolve().parents[2]
SCHEMA = PROJECT / "config" / "config.schema.yaml"


# A config is a few kilobytes: these bounds refuse a crafted one (a YAML "billion laughs": aliases
# that expand exponentially) before Snakemake merges or hashes it (measured: 38 s, then MemoryError).
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_NODES = 100_000
# Triton's max_batch_size, dims and counts are int32 (model_config.proto).
INT32_MAX = 2**31 - 1
# The largest request a batch of one input may make (generated data, perf_analyzer's input data).
MAX_REQUEST_BYTES = 4 << 30
DTYPE_BYTES = {
    "float32": 4,
    "float16": 2,
    "float64": 8,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
}


def _walk(node: Any, path: str = "config") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every node, containers included, depth first (aliases expanded)."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def check_raw(config: Any, files: list[str] | list[Path] | tuple[Any, ...] = ()) -> None:
    """Refuse a config whose shape alone is a problem, before anything else reads it: a config file
    above MAX_CONFIG_BYTES, one that asks for Snakemake's templating (`__use_yte__`, which evaluates
    Python from the config), more than MAX_CONFIG_NODES values once YAML aliases are expanded, a
    key that is not a string (YAML reads `123:` as a number), or a NaN or infinity anywhere (JSON
    Schema's bounds let NaN through: every comparison with it is false).

    Cost: at most MAX_CONFIG_NODES steps, however far the aliases would expand. Raises UserError."""
    for file in files:
        path = Path(file)
        size = path.stat().st_size if path.is_file() else 0
        if size > MAX_CONFIG_BYTES:
            raise UserError(
                f"config file {path} is {size} bytes, above the {MAX_CONFIG_BYTES} a config may "
                "have; give the settings that differ from config/config.yaml only"
            )
        if size and b"__use_yte__" in path.read_bytes():
            raise UserError(
                f"config file {path} asks for Snakemake's YTE templating (__use_yte__), which runs "
                "Python written in the config; deploysnake takes plain YAML: remove the key and "
                "write the values out"
            )
    for count, (where, node) in enumerate(_walk(config)):
        if count >= MAX_CONFIG_NODES:
            raise UserError(
                f"the config holds more than {MAX_CONFIG_NODES} values (YAML aliases, *name, "
                "repeat a value wherever they appear: a few lines can expand to billions); write "
                "the values out without nested aliases"
            )
        if isinstance(node, dict):
            bad = [k for k in node if not isinstance(k, str)]
            if bad:
                raise UserError(
                    f"{where}: key {bad[0]!r} is not a string but {type(bad[0]).__name__} (YAML "
                    f'reads it as a number or a boolean); quote it ("{bad[0]}") if it is a name'
                )
        if isinstance(node, float) and not math.isfinite(node):
            raise UserError(
                f"{where}: {node} is not a finite number (YAML's .nan, .inf); give a number"
            )
    if isinstance(config, dict) and "__use_yte__" in config:
        raise UserError(
            "config: __use_yte__ asks for Snakemake's YTE templating, which runs Python written in "
            "the config; deploysnake takes plain YAML: remove the key"
        )


def _with_defaults(cls: Any) -> Any:
    """A validator that also fills in schema defaults (as snakemake.utils.validate does), and matches
    an anchored `pattern` ("^...$") against the whole string: JSON Schema's regex search lets `$`
    match before a trailing newline, so "abc\\n" would pass as a name."""
    check_properties = cls.VALIDATORS["properties"]
    check_pattern = cls.VALIDATORS["pattern"]

    def pattern(validator: Any, patrn: str, instance: Any, schema: dict[str, Any]) -> Any:
        if (
            isinstance(instance, str)
            and patrn.startswith("^")
            and patrn.endswith("$")
            and not re.fullmatch(patrn, instance)
        ):
            from jsonschema.exceptions import ValidationError

            yield ValidationError(f"{instance!r} does not match {patrn!r}")
            return
        yield from check_pattern(validator, patrn, instance, schema)

    def properties(
        validator: Any, props: dict[str, Any], instance: Any, schema: dict[str, Any]
    ) -> Any:
        if isinstance(instance, dict):
            for key, sub in props.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, props, instance, schema)

    return validators.extend(cls, {"properties": properties, "pattern": pattern})


def _where(path: Any) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in path]
    return "config" + "".join(parts)


def _allowed(schema: Any) -> list[str]:
    """The values a (sub)schema allows, where it lists them: const, enum, items' enum, alternatives."""
    if not isinstance(schema, dict):
        return []
    found = [str(schema["const"])] if "const" in schema else []
    found += [str(v) for v in schema.get("enum", [])]
    if isinstance(schema.get("items"), dict) and schema["items"].get("enum"):
        found.append("a list of " + ", ".join(map(str, schema["items"]["enum"])))
    for alternative in schema.get("oneOf", []) + schema.get("anyOf", []):
        found += _allowed(alternative)
    return found


def _explain(error: Any) -> str:
    if error.validator in ("oneOf", "anyOf") and error.context:
        # Explain the alternative that got furthest (e.g. a list with a bad item), not "no schema matched".
        deepest = max(error.context, key=lambda e: len(e.absolute_path))
        if len(deepest.absolute_path) > len(error.absolute_path):
            return _explain(deepest)
        # An empty or repeating list says so, rather than that no alternative matched.
        for sub in error.context:
            if sub.validator in ("minItems", "uniqueItems"):
                return _explain_one(sub, _allowed(error.schema))
        if allowed := _allowed(error.schema):
            return (
                f"{_where(error.absolute_path)}: {error.instance!r} is not allowed; allowed "
                f"values: {'; or '.join(allowed)}"
            )
    return _explain_one(error)


def _explain_one(error: Any, allowed: list[str] | None = None) -> str:
    allowed = allowed if allowed is not None else _allowed(error.schema)
    where = _where(error.absolute_path)
    if error.validator == "minItems":
        return (
            f"{where}: {error.instance!r} is empty; give at least {error.validator_value} value(s)"
            + (f"; allowed values: {'; or '.join(allowed)}" if allowed else "")
        )
    if error.validator == "uniqueItems":
        items = list(error.instance)
        duplicates = [v for i, v in enumerate(items) if v in items[:i]]
        return f"{where}: duplicate value(s) {duplicates!r} in {error.instance!r}; list each once"
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
    check_raw(config)
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
    # CPU devices only, a CPU without float16 arithmetic: onnx_fp16 is onnx with rounded weights
    no_fp16 = set(config.get("devices") or ["cpu"]) == {"cpu"} and not cpu_has_float16_arithmetic()
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
            elif config["formats"] == "auto" and fmt in NOT_AUTO:
                skipped.append({"model": name, "format": fmt, "reason": NOT_AUTO[fmt]})
            elif config["formats"] == "auto" and fmt == "onnx_fp16" and no_fp16:
                skipped.append({"model": name, "format": fmt, "reason": CPU_FP16_NOT_AUTO})
            elif fmt in TENSORRT and trt_reason:
                skipped.append({"model": name, "format": fmt, "reason": f"skipped: {trt_reason}"})
            else:
                planned[name].append(fmt)
    return planned, skipped


def _periodic(name: str) -> str | None:
    """The piece a name ends in repeated 20 times or more, which Snakemake refuses as a wildcard
    value (snakemake.io.PeriodicityDetector, raising PeriodicWildcardError); None otherwise."""
    from snakemake.io import PeriodicityDetector  # type: ignore[import-untyped]

    found = PeriodicityDetector().is_periodic(name)
    return None if found is None else str(found)


def _request_problems(config: dict[str, Any]) -> list[str]:
    """Declared input dims whose largest request (the largest batch the workflow sends, times the
    sample's bytes) exceeds MAX_REQUEST_BYTES: generated data and perf would try to allocate it."""
    batches = [
        *config["perf"]["offline"]["batch_sizes"],
        config["perf"]["online"]["batch_size"],
        config["accuracy"]["batch_size"],
        config["correctness"]["batch_size"],
    ]
    largest = max(batches)
    problems = []
    for name, model in config["models"].items():
        for tensor, spec in (model.get("inputs") or {}).items():
            if "dims" not in spec:
                continue
            sample = math.prod(spec["dims"]) * DTYPE_BYTES.get(spec.get("dtype") or "float32", 8)
            if sample * largest > MAX_REQUEST_BYTES:
                problems.append(
                    f"config.models.{name}.inputs.{tensor}.dims: {spec['dims']} make a batch of "
                    f"{largest} {sample * largest / 2**30:.1f} GiB, above the "
                    f"{MAX_REQUEST_BYTES >> 30} GiB a request may take; give the real sizes, or "
                    "lower the batch sizes (perf, accuracy, correctness)"
                )
    return problems


def semantic_problems(config: dict[str, Any]) -> list[str]:
    problems = []
    for name in config["models"]:
        if piece := _periodic(name):
            problems.append(
                f"config.models: name {name!r} ends in {piece!r} repeated 20 times or more, which "
                "Snakemake refuses as a wildcard value (PeriodicWildcardError); choose a shorter name"
            )
    triton = config["triton"]
    pinned = [k for k in ("http_port", "grpc_port", "metrics_port") if triton[k]]
    for port in sorted({triton[k] for k in pinned}):
        same = [k for k in pinned if triton[k] == port]
        if len(same) > 1:
            problems.append(
                f"config.triton: {', '.join(same)} are all {port}; each server port must be "
                "distinct (or 0: a free port)"
            )
    problems += _request_problems(config)
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
    from .measuring.open_loop import config_problems as capacity_problems

    problems += capacity_problems(config)
    # Whether the machine or cluster has each GPU device is checked when the run starts (devices.check_available):
    # a cluster's submit host has no GPU of its own.
    return problems


def network_problems(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, warnings) of triton.host and the pinned ports, asked of this machine when a run
    starts (not in jobs: a server of this run may hold a pinned port then).

    Problems: a host that does not resolve (socket.getaddrinfo), a pinned port that cannot be bound
    on it now. Warning: a host that is not loopback, which opens the servers to the network."""
    triton = config["triton"]
    host = str(triton["host"])
    try:
        addresses = {
            str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        }
    except (OSError, UnicodeError) as exc:
        return [
            f"config.triton.host: {host!r} does not resolve ({exc}); give an address of this "
            "machine, e.g. 127.0.0.1"
        ], []
    warnings = []
    if not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        warnings.append(
            f"config.triton.host is {host!r} ({', '.join(sorted(addresses))}), not loopback: "
            "every server this run starts is open to the network (no authentication); use "
            "127.0.0.1 unless that is meant"
        )
    problems = []
    for key in ("http_port", "grpc_port", "metrics_port"):
        port = int(triton[key])
        if not port:
            continue
        family = socket.AF_INET6 if ":" in sorted(addresses)[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds
            try:
                probe.bind((sorted(addresses)[0], port))
            except OSError as exc:
                problems.append(
                    f"triton.{key} {port} on {host} is in use by another process "
                    f"({exc.strerror}); stop that process or set triton.{key} to 0 (a free port)"
                )
    return problems, warnings
