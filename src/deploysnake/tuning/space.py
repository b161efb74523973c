"""The tuning space: what a trial is, its id, the grid, the untuned start and the triton settings of a
trial.

A trial is one configuration: Triton's batching and instances (max batch size, dynamic batching,
queue delay, preferred batch sizes, instances) and the runtime's own knobs (threads per instance,
inter-op threads, ONNX Runtime's execution mode and graph optimization level). It is named
Paramspace-style: `mbs~64_db~1_delay~100_pref~max_inst~2_thr~1`; a runtime knob other than the
threads appears in the id only away from its default (`..._thr~1_exec~parallel_inter~2_graph~basic`),
so the ids (and cached trials) of a space without those knobs are the ones they always were.
"""

from __future__ import annotations

from typing import Any

from ..formats import FORMATS

# The batching and instance settings, and the runtime threads (always in the id).
CORE = [
    "max_batch_size",
    "dynamic_batching",
    "max_queue_delay_us",
    "preferred_batch_sizes",
    "instances",
    "runtime_threads",
]
# The runtime's further knobs and their defaults (the runtime's own): in the id only away from these.
# Triton's onnxruntime backend takes them as config.pbtxt parameters inter_op_thread_count and
# execution_mode and as optimization { graph { level } }; the PyTorch backend the inter-op threads
# as INTER_OP_THREAD_COUNT (onnxruntime_backend and pytorch_backend READMEs, Triton 2.51).
KNOBS: dict[str, Any] = {
    "execution_mode": "sequential",
    "inter_op_threads": 0,
    "graph_optimization_level": "all",
}
DIMENSIONS = [*CORE, *KNOBS]
SHORT = {
    "max_batch_size": "mbs",
    "dynamic_batching": "db",
    "max_queue_delay_us": "delay",
    "preferred_batch_sizes": "pref",
    "instances": "inst",
    "runtime_threads": "thr",
    "execution_mode": "exec",
    "inter_op_threads": "inter",
    "graph_optimization_level": "graph",
}
LONG = {v: k for k, v in SHORT.items()}
INTEGERS = (
    "max_batch_size",
    "max_queue_delay_us",
    "instances",
    "runtime_threads",
    "inter_op_threads",
)
EXECUTION_MODES = ("sequential", "parallel")
# ONNX Runtime's graph optimization levels -> Triton's `optimization { graph { level } }` (the
# onnxruntime backend: -1 basic, 1 extended, 2 disabled; absent or 0: all).
GRAPH_LEVELS = {"all": 0, "extended": 1, "basic": -1, "disabled": 2}
# Which runtime knobs mean something for a format family (the others collapse to their defaults).
FAMILY_KNOBS = {
    "onnx": ("execution_mode", "inter_op_threads", "graph_optimization_level"),
    "torchscript": ("inter_op_threads",),
    "aoti": ("inter_op_threads",),
}


def trial_id(trial: dict[str, Any]) -> str:
    """The trial's Paramspace-style id; runtime knobs at their defaults (KNOBS) are left out."""

    def value(dim: str) -> Any:
        v = trial.get(dim, KNOBS.get(dim))
        return int(v) if isinstance(v, bool) else v

    return "_".join(
        f"{SHORT[d]}~{value(d)}"
        for d in DIMENSIONS
        if d in CORE or trial.get(d, KNOBS[d]) != KNOBS[d]
    )


def parse_trial(text: str) -> dict[str, Any]:
    """The trial of an id (trial_id's inverse; knobs left out take their defaults). Raises ValueError
    for a text that is no trial id."""
    values = dict(part.split("~", 1) for part in text.split("_") if "~" in part)
    core = {SHORT[d] for d in CORE}
    if not core <= set(values) or not set(values) <= set(LONG):
        example = trial_id(dict.fromkeys(CORE, 0))
        raise ValueError(f"not a trial id: {text!r} (expected {example} style)")
    trial: dict[str, Any] = {**KNOBS, **{LONG[k]: v for k, v in values.items()}}
    for key in INTEGERS:
        trial[key] = int(trial[key])
    trial["dynamic_batching"] = trial["dynamic_batching"] in ("1", True)
    return trial


def family_of(fmt: str | None) -> str | None:
    """The format's family name ("onnx_fp16" -> "onnx"); None for None or an unknown name."""
    return FORMATS[fmt].family.name if fmt in FORMATS else None


def canonical(trial: dict[str, Any], fmt: str | None = None) -> dict[str, Any]:
    """One trial for all that behave alike: without dynamic batching the queue delay and preferred
    sizes mean nothing; ONNX Runtime ignores inter-op threads in sequential execution; a knob the
    format's runtime does not have (FAMILY_KNOBS; fmt None: ONNX Runtime's) takes its default."""
    trial = {**KNOBS, **trial}
    if not trial["dynamic_batching"]:
        trial["max_queue_delay_us"], trial["preferred_batch_sizes"] = 0, "none"
    family = family_of(fmt) if fmt is not None else "onnx"
    for knob in KNOBS:
        if knob not in FAMILY_KNOBS.get(family or "", ()):
            trial[knob] = KNOBS[knob]
    if family == "onnx" and trial["execution_mode"] == "sequential":
        trial["inter_op_threads"] = KNOBS["inter_op_threads"]
    return trial


def full_space(space: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The space with every dimension: a knob it does not list has its default as its one option."""
    return {d: list(space.get(d, [KNOBS.get(d)])) for d in DIMENSIONS}


def grid(space: dict[str, list[Any]], fmt: str | None = None) -> list[dict[str, Any]]:
    """Every distinct trial of the space (canonical: none twice), in the dimensions' order."""
    space = full_space(space)
    trials: list[dict[str, Any]] = [{}]
    for dim in DIMENSIONS:
        trials = [{**t, dim: v} for t in trials for v in space[dim]]
    seen, unique = set(), []
    for trial in (canonical(t, fmt) for t in trials):
        if (key := trial_id(trial)) not in seen:
            seen.add(key)
            unique.append(trial)
    return unique


def _nearest(options: list[Any], value: Any) -> Any:
    if value in options:
        return value
    if isinstance(value, bool) or not all(
        isinstance(o, (int, float)) and not isinstance(o, bool) for o in options
    ):
        return options[0]
    return min(options, key=lambda o: abs(o - value))


def naive(
    triton: dict[str, Any], device: str, space: dict[str, list[Any]], fmt: str | None = None
) -> dict[str, Any]:
    """The workflow's configuration before tuning (config triton section), snapped to the space."""
    batching = triton.get("dynamic_batching", {})
    start = {
        "max_batch_size": triton["max_batch_size"],
        "dynamic_batching": batching.get("enabled", True),
        "max_queue_delay_us": batching.get("max_queue_delay_us", 0),
        "preferred_batch_sizes": "config" if batching.get("preferred_batch_sizes") else "none",
        "instances": triton["instances"].get(device, triton["instances"].get("default", 1)),
        "runtime_threads": triton.get("runtime_threads", 0),
        **{knob: triton.get(knob, default) for knob, default in KNOBS.items()},
    }
    space = full_space(space)
    return canonical({d: _nearest(space[d], start[d]) for d in DIMENSIONS}, fmt)


# What a newcomer writes first (seed 003's "before": max_batch_size 1, dynamic batching off, one
# instance, the runtime's default threads): measured in the side by side, never chosen.
NEWCOMER = {
    "max_batch_size": 1,
    "dynamic_batching": False,
    "max_queue_delay_us": 0,
    "preferred_batch_sizes": "none",
    "instances": 1,
    "runtime_threads": 0,
    **KNOBS,
}


def newcomer() -> str:
    """The trial id of a newcomer's configuration (NEWCOMER)."""
    return trial_id(NEWCOMER)


def neighbours(
    trial: dict[str, Any], space: dict[str, list[Any]], fmt: str | None = None
) -> list[dict[str, Any]]:
    """One step up or down along one dimension (the options in their config order)."""
    space = full_space(space)
    found = []
    for dim in DIMENSIONS:
        options = space[dim]
        if trial[dim] not in options:
            continue
        i = options.index(trial[dim])
        for j in (i - 1, i + 1):
            if 0 <= j < len(options):
                found.append(canonical({**trial, dim: options[j]}, fmt))
    return found


def sweep(
    trial: dict[str, Any],
    dims: str | tuple[str, ...],
    space: dict[str, list[Any]],
    fmt: str | None = None,
) -> list[dict[str, Any]]:
    """Every option of one dimension (or every combination of several), the others as in trial."""
    space = full_space(space)
    found: list[dict[str, Any]] = [dict(trial)]
    for dim in (dims,) if isinstance(dims, str) else dims:
        found = [{**t, dim: option} for t in found for option in space[dim]]
    return [canonical(t, fmt) for t in found]


def triton_settings(base: dict[str, Any], trial: dict[str, Any], device: str) -> dict[str, Any]:
    """The config triton section with one trial's values: what the repository writer takes."""
    mbs = int(trial["max_batch_size"])
    pref = trial["preferred_batch_sizes"]
    if pref == "config":
        preferred = [
            b for b in base.get("dynamic_batching", {}).get("preferred_batch_sizes", []) if b <= mbs
        ]
    elif pref == "max":
        preferred = [mbs]
    elif pref == "halfmax":
        preferred = sorted({max(1, mbs // 2), mbs})
    else:
        preferred = []
    return {
        **base,
        "max_batch_size": mbs,
        "dynamic_batching": {
            "enabled": bool(trial["dynamic_batching"]),
            "preferred_batch_sizes": preferred,
            "max_queue_delay_us": int(trial["max_queue_delay_us"]),
        },
        "instances": {**base.get("instances", {}), device: int(trial["instances"])},
        "runtime_threads": int(trial["runtime_threads"]),
        **{knob: trial.get(knob, default) for knob, default in KNOBS.items()},
    }
