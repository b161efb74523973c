"""Measuring trials: one configuration served and measured (a fresh server each time), and the side
by side that measures the best trials and the untuned configuration again in alternation."""

from __future__ import annotations

import csv
import json
import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..contracts import Header, ServedSettings, Target
from ..measuring.perf import measure_point
from ..measuring.sizing import probe_one, sized
from ..measuring.workload import Point, plan_load
from .plan import summarize_side_by_side
from .space import parse_trial, triton_settings
from .state import POINT_COLUMNS, TRIAL_COLUMNS

log = logging.getLogger(__name__)


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
    served: ServedSettings,
    io_json: str | Path,
    perf_settings: dict[str, Any],
    settings: dict[str, Any],
    output: str | Path,
    input_data: str | Path | None,
    repository: str | Path | None = None,
) -> dict[str, Any]:
    """One perf_analyzer point against a server already running trial served.trial's repository,
    sent to served.model_name (settings: the tuning section, perf_settings the perf section); a point
    with foreign load above perf.max_foreign_cpu twice is "disturbed" and never ranked. With
    `objective: capacity` (settings["capacity"] then holds perf.capacity), the trial's capacity
    search instead: throughput is the capacity (infer/s) at perf.capacity.p99_budget_ms and p99
    the p99 there (open_loop.trial_capacity). Raises ValueError where `served` is no trial's
    (served.trial None: an untuned format's settings)."""
    if served.trial is None:
        raise ValueError(
            f"{served.model_name} is served untuned (served.trial is None): a trial measures "
            "the settings repository.served_settings resolved for its trial id"
        )
    model_name, device, trial_text = served.model_name, served.device, served.trial
    trial = parse_trial(trial_text)
    io = json.loads(Path(io_json).read_text())
    batch, concurrency = load_point(settings, trial)
    load = plan_load(io, perf_settings, input_data)
    with tempfile.TemporaryDirectory(prefix="deploysnake-trial-") as tmp:
        if settings.get("objective") == "capacity":
            from ..measuring.open_loop import trial_capacity

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
    target: Target,
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
    """One trial of `target` from scratch: its repository in a temporary folder (base_triton with
    the trial's settings, written and resolved as the repository job does), a server on it, one
    measurement (measure_trial)."""
    from .. import server, tools
    from ..repository import served_settings, write_repository

    triton = triton_settings(base_triton, parse_trial(trial_text), target.device)
    served = served_settings(target.model, target.format, triton, target.device, trial_text)
    with tempfile.TemporaryDirectory(prefix="deploysnake-trial-repo-") as repo:
        write_repository(target.model, artifact, io_json, triton, target.device, flavour, repo)
        with server.from_settings(repo, triton, server_log) as running:
            executable = tools.perf_analyzer(perf_settings["perf_analyzer"])
            return measure_trial(
                executable,
                running,
                served,
                io_json,
                perf_settings,
                settings,
                output,
                input_data,
                repo,
            )


SIDE_BY_SIDE_COLUMNS = ["trial", "round", *POINT_COLUMNS]


def rotated(items: list[Any], r: int) -> list[Any]:
    """Round r starts at the r-th item, so a drift of the machine's speed falls on every item alike."""
    return items[r % len(items) :] + items[: r % len(items)]


def side_by_side(
    target: Target,
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
                    target,
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
