"""Open-loop load on a running server and the workflow's capacity job.

Open loop, as production traffic and MLPerf Inference's Server scenario: requests arrive on a
schedule (Poisson by default, constant as an option) whether or not the server has answered the
earlier ones; perf_analyzer's request-rate mode (`--request-rate-range R:R:1
--request-distribution poisson --async`), each point measured by perf.measure_point (bounded in
time, an unstable point measured once more with windows twice as long). Each rate is a row with
perf_analyzer's columns plus the achieved rate (completed requests/s), the rate the client actually
sent, the share of requests perf_analyzer sent late and whether the client kept up: a point whose
send rate fell short of the schedule by more than `client_rate_tolerance` is recorded as
`client_behind`, never as a result. The search itself is capacity.search; each rate is a file of
its own (`<output>/rates/r<rate>.csv`, keyed by the measurement settings and the served
repository), so a stopped search resumes and no rate is measured twice.

A model x format that cannot go through the search (the server cannot load it, crashes while it
serves it, perf_analyzer fails on it: deploysnake.failures.classify) is recorded, as in the other
served stages: the CSV is a failure record, the JSON has status "failed" with the reason, and the
report lists it among the served failures.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..contracts import Header, ServedSettings, Status, Target, number
from ..failures import FormatFailure, write_failure_csv
from ..server import TritonServer
from ..underload import Expected
from .capacity import (
    RATE_COLUMNS,
    Rate,
    client_figures,
    describe,
    kept_up,
    search,
    summary,
)
from .perf import measure_point
from .sizing import open_loop_window_ms, probe_one, start_rate
from .workload import Point, input_shapes, plan_load

log = logging.getLogger(__name__)


def point_settings(settings: dict[str, Any], perf_settings: dict[str, Any]) -> dict[str, Any]:
    """perf_analyzer's settings for an open-loop point: the shared perf settings with the capacity
    search's own window and stability (an open loop's latency is noisier than a closed loop's: each
    window holds a random number of arrivals, and bursts queue)."""
    return {
        **perf_settings,
        "measurement_mode": "time_windows",
        "measurement_interval_ms": int(settings["measurement_interval_ms"]),
        "stability_percentage": float(settings["stability_percentage"]),
    }


def cache_key(settings: dict[str, Any], perf_settings: dict[str, Any], repository: Path) -> str:
    """What a rate's number depends on: the measurement settings and the served repository (its
    config.pbtxt and every file's size and time). The budget and the search bounds are not in it:
    changing them re-plans the search and reuses every rate already measured."""
    measuring = {
        k: settings[k]
        for k in (
            "batch_size",
            "distribution",
            "client_rate_tolerance",
            "measurement_interval_ms",
            "stability_percentage",
        )
    }
    shared = {
        k: v
        for k, v in perf_settings.items()
        if k not in ("offline", "online", "capacity", "perf_analyzer")
    }
    files = sorted(
        (str(p.relative_to(repository)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in repository.rglob("*")
        if p.is_file()
    )
    configs = sorted(p.read_text() for p in repository.rglob("config.pbtxt"))
    text = json.dumps([measuring, shared, files, configs], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = RATE_COLUMNS + [
        c for c in dict.fromkeys(k for r in rows for k in r) if c not in RATE_COLUMNS
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(path)  # a file per rate appears whole or not at all


def _as_rate(row: dict[str, Any]) -> Rate:
    ok = row.get("status") == Status.OK
    return Rate(
        int(float(row["request_rate"])),
        str(row.get("status")),
        number(row.get(Header.P50)) if ok else None,
        number(row.get(Header.P99)) if ok else None,
        row,
    )


def read_rate(path: Path, key: str) -> Rate | None:
    """A rate measured before under the same settings and repository; None otherwise."""
    if not path.exists():
        return None
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if len(rows) != 1 or rows[0].get("cache_key") != key:
        return None
    return _as_rate(rows[0])


def measure_rate(
    executable: str,
    server: TritonServer,
    model_name: str,
    rate: int,
    settings: dict[str, Any],
    perf_settings: dict[str, Any],
    load: Any,
    tmp: Path,
    device: str = "cpu",
) -> tuple[str, dict[str, Any]]:
    """One open-loop point: (status, row fields). perf.measure_point runs perf_analyzer (bounded in
    time, once more with longer windows if unstable); a stable point whose client sent less than the
    schedule becomes client_behind, with its figures kept in the row for the record."""
    batch = int(settings["batch_size"])
    point = Point(batch, 0, float(rate), settings["distribution"])
    status, measured, text = measure_point(
        executable,
        model_name,
        server,
        point,
        perf_settings,
        "online",
        tmp / f"r{rate}.csv",
        load,
        device,
    )
    send_rate, delayed, requests = client_figures(text)
    throughput = number(measured.get(Header.THROUGHPUT))
    fields: dict[str, Any] = {
        **measured,
        "achieved_rate": f"{throughput / batch:.3f}" if throughput is not None else "",
        "send_rate": "" if send_rate is None else f"{send_rate:.3f}",
        "delayed_percent": "" if delayed is None else f"{delayed:.2f}",
        "kept_up": "",
    }
    if status == Status.OK:
        ok = kept_up(
            rate,
            send_rate,
            delayed,
            float(settings["client_rate_tolerance"]),
            requests,
            settings["distribution"] == "poisson",
        )
        fields["kept_up"] = ok
        if not ok:
            status = Status.CLIENT_BEHIND
    if status != Status.OK:
        log.warning("rate %d req/s: %s; perf_analyzer said:\n%s", rate, status, _client_part(text))
    return status, fields


def _client_part(output: str) -> str:
    """perf_analyzer's report of the point (from "Request Rate:"), or its last lines."""
    at = output.find("Request Rate:")
    return output[at : at + 2500] if at >= 0 else output[-2500:]


def run_search(
    executable: str,
    server: TritonServer,
    target: Target,
    model_name: str,
    io_json: str | Path,
    repository: str | Path,
    settings: dict[str, Any],
    perf_settings: dict[str, Any],
    budget_ms: float,
    rates_dir: str | Path,
    input_data: str | Path | None = None,
    provenance: dict[str, str] | None = None,
    expected: Expected | None = None,
) -> dict[str, Any]:
    """The capacity search of `target` (served as model_name) against a running server; each rate
    cached in rates_dir. Returns the
    search's outcome (see search) with every step's CSV row in "rows" (search order). expected
    (deploysnake.underload.prepare): each rate's answers are checked under load; a rate whose
    answers differ is "failed", beyond the budget for the search."""
    io = json.loads(Path(io_json).read_text())
    perf_settings = point_settings(settings, perf_settings)
    # verbose: each window's infer/s (window_infer_s), the spread of the rate found (summary)
    load = replace(plan_load(io, perf_settings, input_data), expected=expected, verbose=True)
    described = {
        "input_data": "dataloader" if load.data else "random",
        "input_shapes": input_shapes(input_data if load.shapes else load.data, io),
    }
    key = cache_key(settings, perf_settings, Path(repository))
    rates_dir = Path(rates_dir)
    budget_us = budget_ms * 1000.0
    batch = int(settings["batch_size"])
    counter = {"measured": 0, "cached": 0}
    # perf.sizing probe: one request's latency at the search's batch size sizes its start rate
    # (start_rate 0) and its windows (perf.open_loop_window_ms).
    latency_s = probe_one(server, model_name, io, input_data, perf_settings, batch)
    first = start_rate(int(settings["start_rate"]), latency_s, int(settings["max_rate"]))
    log.info(
        "capacity search: probe %s; start rate %d req/s (%s)",
        "none" if latency_s is None else f"batch {batch}: {1000 * latency_s:.1f} ms",
        first,
        "perf.capacity.start_rate" if int(settings["start_rate"]) else "from the probe",
    )

    with tempfile.TemporaryDirectory(prefix="deploysnake-capacity-") as tmp:

        def measure(rate: int, step: str) -> Rate:
            path = rates_dir / f"r{rate}.csv"
            k = counter["measured"] + counter["cached"] + 1
            cached = read_rate(path, key)
            if cached is not None:
                counter["cached"] += 1
                log.info(
                    "%s: rate %d req/s (step %d of at most %d): measured before (%s), not again",
                    _STEP_NAMES[step],
                    rate,
                    k,
                    settings["max_measurements"],
                    path,
                )
                found = cached
            else:
                log.info(
                    "%s: rate %d req/s (step %d of at most %d), %s arrivals, batch %d",
                    _STEP_NAMES[step],
                    rate,
                    k,
                    settings["max_measurements"],
                    settings["distribution"],
                    batch,
                )
                started = time.monotonic()
                server.check_alive()
                window_ms = open_loop_window_ms(
                    perf_settings, int(settings["measurement_interval_ms"]), rate, latency_s
                )
                # Bound the call as plan_load does, from the rate's own window.
                rate_load = replace(
                    load,
                    timeout_s=60.0 + 3 * window_ms / 1000.0 * int(perf_settings["max_trials"]),
                )
                status, fields = measure_rate(
                    executable,
                    server,
                    model_name,
                    rate,
                    settings,
                    {**perf_settings, "measurement_interval_ms": window_ms},
                    rate_load,
                    Path(tmp),
                    target.device,
                )
                server.check_alive()
                counter["measured"] += 1
                row = {
                    **target.columns(),
                    "mode": "capacity",
                    "batch": batch,
                    "concurrency": "",
                    "status": status,
                    "request_rate": rate,
                    "distribution": settings["distribution"],
                    **fields,
                    **described,
                    **(provenance or {}),
                    "cache_key": key,
                }
                _write_rows(path, [row])
                found = _as_rate(row)
                log.info("rate %d req/s: measured (%.1f s)", rate, time.monotonic() - started)
            verdict = (
                f"p99 {found.p99_us / 1000:.2f} ms, p50 {found.p50_us / 1000:.2f} ms: "
                + ("within" if found.within(budget_us) else "beyond")
                + f" the {budget_ms:g} ms budget"
                if found.status == Status.OK
                and found.p99_us is not None
                and found.p50_us is not None
                else f"{found.status} (not a result: beyond the budget for the search)"
            )
            log.info(
                "rate %d req/s: %s; achieved %s req/s, client sent %s req/s (%s %% late)",
                rate,
                verdict,
                found.row.get("achieved_rate") or "—",
                found.row.get("send_rate") or "—",
                found.row.get("delayed_percent") or "—",
            )
            return found

        outcome = search(
            measure,
            budget_us,
            first,
            int(settings["max_rate"]),
            float(settings["resolution"]),
            int(settings["max_measurements"]),
        )
    outcome["rows"] = [
        {**r.row, "step": step, "within_budget": r.within(budget_us)}
        for step, r in outcome["steps"]
    ]
    outcome["measured"], outcome["cached"] = counter["measured"], counter["cached"]
    return outcome


_STEP_NAMES = {"bracket": "bracketing", "bisect": "bisection"}


def write(
    outcome: dict[str, Any], result: dict[str, Any], csv_path: str | Path, json_path: str | Path
) -> None:
    """Every rate of the search as a CSV row (search order, with its step) and the result JSON."""
    _write_rows(Path(csv_path), outcome["rows"])
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    log.info("capacity: %s", describe(result))


def measure(
    executable: str,
    server: TritonServer,
    target: Target,
    served: ServedSettings,
    io_json: str | Path,
    repository: str | Path,
    settings: dict[str, Any],
    perf_settings: dict[str, Any],
    csv_path: str | Path,
    json_path: str | Path,
    input_data: str | Path | None = None,
    provenance: dict[str, str] | None = None,
    expected: Expected | None = None,
) -> dict[str, Any]:
    """The workflow's capacity job: the search of `target`, served as `served`, with perf.capacity's
    (settings') budget; the rate files sit in
    `<csv_path without .csv>/rates/`. Returns the result JSON's content. expected: see
    run_search."""
    budget_ms = float(settings["p99_budget_ms"])
    rates_dir = Path(csv_path).with_suffix("") / "rates"
    outcome = run_search(
        executable,
        server,
        target,
        served.model_name,
        io_json,
        repository,
        settings,
        perf_settings,
        budget_ms,
        rates_dir,
        input_data,
        provenance,
        expected,
    )
    result = summary(outcome, target, settings, budget_ms)
    write(outcome, result, csv_path, json_path)
    return result


def write_failure(
    failure: FormatFailure,
    target: Target,
    settings: dict[str, Any],
    csv_path: str | Path,
    json_path: str | Path,
) -> dict[str, Any]:
    """The capacity job's outputs for a model x format that failed the search: the CSV as a failure
    record (deploysnake.failures.write_failure_csv, stage "capacity") and the result JSON with
    status "failed", the reason and the log excerpt, no capacity. The rate files measured before
    the failure stay where they are. Returns the JSON's content."""
    keys = {**target.columns(), "mode": "capacity"}
    write_failure_csv(csv_path, keys, "capacity", failure, RATE_COLUMNS)
    result = {
        **target.columns(),
        "status": Status.FAILED,
        "stage": "capacity",
        "reason": failure.reason,
        "log_excerpt": failure.log_excerpt[-2000:],
        "p99_budget_ms": float(settings["p99_budget_ms"]),
        "batch": int(settings["batch_size"]),
        "distribution": settings["distribution"],
        "resolution": settings["resolution"],
        "capacity_rps": None,
        "capacity_infer_per_s": None,
        "p50_us": None,
        "p99_us": None,
        "breakdown_us": {},
        "measurements": 0,
        "steps": [],
    }
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    return result


def config_problems(config: dict[str, Any]) -> list[str]:
    """perf.capacity settings that cannot work, each with the key and what to do."""
    from ..formats import ARTIFACTS

    problems = []
    settings = config["perf"]["capacity"]
    unknown = [f for f in settings["formats"] if f not in ARTIFACTS]
    if unknown:
        problems.append(
            f"config.perf.capacity.formats: {unknown} are not formats; "
            f"allowed: {', '.join(ARTIFACTS)}"
        )
    max_batch = config["triton"]["max_batch_size"]
    if max_batch == 0 and settings["formats"]:
        problems.append(
            f"config.perf.capacity.formats: {settings['formats']} cannot be searched with "
            "triton.max_batch_size: 0 (the open-loop points send batched requests); remove them "
            "or serve the model batched"
        )
    if max_batch > 0 and settings["batch_size"] > max_batch:
        problems.append(
            f"config.perf.capacity.batch_size: {settings['batch_size']} above "
            f"triton.max_batch_size ({max_batch}); "
            "lower it or raise triton.max_batch_size"
        )
    if settings["start_rate"] and settings["start_rate"] > settings["max_rate"]:
        problems.append(
            f"config.perf.capacity.start_rate: {settings['start_rate']} above max_rate "
            f"({settings['max_rate']}); lower start_rate or raise max_rate"
        )
    return problems


def trial_capacity(
    executable: str,
    server: TritonServer,
    model_name: str,
    io_json: str | Path,
    repository: str | Path,
    settings: dict[str, Any],
    perf_settings: dict[str, Any],
    rates_dir: str | Path,
    input_data: str | Path | None,
    device: str = "cpu",
) -> tuple[str, dict[str, str]]:
    """A tuning trial's measurement under `tuning.objective: capacity`: the capacity search on the
    trial's server at perf.capacity.p99_budget_ms, as (status, perf_analyzer-like columns):
    Inferences/Second is the capacity in infer/s and p99 latency its p99 (µs). No rate within the
    budget: 0 infer/s at the p99 of the lowest rate measured stably (ranked after every trial
    with a capacity)."""
    budget_ms = float(settings["p99_budget_ms"])
    outcome = run_search(
        executable,
        server,
        Target("", "", device),
        model_name,
        io_json,
        repository,
        settings,
        perf_settings,
        budget_ms,
        rates_dir,
        input_data,
    )
    cap: Rate | None = outcome["capacity"]
    lowest: Rate | None = outcome["lowest_stable"]
    if cap is not None:
        throughput, p99 = cap.rate * int(settings["batch_size"]), cap.p99_us
    elif lowest is not None and lowest.p99_us is not None:
        throughput, p99 = 0, lowest.p99_us
    else:
        return Status.UNSTABLE, {}
    return Status.OK, {Header.THROUGHPUT: f"{throughput:g}", Header.P99: f"{p99:g}"}
