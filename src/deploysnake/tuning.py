"""Tuning stage: search Triton's configuration space for the highest throughput within a p99 budget.

A trial is one configuration (max batch size, dynamic batching, preferred batch sizes, queue delay,
instances, runtime threads), named by a Paramspace-style id (`mbs~64_db~1_delay~100_pref~max_inst~2_thr~1`)
and measured by its own cached job. A strategy proposes trials in rounds, each round a Snakemake
checkpoint that reads every trial measured before it:
- brute_force: the whole grid in round 0 (the reference);
- coordinate (default): round 0 measures the workflow's own configuration (snapped to the grid) and
  every option of the first dimension in SWEEP_ORDER; round N sweeps dimension N the same way around
  the best trial so far. One pass costs 1 + sum(options - 1) measurements, where the grid costs their
  product; the search ends at max_rounds, or when every dimension has been swept around the best;
- hill_climb: round 0 measures the workflow's configuration and its neighbours (one step along any
  dimension); each later round the unmeasured neighbours of the best so far, until it has none.
Trials already measured are never proposed again, so a stopped search resumes where it was and a
larger budget (more rounds, a wider space) only adds trials.

A trial is one short measurement, and the search's best is the largest of many noisy numbers; so the
chosen and the untuned configurations are then measured again side by side (side_by_side: rounds in
rotating order, each measurement a fresh server), and the report's gain is the ratio of those medians.
"""

from __future__ import annotations

import csv
import json
import logging
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .contracts import Header, Status
from .perf import Point, measure_point, plan_load, probe_one, sized

log = logging.getLogger(__name__)

# Dimension order of the trial id; values are the options listed in config tuning.space.
DIMENSIONS = [
    "max_batch_size",
    "dynamic_batching",
    "max_queue_delay_us",
    "preferred_batch_sizes",
    "instances",
    "runtime_threads",
]
SHORT = {
    "max_batch_size": "mbs",
    "dynamic_batching": "db",
    "max_queue_delay_us": "delay",
    "preferred_batch_sizes": "pref",
    "instances": "inst",
    "runtime_threads": "thr",
}
LONG = {v: k for k, v in SHORT.items()}
TRIAL_COLUMNS = [
    "trial",
    *DIMENSIONS,
    "mode",
    "batch",
    "concurrency",
    "status",
    "throughput",
    "p99_us",
    "foreign_cpu",
    "server_cpu",
    "client_cpu",
    "round",
]


def trial_id(trial: dict[str, Any]) -> str:
    return "_".join(
        f"{SHORT[d]}~{int(trial[d]) if isinstance(trial[d], bool) else trial[d]}"
        for d in DIMENSIONS
    )


def parse_trial(text: str) -> dict[str, Any]:
    values = dict(part.split("~", 1) for part in text.split("_") if "~" in part)
    if sorted(values) != sorted(SHORT.values()):
        raise ValueError(
            f"not a trial id: {text!r} (expected {trial_id(dict.fromkeys(DIMENSIONS, 0))} style)"
        )
    trial: dict[str, Any] = {LONG[k]: v for k, v in values.items()}
    for key in ("max_batch_size", "max_queue_delay_us", "instances", "runtime_threads"):
        trial[key] = int(trial[key])
    trial["dynamic_batching"] = trial["dynamic_batching"] == "1"
    return trial


def canonical(trial: dict[str, Any]) -> dict[str, Any]:
    """Without dynamic batching the queue delay and preferred sizes mean nothing: one trial stands for all."""
    trial = dict(trial)
    if not trial["dynamic_batching"]:
        trial["max_queue_delay_us"], trial["preferred_batch_sizes"] = 0, "none"
    return trial


def grid(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    trials: list[dict[str, Any]] = [{}]
    for dim in DIMENSIONS:
        trials = [{**t, dim: v} for t in trials for v in space[dim]]
    seen, unique = set(), []
    for trial in map(canonical, trials):
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


def naive(triton: dict[str, Any], device: str, space: dict[str, list[Any]]) -> dict[str, Any]:
    """The workflow's configuration before tuning (config triton section), snapped to the space."""
    batching = triton.get("dynamic_batching", {})
    start = {
        "max_batch_size": triton["max_batch_size"],
        "dynamic_batching": batching.get("enabled", True),
        "max_queue_delay_us": batching.get("max_queue_delay_us", 0),
        "preferred_batch_sizes": "config" if batching.get("preferred_batch_sizes") else "none",
        "instances": triton["instances"].get(device, triton["instances"].get("default", 1)),
        "runtime_threads": triton.get("runtime_threads", 0),
    }
    return canonical({d: _nearest(space[d], start[d]) for d in DIMENSIONS})


# What a newcomer writes first (seed 003's "before": max_batch_size 1, dynamic batching off, one
# instance, the runtime's default threads): measured in the side by side, never chosen.
NEWCOMER = {
    "max_batch_size": 1,
    "dynamic_batching": False,
    "max_queue_delay_us": 0,
    "preferred_batch_sizes": "none",
    "instances": 1,
    "runtime_threads": 0,
}


def newcomer() -> str:
    """The trial id of a newcomer's configuration (NEWCOMER)."""
    return trial_id(NEWCOMER)


def neighbours(trial: dict[str, Any], space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """One step up or down along one dimension (the options in their config order)."""
    found = []
    for dim in DIMENSIONS:
        options = space[dim]
        if trial[dim] not in options:
            continue
        i = options.index(trial[dim])
        for j in (i - 1, i + 1):
            if 0 <= j < len(options):
                found.append(canonical({**trial, dim: options[j]}))
    return found


# The coordinate search's order: the settings that move CPU throughput most come first (Triton's
# optimization guide: dynamic batching, then instances), so later sweeps start from a good point.
SWEEP_ORDER = [
    "dynamic_batching",
    "instances",
    "runtime_threads",
    "max_queue_delay_us",
    "preferred_batch_sizes",
    "max_batch_size",
]


def sweep(trial: dict[str, Any], dim: str, space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every option of one dimension, the others as in trial."""
    return [canonical({**trial, dim: option}) for option in space[dim]]


def coordinate(
    space: dict[str, list[Any]],
    start: dict[str, Any],
    done: set[str],
    best: dict[str, Any] | None,
    round_no: int,
) -> list[dict[str, Any]]:
    """Round N sweeps dimension N (cyclically) around the best trial; a dimension with nothing left
    to measure there (already swept, or meaningless: no queue delay without dynamic batching) passes
    the round to the next one. Nothing left in any dimension: the best is a coordinate-wise optimum."""
    if round_no == 0:
        return [start, *sweep(start, SWEEP_ORDER[0], space)]
    centre = best if best is not None else start
    for k in range(len(SWEEP_ORDER)):
        dim = SWEEP_ORDER[(round_no + k) % len(SWEEP_ORDER)]
        if fresh := [t for t in sweep(centre, dim, space) if trial_id(t) not in done]:
            return fresh
    return []


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
    }


def chosen_triton(chosen_json: str | Path) -> dict[str, Any]:
    """The triton settings a search chose: what the served, measured and deployed repositories use."""
    return dict(json.loads(Path(chosen_json).read_text())["triton"])


def read_trials(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                row["throughput"] = float(row["throughput"]) if row.get("throughput") else None
                row["p99_us"] = float(row["p99_us"]) if row.get("p99_us") else None
                rows.append(row)
    return rows


def ranked(
    rows: list[dict[str, Any]], budget_us: float, min_throughput: float = 0.0
) -> list[dict[str, Any]]:
    """Stable trials, best first: those within the p99 budget and above the minimum throughput by
    throughput (ties: lower p99), then the others by p99 (the closest to the budget first)."""
    measured = [
        r
        for r in rows
        if r.get("status") == Status.OK and r["throughput"] is not None and r["p99_us"] is not None
    ]
    feasible = [
        r for r in measured if r["p99_us"] <= budget_us and r["throughput"] >= min_throughput
    ]
    others = [
        r for r in measured if not (r["p99_us"] <= budget_us and r["throughput"] >= min_throughput)
    ]
    return sorted(feasible, key=lambda r: (-r["throughput"], r["p99_us"])) + sorted(
        others, key=lambda r: r["p99_us"]
    )


def incumbent(
    rows: list[dict[str, Any]], budget_us: float, min_throughput: float = 0.0
) -> tuple[dict[str, Any] | None, bool]:
    """(best trial, whether it meets the constraints): the highest throughput among stable trials
    with p99 within the budget and throughput above the minimum; else the closest (lowest p99)."""
    order = ranked(rows, budget_us, min_throughput)
    if not order:
        return None, False
    best = order[0]
    return best, best["p99_us"] <= budget_us and best["throughput"] >= min_throughput


def propose(
    strategy: str,
    space: dict[str, list[Any]],
    start: dict[str, Any],
    rows: list[dict[str, Any]],
    round_no: int,
    budget_us: float,
    min_throughput: float,
) -> list[dict[str, Any]]:
    """The trials of one round: never one already measured."""
    done = {r["trial"] for r in rows}
    if strategy == "brute_force":
        proposals = grid(space) if round_no == 0 else []
    elif strategy == "coordinate":
        best, _ = incumbent(rows, budget_us, min_throughput)
        proposals = coordinate(
            space, start, done, parse_trial(best["trial"]) if best else None, round_no
        )
    elif round_no == 0:
        proposals = [start, *neighbours(start, space)]
    else:
        best, _ = incumbent(rows, budget_us, min_throughput)
        proposals = neighbours(parse_trial(best["trial"]), space) if best else []
    unique: dict[str, dict[str, Any]] = {}
    for trial in proposals:
        unique.setdefault(trial_id(trial), trial)
    return [t for k, t in unique.items() if k not in done]


def plan_round(
    settings: dict[str, Any],
    triton: dict[str, Any],
    device: str,
    round_no: int,
    trial_csvs: list[str],
    output: str | Path,
) -> dict[str, Any]:
    """Write round N's plan from every trial measured in rounds before it (trial_csvs)."""
    rows = read_trials(trial_csvs)
    start = naive(triton, device, settings["space"])
    budget_us = settings["p99_budget_ms"] * 1000.0
    trials = (
        []
        if round_no >= settings["max_rounds"]
        else propose(
            settings["strategy"],
            settings["space"],
            start,
            rows,
            round_no,
            budget_us,
            settings["min_throughput"],
        )
    )
    plan = {
        "round": round_no,
        "strategy": settings["strategy"],
        "trials": [trial_id(t) for t in trials],
        "measured_before": len(rows),
        "start": trial_id(start),
    }
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(plan, indent=2) + "\n")
    log.info(
        "round %d (%s): %d new trial(s) after %d measured: %s",
        round_no,
        settings["strategy"],
        len(trials),
        len(rows),
        plan["trials"],
    )
    return plan


def load_point(settings: dict[str, Any], trial: dict[str, Any]) -> tuple[int, int]:
    """(batch, concurrency) a trial is measured at: online, single-sample requests at the configured
    concurrency; offline, the largest batch the trial allows within batch_range, two requests in
    flight per instance (its batch capacity: with one at a time, a second instance would sit idle)."""
    if settings["mode"] == "online":
        return 1, int(settings["concurrency"])
    low, high = settings["batch_range"]
    return max(int(low), min(int(high), int(trial["max_batch_size"]))), 2 * int(trial["instances"])


def measure_trial(
    executable: str,
    server: Any,
    model_name: str,
    io_json: str | Path,
    perf_settings: dict[str, Any],
    settings: dict[str, Any],
    trial_text: str,
    output: str | Path,
    input_data: str | Path | None,
    device: str = "cpu",
    repository: str | Path | None = None,
) -> dict[str, Any]:
    """One perf_analyzer point against a server already running this trial's repository; a point
    with foreign load above perf.max_foreign_cpu twice is "disturbed" and never ranked. With
    `objective: capacity` (settings["capacity"] then holds perf.capacity), the trial's capacity
    search instead: throughput is the capacity (infer/s) at perf.capacity.p99_budget_ms and p99
    the p99 there (capacity.trial_capacity)."""
    trial = parse_trial(trial_text)
    io = json.loads(Path(io_json).read_text())
    batch, concurrency = load_point(settings, trial)
    load = plan_load(io, perf_settings, input_data)
    with tempfile.TemporaryDirectory(prefix="deploysnake-trial-") as tmp:
        if settings.get("objective") == "capacity":
            from .capacity import trial_capacity

            batch, concurrency = int(settings["capacity"]["batch_size"]), 0
            log.info("trial %s: capacity search, batch %d", trial_text, batch)
            status, measured = trial_capacity(
                executable,
                server,
                model_name,
                io_json,
                repository or tmp,
                settings["capacity"],
                perf_settings,
                Path(tmp) / "rates",
                input_data,
                device,
            )
        else:
            # perf.sizing probe: the trial's window holds MIN_WINDOW_REQUESTS requests of its batch
            # at the latency probed on this trial's server (perf.sized), at least the configured one.
            latency_s = probe_one(server, model_name, io, input_data, perf_settings, batch)
            trial_settings = sized(perf_settings, latency_s)
            log.info(
                "trial %s: batch %d, concurrency %d; probe %s, windows %d ms",
                trial_text,
                batch,
                concurrency,
                "none" if latency_s is None else f"{1000 * latency_s:.1f} ms",
                trial_settings["measurement_interval_ms"],
            )
            status, measured, _ = measure_point(
                executable,
                model_name,
                server,
                Point(batch, concurrency),
                trial_settings,
                "trial",
                Path(tmp) / "trial.csv",
                replace(
                    load,
                    timeout_s=60.0
                    + 3
                    * trial_settings["measurement_interval_ms"]
                    / 1000.0
                    * int(trial_settings["max_trials"]),
                ),
                device,
            )
    row = {
        "trial": trial_text,
        **trial,
        "mode": settings["mode"],
        "batch": batch,
        "concurrency": concurrency,
        "status": status,
        "throughput": measured.get(Header.THROUGHPUT, ""),
        "p99_us": measured.get(Header.P99, ""),
        **{k: measured.get(k, "") for k in ("foreign_cpu", "server_cpu", "client_cpu")},
    }
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[c for c in TRIAL_COLUMNS if c != "round"])
        writer.writeheader()
        writer.writerow(row)
    log.info(
        "trial %s: %s, %s infer/s, p99 %s us", trial_text, status, row["throughput"], row["p99_us"]
    )
    return row


def run_trial(
    model: str,
    fmt: str,
    device: str,
    artifact: str | Path,
    io_json: str | Path,
    base_triton: dict[str, Any],
    flavour: str,
    perf_settings: dict[str, Any],
    settings: dict[str, Any],
    trial_text: str,
    output: str | Path,
    input_data: str | Path | None,
    server_log: str | Path,
) -> dict[str, Any]:
    """One trial from scratch: its repository in a temporary folder, a server on it, one measurement."""
    from . import server, tools
    from .repository import triton_model_name, write_repository

    triton = triton_settings(base_triton, parse_trial(trial_text), device)
    with tempfile.TemporaryDirectory(prefix="deploysnake-trial-repo-") as repo:
        write_repository(model, artifact, io_json, triton, device, flavour, repo)
        with server.from_settings(repo, triton, server_log) as running:
            executable = tools.perf_analyzer(perf_settings["perf_analyzer"])
            return measure_trial(
                executable,
                running,
                triton_model_name(model, fmt),
                io_json,
                perf_settings,
                settings,
                trial_text,
                output,
                input_data,
                device,
                repo,
            )


def shortlist(
    settings: dict[str, Any], triton: dict[str, Any], device: str, trial_csvs: list[str]
) -> list[str]:
    """The configurations the side by side measures again: the search's best
    `side_by_side_candidates` trials, the untuned one and a newcomer's (NEWCOMER, for the report's
    tuned-over-newcomer ratio; never chosen)."""
    rows = read_trials(trial_csvs)
    best = [
        r["trial"]
        for r in ranked(rows, settings["p99_budget_ms"] * 1000.0, settings["min_throughput"])[
            : settings["side_by_side_candidates"]
        ]
    ]
    return list(
        dict.fromkeys([*best, trial_id(naive(triton, device, settings["space"])), newcomer()])
    )


def summarize_side_by_side(path: str | Path) -> dict[str, dict[str, Any]]:
    """Per trial of a side_by_side.csv: median throughput and p99 of its stable rounds, their spread,
    and how many rounds it was measured (stable or not)."""
    seen: dict[str, list[tuple[float, float]]] = {}
    rounds: dict[str, int] = {}
    for row in read_trials([path]):
        values = seen.setdefault(row["trial"], [])
        rounds[row["trial"]] = rounds.get(row["trial"], 0) + 1
        if (
            row["status"] == Status.OK
            and row["throughput"] is not None
            and row["p99_us"] is not None
        ):
            values.append((row["throughput"], row["p99_us"]))
    return {
        trial: {
            "throughput": statistics.median(t for t, _ in v) if v else None,
            "p99_us": statistics.median(p for _, p in v) if v else None,
            "min": min((t for t, _ in v), default=None),
            "max": max((t for t, _ in v), default=None),
            "stable_rounds": len(v),
            "rounds": rounds[trial],
        }
        for trial, v in seen.items()
    }


def choose(
    settings: dict[str, Any],
    triton: dict[str, Any],
    model: str,
    device: str,
    plans: list[str],
    trial_csvs: list[str],
    chosen_path: str | Path,
    table_path: str | Path,
    io_json: str | Path | None = None,
    side_by_side_csv: str | Path | None = None,
) -> dict[str, Any]:
    """The chosen configuration (chosen.json, with its triton settings) and every trial (trials.csv).
    With a side by side, the choice is among its configurations by their medians (the search's best
    trial is one short measurement, often a lucky one); without, the search's best trial."""
    rows = read_trials(trial_csvs)
    rounds = {
        t: plan["round"]
        for plan in (json.loads(Path(p).read_text()) for p in plans)
        for t in plan["trials"]
    }
    for row in rows:
        row["round"] = rounds.get(row["trial"], "")
    budget_us = settings["p99_budget_ms"] * 1000.0
    search_best, _ = incumbent(rows, budget_us, settings["min_throughput"])
    side = summarize_side_by_side(side_by_side_csv) if side_by_side_csv else {}
    if side:
        medians_as_rows = [
            {
                "trial": t,
                "status": Status.OK if m["throughput"] is not None else Status.UNSTABLE,
                **m,
            }
            for t, m in side.items()
            if t != newcomer() or t in {r["trial"] for r in rows}  # a reference, not a candidate
        ]
        best, within = incumbent(medians_as_rows, budget_us, settings["min_throughput"])
    else:
        best, within = incumbent(rows, budget_us, settings["min_throughput"])
    start = trial_id(naive(triton, device, settings["space"]))
    naive_row = next((r for r in rows if r["trial"] == start), None)
    chosen = {
        "trial": best["trial"] if best else None,
        "within_budget": within,
        "p99_budget_ms": settings["p99_budget_ms"],
        "min_throughput": settings["min_throughput"],
        # the side by side's medians where there is one, else the trial's own measurement
        "throughput": best["throughput"] if best else None,
        "p99_us": best["p99_us"] if best else None,
        "measured_by": "side_by_side" if side else "trial",
        "search_best": search_best["trial"] if search_best else None,
        "search_best_throughput": search_best["throughput"] if search_best else None,
        "measurements": len(rows),
        "side_by_side_measurements": sum(m["rounds"] for m in side.values()),
        "side_by_side": side,
        "grid_size": len(grid(settings["space"])),
        "strategy": settings["strategy"],
        "naive": start,
        "naive_throughput": naive_row["throughput"] if naive_row else None,
        "newcomer": newcomer(),
        "newcomer_throughput": side.get(newcomer(), {}).get("throughput"),
        # Nothing meets the constraints: serve the closest trial, and say so everywhere.
        "triton": triton_settings(triton, parse_trial(best["trial"]), device) if best else triton,
    }
    if io_json:  # the config.pbtxt a production Triton gets (deploy/), for the report
        from google.protobuf import text_format

        from .repository import build_config, triton_model_name

        io = json.loads(Path(io_json).read_text())
        chosen["config_pbtxt"] = text_format.MessageToString(
            build_config(
                triton_model_name(model, io["format"]), io, chosen["triton"], device, "native"
            )
        )
    Path(chosen_path).parent.mkdir(parents=True, exist_ok=True)
    Path(chosen_path).write_text(json.dumps(chosen, indent=2) + "\n")
    with open(table_path, "w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=TRIAL_COLUMNS + ["chosen"], extrasaction="ignore"
        )
        writer.writeheader()
        for row in sorted(rows, key=lambda r: (str(r["round"]), r["trial"])):
            writer.writerow({**row, "chosen": row["trial"] == chosen["trial"]})
    if best and not within:
        log.warning(
            "no trial meets p99 <= %s ms and throughput >= %s; the closest is %s (p99 %.0f us)",
            settings["p99_budget_ms"],
            settings["min_throughput"],
            best["trial"],
            best["p99_us"],
        )
    return chosen


SIDE_BY_SIDE_COLUMNS = [
    "trial",
    "round",
    "mode",
    "batch",
    "concurrency",
    "status",
    "throughput",
    "p99_us",
    "foreign_cpu",
    "server_cpu",
    "client_cpu",
]


def rotated(items: list[Any], r: int) -> list[Any]:
    """Round r starts at the r-th item, so a drift of the machine's speed falls on every item alike."""
    return items[r % len(items) :] + items[: r % len(items)]


def side_by_side(
    model: str,
    fmt: str,
    device: str,
    artifact: str | Path,
    io_json: str | Path,
    base_triton: dict[str, Any],
    flavour: str,
    perf_settings: dict[str, Any],
    settings: dict[str, Any],
    trials: list[str],
    rounds: int,
    output: str | Path,
    input_data: str | Path | None,
    server_log: str | Path,
) -> list[dict[str, Any]]:
    """Each distinct trial measured `rounds` times, interleaved in rotating order, by the trial job's own
    code (a fresh server each time; every server's log appended to server_log); one CSV row per
    measurement. Measurements minutes apart differ by the machine's drift (10-20 % on a 2-core
    machine); alternated, the drift falls on each configuration alike."""
    distinct = list(dict.fromkeys(trials))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="deploysnake-side-by-side-") as tmp:
        for r in range(rounds):
            for trial in rotated(distinct, r):
                row = run_trial(
                    model,
                    fmt,
                    device,
                    artifact,
                    io_json,
                    base_triton,
                    flavour,
                    perf_settings,
                    settings,
                    trial,
                    Path(tmp) / "trial.csv",
                    input_data,
                    server_log,
                )
                rows.append({**row, "round": r})
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SIDE_BY_SIDE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    for trial, summary in summarize_side_by_side(output).items():
        log.info(
            "side by side, %s: median %s infer/s, p99 %s us, of %d stable round(s) in %d",
            trial,
            summary["throughput"],
            summary["p99_us"],
            summary["stable_rounds"],
            rounds,
        )
    return rows
