# Helpers and input functions shared by every stage.
import ast
import functools
import json
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# Jobs inherit a fixed hash seed: torch.jit.script writes class constants in set order, so with
# Python's per-process random seed the same model scripts to different bytes.
os.environ.setdefault("PYTHONHASHSEED", "0")

# The package holding the logic: importable from the venv, or from src/ (e.g. under --sdm conda).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from deploysnake import devices, paths, tolerance
from deploysnake.configuration import network_problems, plan_formats, validate
from deploysnake.errors import UserError
from deploysnake.formats import ARTIFACTS, ONNX_VARIANTS, TENSORRT
from deploysnake.frameworks import CHECKPOINT_NAMES
from deploysnake.plugins import plugin_paths
from deploysnake.processes import claim_workdir
from deploysnake.server import locate
from deploysnake.trust import TIMEOUTS_ENV
from deploysnake.sources.kinds import is_source
from deploysnake.sources.kinds import rule_inputs as source_inputs

try:
    config = validate(config)
except UserError as exc:
    raise WorkflowError(str(exc))

if workflow.is_main_process:
    # Once per run, on this machine: the host resolves and the pinned ports are free now.
    problems, warnings = network_problems(config)
    for line in warnings:
        print(f"deploysnake: warning: {line}", file=sys.stderr)
    if problems:
        raise WorkflowError("invalid config:\n  " + "\n  ".join(problems))
    # One run at a time in a folder. A real run (never a dry run, nor --unlock, which is the way
    # out) takes the folder, removing the locks of a run that is provably gone (killed with kill -9).
    if not workflow.output_settings.dryrun and "--unlock" not in sys.argv:
        try:
            claim_workdir(Path.cwd())
        except UserError as exc:
            raise WorkflowError(str(exc))

# The time limits of the user's code, read by the jobs (deploysnake.trust.timeouts).
os.environ[TIMEOUTS_ENV] = json.dumps(config["timeouts"])

MODELS = sorted(config["models"])
# The formats each model goes through; SKIPPED (model, format, reason) are listed in the report.
FORMATS, SKIPPED = plan_formats(config)
DEVICES = config["devices"]
TORCH_MODELS = [m for m in MODELS if config["models"][m]["framework"] == "torch"]
KERAS_MODELS = [m for m in MODELS if config["models"][m]["framework"] == "keras"]
# The measuring jobs (accuracy, perf, capacity, tuning trials, native baseline: a server and its
# client, or the in-process runtime, timed on the job's cores) are the rules with
# `threads: MEASURING_THREADS`, and only they ask for more than one thread: the profiles key on that
# (max-threads, and default-resources expressions of `threads`), never on the rules' names.
try:
    # Locally a measuring job takes every core of --cores, so Snakemake runs nothing beside it (a cap
    # below --cores would let other jobs in). That count is only a scheduling token: Snakemake also
    # exports it as OMP_NUM_THREADS and siblings, which every measuring job overwrites with the CPUs
    # it may really use (deploysnake.processes.size_thread_pools: affinity, cgroup quota, SLURM).
    MEASURING_THREADS = workflow.cores
except WorkflowError:
    # A cluster run has no --cores: a measuring job takes --max-threads cores (the slurm profile's
    # max-threads, a node's share), one without it.
    MEASURING_THREADS = workflow.resource_settings.max_threads or 1
# Which repository flavour the server takes: native backends (deploy configs) or the python backend.
SERVER_FLAVOUR = locate(
    config["triton"]["server"], config["triton"]["bundled_runner"]
).flavour


# What an export reads: the export section, and whether Triton batches the model (a tensor without
# its batch on axis 0 is refused at export then); the batch size itself never re-exports.
EXPORT_OPTIONS = config["export"] | {"batched": config["triton"]["max_batch_size"] > 0}


# Formats whose Triton configuration is searched, for every model that has them (tuning.formats).
TUNED_FORMATS = config["tuning"]["formats"]
# What a tuning trial's measurement reads: changing the budget or strategy re-plans, never re-measures.
TUNING_TRIAL = {k: config["tuning"][k] for k in ("mode", "concurrency", "batch_range")}
if config["tuning"]["objective"] == "capacity":
    # Each trial a capacity search (src/deploysnake/measuring/capacity.py) with perf.capacity's settings.
    TUNING_TRIAL["objective"] = "capacity"
    TUNING_TRIAL["capacity"] = {
        k: v for k, v in config["perf"]["capacity"].items() if k != "formats"
    }
# What the side by side reads besides: its shortlist (budget, minimum, space for the untuned trial)
# and its rounds; tuning another format, or another strategy's rounds, never re-measures it.
TUNING_SIDE_BY_SIDE = TUNING_TRIAL | {
    k: config["tuning"][k]
    for k in (
        "p99_budget_ms",
        "min_throughput",
        "space",
        "side_by_side_candidates",
        "side_by_side_rounds",
    )
}
TRIAL_TRITON = {
    k: v
    for k, v in config["triton"].items()
    if k
    not in (
        "max_batch_size",
        "runtime_threads",
        "instances",
        "dynamic_batching",
        "execution_mode",
        "inter_op_threads",
        "graph_optimization_level",
    )
}
TRIAL_TRITON["dynamic_batching"] = {
    "preferred_batch_sizes": config["triton"]["dynamic_batching"][
        "preferred_batch_sizes"
    ]
}


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)),  # names may hold "." and "-"
    format="|".join(ARTIFACTS),
    device="|".join(DEVICES),
    round=r"\d+",
    trial=r"[a-z0-9~_]+",


onstart:
    # Before any job is submitted: a GPU device the machine or cluster lacks fails here, not in a queue.
    try:
        devices.check_available(
            DEVICES, workflow.executor_plugin.name, config["gpu_models"]
        )
        if workflow.executor_plugin.name == "slurm":
            # A job asking for more CPUs or memory than any node has would stay pending forever.
            devices.check_requests(slurm_requests(workflow.dag.needrun_jobs()))
    except UserError as exc:
        raise WorkflowError(str(exc))


def slurm_requests(jobs):
    """What each job asks SLURM for (as the slurm executor submits it: cpus_per_task, else threads)."""
    return [
        devices.Request(
            job.rule.name,
            int(job.resources.get("cpus_per_task") or job.threads or 1),
            int(job.resources.get("mem_mb") or 0),
            job.resources.get("slurm_partition") or None,
            int(job.resources.get("gpu") or 0),
            str(job.resources.get("gpu_model") or ""),
        )
        for job in jobs
        if not job.is_local
    ]


def device_resource(name):
    """A GPU device's jobs ask for gpu=1 and gpu_model=<kind> (the slurm executor makes that --gpus)."""
    return lambda wildcards: devices.resources(wildcards.device, config["gpu_models"])[
        name
    ]


def models_of(names):
    """A wildcard pattern matching these model names only (never matching when there are none)."""
    return "|".join(map(re.escape, names)) if names else "(?!x)x"


def checkpoint_file(wildcards):
    model = wildcards.model
    return paths.checkpoint(
        CHECKPOINT_NAMES[config["models"][model]["framework"]], model
    )


def framework(wildcards):
    return config["models"][wildcards.model]["framework"]


PACKAGE = Path(workflow.basedir) / "src" / "deploysnake"


def _module_path(name):
    """The file or folder of a package module given as dotted parts under deploysnake
    ("measuring.perf" -> measuring/perf.py; "report" -> report/)."""
    return PACKAGE.joinpath(*name.split("."))


@functools.cache
def package_imports(path):
    """The deploysnake modules one Python file imports, read with ast (imports inside functions
    included), as dotted names under the package ("perf" is deploysnake/perf.py, "measuring.perf"
    deploysnake/measuring/perf.py, "report" the package report/): `from deploysnake import a`,
    `from deploysnake.a import x`, `import deploysnake.a`, and in the package relative imports of
    any depth (`from . import a`, `from ..measuring.perf import x`). A name imported from a
    package is its module where one has that name (`from deploysnake.measuring import perf`).
    """
    here = path.parent
    inside = PACKAGE in here.parents or here == PACKAGE
    base = here.relative_to(PACKAGE).parts if inside else None
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(
                a.name.split(".", 1)[1]
                for a in node.names
                if a.name.startswith("deploysnake.")
            )
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] == "deploysnake":
                parts = node.module.split(".")[1:]
            elif node.level and base is not None and node.level - 1 <= len(base):
                parts = [*base[: len(base) - (node.level - 1)]]
                parts += node.module.split(".") if node.module else []
            else:
                continue
            for alias in node.names:
                named = ".".join([*parts, alias.name])
                if module_files(named):
                    found.add(named)
                elif parts:
                    found.add(".".join(parts))
    return frozenset(m for m in found if module_files(m))


def module_files(name):
    """The files of one package module (dotted under deploysnake): <name>.py with the __init__.py
    of each package above it; a package: its __init__.py and the files that are not Python under it
    (the report's Jinja2 templates, the backend's C source); its modules come through imports.
    """
    if not name:
        return ()
    path = _module_path(name)
    parents = tuple(
        PACKAGE.joinpath(*name.split(".")[:k], "__init__.py")
        for k in range(1, name.count(".") + 1)
    )
    if path.with_suffix(".py").is_file():
        return (*parents, path.with_suffix(".py"))
    if (path / "__init__.py").is_file():
        return (
            *parents,
            path / "__init__.py",
            *sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix not in (".py", ".pyc")
                and "__pycache__" not in p.parts
            ),
        )
    return ()


def package_code(script):
    """The package's files a stage's script (workflow/scripts/<script>.py) runs: the modules it
    imports and, transitively, everything they import from the package. An input of the stage, so
    editing any code it runs re-runs it, and nothing else does."""
    return list(_package_closure(script))


@functools.cache
def _package_closure(script):
    seen, todo = set(), list(
        package_imports(
            Path(workflow.basedir) / "workflow" / "scripts" / f"{script}.py"
        )
    )
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            for path in module_files(name):
                if path.suffix == ".py":
                    todo.extend(package_imports(path))
    return tuple(
        dict.fromkeys(
            [
                str(PACKAGE / "__init__.py"),
                *sorted(str(p) for m in seen for p in module_files(m)),
            ]
        )
    )


def runner_files():
    """What runs the model in the bundled server: editing it re-runs the served stages."""
    src = Path(workflow.basedir) / "src" / "deploysnake"
    return {
        "inprocess": [
            src / "backend" / "triton_deploysnake.c",
            src / "backend" / "deploysnake_model.py",
            src / "runtime.py",
        ],
        "python": [src / "backend" / "python_backend_model.py", src / "runtime.py"],
    }.get(SERVER_FLAVOUR, [])


def recipe_files(wildcards):
    settings = config["models"][wildcards.model]
    if is_source(settings):
        # An exported model: its description (which its given files are inputs of) and data plugins.
        return [checkpoint_file(wildcards)] + [
            settings[k] for k in ("dataloader", "metrics") if settings.get(k)
        ]
    return [str(p) for p in plugin_paths(settings).values()]


def model_settings(wildcards):
    return config["models"][wildcards.model]


def given_checkpoint(wildcards):
    path = config["models"][wildcards.model]["checkpoint"]
    return [path] if path else []


def artifact_path(model, fmt):
    return paths.artifact(ARTIFACTS[fmt], model, fmt)


def artifact(wildcards):
    return artifact_path(wildcards.model, wildcards.format)


def verdicts_file(model):
    """A model's verdicts (the output of its python_collect_verdicts checkpoint)."""
    return paths.verdicts(model)


# Every model's verdicts, listed as plain inputs of the rules that gather across models: each
# model's first phase (train, export, check) is then in the DAG from the start, side by side, and
# a dry run lists it. (An input function reading several checkpoints stops at the first one not yet
# done, so only that model's jobs would be planned until it finished.)
ALL_VERDICTS = [verdicts_file(model) for model in MODELS]


def passed_formats_of(model):
    """The formats of this one model that passed correctness: reads only its own checkpoint."""
    verdicts = checkpoints.python_collect_verdicts.get(model=model).output[0]
    return [(model, f) for f in json.loads(Path(verdicts).read_text())["passed"]]


def passed_formats():
    """Every model's passing formats; only for jobs that run once all verdicts exist (their
    ALL_VERDICTS inputs), never to plan a model's own jobs."""
    return [pair for model in MODELS for pair in passed_formats_of(model)]


def per_model(function):
    """One input function per model: function(wildcards, model) reads that model's checkpoint only.

    What gathers across models lists them all (input: *per_model(f)): each stays incomplete
    only until its own model's verdicts exist, so the measuring jobs of a model whose verdicts are in
    join the DAG at once, whatever the other models' first phase is doing.
    """
    return [
        lambda wildcards, model=model: function(wildcards, model) for model in MODELS
    ]


def measurement_paths(model, stage, suffix):
    return [
        paths.served(stage, m, fmt, device, suffix)
        for m, fmt in passed_formats_of(model)
        for device in DEVICES
    ]


def tuned_config(wildcards):
    """The chosen configuration of a tuned format (served, measured and deployed); none otherwise."""
    if wildcards.format in TUNED_FORMATS:
        return [paths.chosen(wildcards.model, wildcards.format, wildcards.device)]
    return []


def planned_trials(wildcards, round_no):
    """Round round_no's plan (a checkpoint) and the trial files it asks for."""
    plan = checkpoints.python_plan_tuning_round.get(
        model=wildcards.model,
        format=wildcards.format,
        device=wildcards.device,
        round=round_no,
    ).output[0]
    trials = json.loads(Path(plan).read_text())["trials"]
    folder = paths.tuning_dir(wildcards.model, wildcards.format, wildcards.device)
    return plan, [f"{folder}/trials/{t}.csv" for t in trials]


def earlier_trials(wildcards):
    """Every trial of the rounds before this one: what the next round is planned from."""
    return [
        t for k in range(int(wildcards.round)) for t in planned_trials(wildcards, k)[1]
    ]


def tuning_rounds(wildcards):
    """Rounds until one plans nothing (the search has ended, or max_rounds is reached)."""
    plans, trials = [], []
    for k in range(config["tuning"]["max_rounds"] + 1):
        plan, new = planned_trials(wildcards, k)
        plans.append(plan)
        trials += new
        if not new:
            break
    return {"plans": plans, "trials": trials}


def side_by_side_file(wildcards):
    """The side by side the choice is made from; none where tuning.side_by_side_rounds is 0."""
    if config["tuning"]["side_by_side_rounds"]:
        folder = paths.tuning_dir(wildcards.model, wildcards.format, wildcards.device)
        return [f"{folder}/side_by_side.csv"]
    return []


def deploy_entries(wildcards):
    """The native repository holds every format that passed correctness (read when the job runs,
    once every verdict exists)."""
    return [
        {
            "model": model,
            "format": fmt,
            "artifact": artifact_path(model, fmt),
            "io": paths.io_json(model, fmt),
            "tuned": (
                paths.chosen(model, fmt, wildcards.device)
                if fmt in TUNED_FORMATS
                else None
            ),
        }
        for model, fmt in passed_formats()
    ]


def deploy_inputs_of(wildcards, model):
    """What the native repository takes from one model: its passing artifacts and chosen configs."""
    return [
        path
        for _, fmt in passed_formats_of(model)
        for path in (
            artifact_path(model, fmt),
            paths.io_json(model, fmt),
            *(
                [paths.chosen(model, fmt, wildcards.device)]
                if fmt in TUNED_FORMATS
                else []
            ),
        )
    ]


def report_inputs_of(wildcards, model):
    """One model's results the report reads, once its verdicts are in (the report script sorts
    them by stage from their results/<stage>/ folder)."""
    tuning = [
        paths.tuning_file(name, model, fmt, device)
        for _, fmt in passed_formats_of(model)
        if fmt in TUNED_FORMATS
        for device in DEVICES
        for name in ("chosen.json", "trials.csv", "side_by_side.csv")
        if name != "side_by_side.csv" or config["tuning"]["side_by_side_rounds"]
    ]
    return [
        *measurement_paths(model, "accuracy", "csv"),
        *measurement_paths(model, "perf_offline", "csv"),
        *measurement_paths(model, "perf_online", "csv"),
        *measurement_paths(model, "native", "csv"),
        *tuning,
        *capacity_paths(model),
    ]


def floor_inputs_of(wildcards, model):
    """One model's serving-floor sweeps (perf_analyzer_online writes one beside each online CSV),
    which the report shows beside the online sweep."""
    return measurement_paths(model, "perf_online", "floor.csv")


def correctness_files():
    return [paths.correctness(model, fmt) for model in MODELS for fmt in FORMATS[model]]


def format_tolerances(wildcards):
    """The correctness section as this format's jobs see it (tolerance.for_format)."""
    return tolerance.for_format(config["correctness"], wildcards.format)


def check_tolerance(wildcards):
    """The tolerances perf and capacity check answers under load within (this format's)."""
    own = format_tolerances(wildcards)
    return {k: own[k] for k in ("default", "outputs", "formats")}


def perf_shared():
    """The perf settings of a single point (tuning trials): neither sweep."""
    return {
        k: v
        for k, v in config["perf"].items()
        if k not in ("offline", "online", "capacity")
    }


def perf_settings(mode):
    """The perf settings one sweep reads: the shared ones plus only its own sweep."""
    return {**perf_shared(), mode: config["perf"][mode]}


# Capacity search (workflow/rules/capacity.smk): the formats searched and what the search reads.
CAPACITY_FORMATS = config["perf"]["capacity"]["formats"]
# What the search reads: not the formats list, so searching another format never re-runs this one.
CAPACITY_SETTINGS = {
    k: v for k, v in config["perf"]["capacity"].items() if k != "formats"
}


def capacity_paths(model):
    """One model's capacity results the report reads: its passed formats in perf.capacity.formats."""
    return [
        paths.served("capacity", m, fmt, device, suffix)
        for m, fmt in passed_formats_of(model)
        if fmt in CAPACITY_FORMATS
        for device in DEVICES
        for suffix in ("json", "csv")
    ]
