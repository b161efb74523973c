"""The files in results/ that one job writes and others read: one function per kind of file, the
one place their layout is written, used by the workflow's rules and by the report, the summary and
the gate alike.

Called without arguments, a function gives the rule's pattern with Snakemake's wildcards
(perf_csv("offline") is "results/perf_offline/{model}/{format}/{device}.csv"); with a target's
values, that target's file. target_of reads the target back from a path of a served stage. Paths
are relative to the run's folder (Snakemake's working directory), as the rules write them.
"""

from __future__ import annotations

from pathlib import PurePath

from .contracts import Target

RESULTS = "results"
# Snakemake's wildcards, the defaults of every function: the rule's pattern.
MODEL, FORMAT, DEVICE = "{model}", "{format}", "{device}"

SUMMARY = f"{RESULTS}/summary.json"
GATE = f"{RESULTS}/gate.json"
GATE_PASSED = f"{RESULTS}/gate/passed.txt"
REPORT = f"{RESULTS}/report.html"

# The served stages' folders under results/, whose files are results/<stage>/<model>/<format>/
# <device>.<suffix> (tuning: results/tuning/<model>/<format>/<device>/).
SERVED_STAGES = ("accuracy", "perf_offline", "perf_online", "native", "capacity", "tuning")


def checkpoint_dir(model: str = MODEL) -> str:
    """The checkpoint job's folder (the trained or given model, source.json)."""
    return f"{RESULTS}/checkpoint/{model}"


def checkpoint(file_name: str, model: str = MODEL) -> str:
    """A model's checkpoint file (file_name: frameworks.CHECKPOINT_NAMES[framework])."""
    return f"{checkpoint_dir(model)}/{file_name}"


def source_description(model: str = MODEL) -> str:
    """An exported source's description (IO, files and their hash)."""
    return f"{checkpoint_dir(model)}/source.json"


def export_dir(model: str = MODEL, fmt: str = FORMAT) -> str:
    """One format's export folder (the artifact, its side files, io.json)."""
    return f"{RESULTS}/export/{model}/{fmt}"


def artifact(file_name: str, model: str = MODEL, fmt: str = FORMAT) -> str:
    """The artifact file of a format (file_name: formats.ARTIFACTS[fmt])."""
    return f"{export_dir(model, fmt)}/{file_name}"


def io_json(model: str = MODEL, fmt: str = FORMAT) -> str:
    """The IO description read back from the artifact."""
    return f"{export_dir(model, fmt)}/io.json"


def correctness(model: str = MODEL, fmt: str = FORMAT) -> str:
    """A format's correctness verdict."""
    return f"{RESULTS}/correctness/{model}/{fmt}.json"


def verdicts(model: str = MODEL) -> str:
    """A model's collected verdicts (the checkpoint the served stages wait for)."""
    return f"{RESULTS}/correctness/{model}/verdicts.json"


def repository(model: str = MODEL, fmt: str = FORMAT, device: str = DEVICE) -> str:
    """The served model repository (a folder)."""
    return f"{RESULTS}/repository/{model}/{fmt}/{device}"


def served_settings(model: str = MODEL, fmt: str = FORMAT, device: str = DEVICE) -> str:
    """The Triton settings the repository was written with (contracts.ServedSettings)."""
    return f"{repository(model, fmt, device)}.json"


def perf_data(model: str = MODEL) -> str:
    """perf_analyzer's --input-data samples of a model."""
    return f"{RESULTS}/perf_data/{model}/input.json"


def served(
    stage: str, model: str = MODEL, fmt: str = FORMAT, device: str = DEVICE, suffix: str = "csv"
) -> str:
    """A served stage's file: results/<stage>/<model>/<format>/<device>.<suffix>."""
    return f"{RESULTS}/{stage}/{model}/{fmt}/{device}.{suffix}"


def perf_csv(mode: str, model: str = MODEL, fmt: str = FORMAT, device: str = DEVICE) -> str:
    """An offline or online sweep's CSV (mode: "offline" or "online")."""
    return served(f"perf_{mode}", model, fmt, device)


def floor_csv(model: str = MODEL, fmt: str = FORMAT, device: str = DEVICE) -> str:
    """The serving floor's online sweep, beside the online CSV."""
    return served("perf_online", model, fmt, device, "floor.csv")


def tuning_dir(model: str = MODEL, fmt: str = FORMAT, device: str = DEVICE) -> str:
    """A tuned format's search folder (rounds, trials, side by side, chosen.json)."""
    return f"{RESULTS}/tuning/{model}/{fmt}/{device}"


def tuning_file(name: str, model: str = MODEL, fmt: str = FORMAT, device: str = DEVICE) -> str:
    """A file of a tuned format's search folder (name: "trials.csv", "round{round}.json", ...)."""
    return f"{tuning_dir(model, fmt, device)}/{name}"


def chosen(model: str = MODEL, fmt: str = FORMAT, device: str = DEVICE) -> str:
    """The configuration a tuning search chose."""
    return tuning_file("chosen.json", model, fmt, device)


def environment(device: str = DEVICE) -> str:
    """A device's environment record (hardware, versions)."""
    return f"{RESULTS}/environment/{device}.json"


def deploy_dir(device: str = DEVICE) -> str:
    """The deploy repository of a device (a folder)."""
    return f"{RESULTS}/deploy/{device}"


def deploy_archive(device: str = DEVICE) -> str:
    """The deploy repository packed as one archive."""
    return f"{deploy_dir(device)}.tar.gz"


def release_archive(device: str = DEVICE) -> str:
    """The deploy archive with the summary, once the gate passed."""
    return f"{RESULTS}/release/{device}.tar.gz"


def target_of(path: str | PurePath) -> Target:
    """The target of a served stage's file: <stage>/<model>/<format>/<device>.<suffix>, or a file
    under (or the folder) tuning/<model>/<format>/<device>/, under results/ or any folder laid out
    alike. Raises ValueError for a path of no served stage."""
    parts = PurePath(path).parts
    for k in range(len(parts) - 1, -1, -1):
        rest = parts[k + 1 :]
        if parts[k] == "tuning" and len(rest) >= 3:
            return Target(rest[0], rest[1], rest[2])
        if parts[k] in SERVED_STAGES and len(rest) == 3:
            return Target(rest[0], rest[1], rest[2].split(".", 1)[0])
    raise ValueError(f"{path}: not a file of a served stage (results/<stage>/<model>/<format>/…)")
