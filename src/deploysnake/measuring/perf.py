"""Perf stage: perf_analyzer against the running server, one invocation per sweep point.

Offline: static batch sweep, system shared memory, at each offline concurrency (1: the guides' single
request; 2: a request's transfer overlaps the previous one's compute, the server's batch capacity) and,
where the model has several instances, at two requests per instance, so every instance has one.
Online: dynamic batching on the server, batch-1 requests, concurrency sweep. Each point keeps every
column perf_analyzer writes with -f, and what the window used (deploysnake.usage: server and client
cores, the server's peak memory, the foreign load). A point perf_analyzer cannot measure stably
(twice) is recorded as "unstable", never as a number; one that ran beside foreign load (twice) is
recorded as "disturbed", its numbers kept but never taken as a result.

The points and what they send are in workload, the perf_analyzer call in perf_analyzer, the windows
and the sweep's stop in sizing.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import shm
from ..contracts import PERF_ANALYZER_COLUMNS, Header, ServedSettings, Status, Target
from ..failures import FormatFailure
from ..server import ServerDied, TritonServer
from ..spread import interval_columns, percentile_support
from ..underload import Expected, SideCheck
from ..usage import COLUMNS as USAGE_COLUMNS
from ..usage import Window
from .perf_analyzer import command, error_lines, remove_leftovers, run_point
from .sizing import (
    SweepStop,
    estimate_s,
    job_budget,
    latency_at,
    predicted_throughput,
    probe_latency,
    sized,
    through_shared_memory,
)
from .workload import Load, Point, input_shapes, measured_output_bytes, plan_load, sweep

log = logging.getLogger(__name__)


COLUMNS = ["model", "format", "device", "mode", "batch", "concurrency", "status"]

# A point whose window saw more foreign CPU load (cores) than this, twice, is recorded "disturbed".
MAX_FOREIGN_CPU = 0.25


def measure_point(
    executable: str,
    model_name: str,
    server: TritonServer,
    point: Point,
    settings: dict[str, Any],
    mode: str,
    csv_path: Path,
    load: Load,
    device: str = "cpu",
    within_s: float | None = None,
) -> tuple[str, dict[str, Any], str]:
    """One perf_analyzer point, inside a usage Window (deploysnake.usage): the row holds perf_analyzer's
    columns and the window's (foreign_cpu, server_cpu, client_cpu in cores, server_peak_rss_mb).

    Measured once more when it is unstable (windows twice as long, what perf_analyzer advises) or
    disturbed (foreign load above settings["max_foreign_cpu"] cores, or another process on the GPU);
    then recorded as "unstable" (no numbers) or "disturbed" (numbers and load kept, never charted).
    within_s (perf.max_job_s's seconds left for this point; None: no bound): the second measurement
    only where it fits (again_fits), else the first's status is recorded.
    With load.expected, a side client checks answers under load (deploysnake.underload.SideCheck:
    columns load_check, load_check_requests); answers that differ make the point "failed", its
    numbers dropped, the output and the difference in `reason` (and the returned text)."""
    limit = float(settings.get("max_foreign_cpu", MAX_FOREIGN_CPU))
    measured: dict[str, Any] = {}
    status: str = Status.UNSTABLE
    text = ""
    started = time.monotonic()
    for attempt in (1, 2):
        args = command(
            executable,
            model_name,
            server,
            point,
            settings,
            mode,
            csv_path,
            load.output_size,
            load.data,
            load.shapes,
            load.batched,
            load.verbose,
        )
        again: dict[str, str] = {
            Status.UNSTABLE: " (again, windows twice as long)",
            Status.DISTURBED: " (again, the window was disturbed)",
        }
        log.info(
            "perf_analyzer%s: %s",
            "" if attempt == 1 else again.get(status, " (again)"),
            " ".join(args),
        )
        # system shared memory: perf_analyzer's regions are named host-wide (deploysnake.shm)
        system_shm = (
            "--shared-memory" in args and args[args.index("--shared-memory") + 1] == "system"
        )
        with shm.turn(load.tensors if system_shm else ()):
            if system_shm:
                remove_leftovers(load.tensors)
            with Window(
                server.process.pid if server.process else None,
                device,
                f"{server.host}:{server.metrics_port}",
            ) as window:
                try:
                    with _side_check(load, server, model_name, point) as side:
                        status, measured, text = run_point(
                            args,
                            load.timeout_s * attempt,
                            server,
                            side.start if side is not None else None,
                        )
                except ServerDied as exc:
                    if system_shm and exc.returncode == -signal.SIGBUS:
                        raise FormatFailure(
                            "tritonserver crashed (SIGBUS) while it read the model's requests from "
                            "system shared memory: another perf_analyzer on this host that takes "
                            "no turn (outside deploysnake) may have resized the regions named "
                            f"after the tensors {', '.join(load.tensors)} (deploysnake.shm); "
                            "measure again alone, or set perf.offline.shared_memory: none",
                            exc.log_tail,
                        ) from exc
                    raise
            if system_shm:
                remove_leftovers(load.tensors)  # a perf_analyzer killed at its timeout leaves them
        measured = {**measured, **window.columns()}
        if side is not None:
            outcome = side.outcome
            measured.update(outcome.columns())
            if outcome.differed:  # wrong answers: no throughput, whatever perf_analyzer measured
                at = (
                    f"at {point.request_rate:g} requests/s"
                    if point.request_rate is not None
                    else f"concurrency {point.concurrency}"
                )
                text = outcome.reason(f"batch {point.batch}, {at}", side.expected.runtime)
                log.warning("%s", text)
                return Status.FAILED, {**outcome.columns(), "reason": text}, text
            if outcome.not_checked:
                log.warning("outputs under load %s", outcome.columns()["load_check"])
        spent = time.monotonic() - started
        if status == Status.OK and window.disturbed(limit):
            status = Status.DISTURBED
            fits = attempt == 1 and again_fits(status, spent, within_s)
            log.warning(
                "point disturbed: %.2f core(s) of foreign CPU load (limit perf.max_foreign_cpu %.2f)%s",
                window.result["foreign_cpu"],
                limit,
                "; measuring again"
                if fits
                else "; recorded as disturbed"
                + ("" if attempt == 2 else " (measuring again would pass perf.max_job_s)"),
            )
            text = f"foreign CPU load {window.result['foreign_cpu']:.2f} cores"
            if not fits:
                break
            continue
        if status in (
            Status.OK,
            Status.FAILED,
            Status.CLIENT_BEHIND,
        ):  # measured, failed or beyond the client: measuring again gives nothing new
            break
        if attempt == 1 and not again_fits(status, spent, within_s):
            log.warning(
                "point unstable; not measured again: windows twice as long would pass "
                "perf.max_job_s (%.0f s spent on it, %.0f s left)",
                spent,
                within_s or 0.0,
            )
            break
        settings = {
            **settings,
            "measurement_interval_ms": 2 * settings["measurement_interval_ms"],
            "measurement_request_count": 2 * settings["measurement_request_count"],
        }
    return status, measured, text


@contextlib.contextmanager
def _side_check(
    load: Load, server: TritonServer, model_name: str, point: Point
) -> Iterator[SideCheck | None]:
    """A SideCheck around one perf_analyzer call where load.expected is set, else None."""
    if load.expected is None:
        yield None
        return
    with SideCheck(
        load.expected, server.grpc_url, model_name, point.batch, max(1, point.concurrency)
    ) as side:
        yield side


def again_fits(status: str, spent_s: float, within_s: float | None) -> bool:
    """Whether a point's second measurement fits in within_s seconds (None: always), its first
    having taken spent_s: a disturbed point's again takes as long, an unstable one's (windows twice
    as long) twice as long."""
    if within_s is None:
        return True
    again_s = (2.0 if status == Status.UNSTABLE else 1.0) * spent_s
    return spent_s + again_s <= within_s


def repeat_best(
    rows: list[dict[str, Any]],
    repeats: int,
    run: Callable[[int, Point, dict[str, Any]], tuple[str, dict[str, Any], str]],
    settings_of: dict[Point, dict[str, Any]],
) -> None:
    """perf.repeats: the sweep's best "ok" point (highest infer/s) measured `repeats` more times
    with the same settings, one perf_analyzer run each (`run(k, point, settings)` returns
    measure_point's (status, measured, output)); its row gets run_infer_s and run_p99_us, the
    runs' figures (";"-separated, the sweep's own first; runs that came out other than "ok" are
    left out and counted in repeats_not_ok). Nothing where repeats is 0 or no point is "ok"."""
    ok = [
        r for r in rows if r["status"] == Status.OK and r.get(Header.THROUGHPUT) not in (None, "")
    ]
    if repeats <= 0 or not ok:
        return
    best = max(ok, key=lambda r: float(r[Header.THROUGHPUT]))
    point = Point(int(best["batch"]), int(best["concurrency"]))
    throughputs, p99s, not_ok = [str(best[Header.THROUGHPUT])], [str(best[Header.P99])], 0
    for k in range(1, repeats + 1):
        log.info(
            "repeat %d of %d of the best point (batch %d, concurrency %d)",
            k,
            repeats,
            point.batch,
            point.concurrency,
        )
        status, measured, _ = run(k, point, settings_of[point])
        if status != Status.OK:
            not_ok += 1
            continue
        throughputs.append(str(measured[Header.THROUGHPUT]))
        p99s.append(str(measured[Header.P99]))
    best.update(run_infer_s=";".join(throughputs), run_p99_us=";".join(p99s), repeats_not_ok=not_ok)


def _samples(text: Any) -> list[float]:
    return [float(v) for v in str(text or "").split(";") if v.strip()]


def spread_columns(row: dict[str, Any]) -> dict[str, Any]:
    """The spread of a measured row (deploysnake.spread), as CSV columns:

    - infer_s_n, infer_s_mean, infer_s_cv, infer_s_low, infer_s_high, infer_s_from: the 95 %
      interval of infer/s from the repeated runs (run_infer_s, perf.repeats, "runs") where the
      point was repeated, else from perf_analyzer's stable windows (window_infer_s, "windows":
      consecutive windows that perf_analyzer kept because they agreed within
      perf.stability_percentage, so they understate the spread between runs);
    - p99_n, p99_mean, p99_cv, p99_low, p99_high (µs): from the repeated runs only (the windows'
      p99s are not printed);
    - p99_enough, p99_margin, p99_supported: the requests behind the p99 against MLPerf
      Inference's minimum (deploysnake.spread.percentile_support).

    Both figures are never negative: an interval's low end is cut at 0 (two runs far apart give
    a t-interval wider than the mean). Empty for a row without numbers."""
    out: dict[str, Any] = {}
    runs, windows = _samples(row.get("run_infer_s")), _samples(row.get("window_infer_s"))
    samples, source = (runs, "runs") if len(runs) >= 2 else (windows, "windows")
    if samples and row.get("status") in (Status.OK, Status.DISTURBED):
        out.update(interval_columns("infer_s", samples, 3), infer_s_from=source)
    p99s = _samples(row.get("run_p99_us"))
    if len(p99s) >= 2:
        out.update(interval_columns("p99", p99s, 1))
    if row.get("requests") not in (None, ""):
        support = percentile_support(int(row["requests"]), 99.0)
        out.update(
            p99_enough=support.enough,
            p99_margin=round(support.margin, 3),
            p99_supported=round(support.supported, 1),
        )
    return out


def _per_batch(values: dict[int, float], scale: float, unit: str) -> str:
    """ "batch 1: 19.5 ms, batch 256: 4809.7 ms" of {batch: value} (value x scale, 4 digits)."""
    return ", ".join(f"batch {b}: {scale * v:.5g} {unit}" for b, v in values.items())


def measure(
    executable: str,
    server: TritonServer,
    target: Target,
    served: ServedSettings,
    io_json: str | Path,
    settings: dict[str, Any],
    mode: str,
    output: str | Path,
    provenance: dict[str, str] | None = None,
    input_data: str | Path | None = None,
    expected: Expected | None = None,
) -> list[dict[str, Any]]:
    """One sweep (mode "offline" or "online"; settings: the perf section) of `target` against the
    running server, sent to served.model_name as served (its max_batch_size, 0: every request one
    whole sample, no -b, batch 1 in the rows; its instances shape the offline sweep). Writes the
    CSV whole at the end (COLUMNS, perf_analyzer's, deploysnake.usage's, then the rest); returns
    its rows. expected (deploysnake.underload.prepare): every point's answers are checked under load.

    Before the sweep, probe_latency at its smallest and largest batch sizes (perf.sizing probe, with
    input data) sizes each point's window (sized); the job then logs its plan (points, windows, about
    how long). Offline through shared memory the probe's server-side seconds (server_seconds) stand
    for a request's: the points do not pay the probe's gRPC copies of the tensors. perf.max_job_s
    (job_budget; 0: no bound, auto: AUTO_JOB_S) bounds the measuring: a point that would end past
    it is not measured, its row's status "left out" (Status.LEFT_OUT) with the reason; so is one
    that SweepStop leaves out (offline, with the probe: one whose predicted throughput cannot gain
    perf.stop_gain). The job logs what it left out at the end."""
    model_name, max_batch_size = served.model_name, served.max_batch_size
    io = json.loads(Path(io_json).read_text())
    load = replace(
        plan_load(io, settings, input_data, max_batch_size), verbose=True, expected=expected
    )
    if (
        mode == "offline"
        and settings["offline"].get("shared_memory", "none") != "none"
        and load.data
        and max_batch_size > 0
    ):
        # Output regions hold what the model returns for the data sent, measured, not guessed.
        per_sample = measured_output_bytes(server, model_name, io, load.data)
        if per_sample:
            log.info("outputs: at most %d bytes per sample (measured)", per_sample)
            load = replace(load, output_size=per_sample)
    described = {
        "instances": served.instances,
        "input_data": "dataloader" if load.data else "random",
        "input_shapes": input_shapes(input_data if load.shapes else load.data, io, max_batch_size),
    }
    points = sweep(mode, settings, served.instances, max_batch_size)
    probed: dict[int, float] = {}
    on_server: dict[int, float] = {}
    if settings.get("sizing", "probe") == "probe" and input_data and Path(input_data).is_file():
        ends = sorted({points[0].batch, max(p.batch for p in points)}) if points else []
        try:
            probed = probe_latency(
                server, model_name, io, input_data, ends, load.batched, on_server
            )
        except Exception as exc:  # the sweep's own points say why requests fail; size nothing here
            server.check_alive()
            log.warning("latency probe failed, windows as configured: %s", str(exc)[:500])
    shared = (
        mode == "offline"
        and settings["offline"].get("shared_memory", "none") != "none"
        and max_batch_size > 0
    )
    timing = (
        through_shared_memory(probed, on_server)
        if shared and load.data and on_server and on_server.keys() == probed.keys()
        else probed
    )
    planned = [(p, sized(settings, latency_at(timing, p.batch))) for p in points]
    estimates = [estimate_s(s, latency_at(timing, p.batch)) for p, s in planned]
    budget = job_budget(settings.get("max_job_s", 0), points, [e[0] for e in estimates], mode)
    plan = [
        f"plan ({mode}): {len(points)} point(s)",
        "probe "
        + (", ".join(f"batch {b}: {1000 * t:.1f} ms" for b, t in probed.items()) or "none"),
    ]
    if timing is not probed:
        plan[-1] += " (through shared memory " + _per_batch(timing, 1000.0, "ms") + ")"
    if mode == "offline" and timing:
        predicted = {
            b: predicted_throughput(timing, b) or 0.0 for b in sorted({p.batch for p in points})
        }
        plan.append("predicted " + _per_batch(predicted, 1.0, "infer/s"))
    plan += [
        f"windows {sorted({s['measurement_interval_ms'] for _, s in planned})} ms",
        f"about {sum(e[0] for e in estimates):.0f} s, at most {sum(e[1] for e in estimates):.0f} s "
        "for every point",
    ]
    if budget.seconds:
        plan.append(f"perf.max_job_s {settings.get('max_job_s')}: {budget.seconds:.0f} s")
    log.info("; ".join(plan))
    job_started = time.monotonic()
    stops = SweepStop(settings, (lambda b: predicted_throughput(timing, b)) if timing else None)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="deploysnake-perf-") as tmp:
        for k, (point, point_settings) in enumerate(planned, start=1):
            server.check_alive()
            spent = time.monotonic() - job_started
            reason = stops.reason(point, mode) or budget.reason(k - 1, spent)
            if reason:
                log.warning(
                    "point %d of %d (batch %d, concurrency %d) %s",
                    k,
                    len(points),
                    point.batch,
                    point.concurrency,
                    reason,
                )
                rows.append(
                    {
                        **target.columns(),
                        "mode": mode,
                        "batch": point.batch,
                        "concurrency": point.concurrency,
                        "status": Status.LEFT_OUT,
                        **described,
                        **(provenance or {}),
                        "reason": reason,
                    }
                )
                continue
            # Bound each call as plan_load does, from the point's own (sized) window.
            point_load = replace(
                load,
                timeout_s=60.0
                + 3
                * point_settings["measurement_interval_ms"]
                / 1000.0
                * int(point_settings["max_trials"]),
            )
            log.info(
                "point %d of %d (%s): batch %d, concurrency %d",
                k,
                len(points),
                mode,
                point.batch,
                point.concurrency,
            )
            started = time.monotonic()
            status, measured, text = measure_point(
                executable,
                model_name,
                server,
                point,
                point_settings,
                mode,
                Path(tmp) / f"point{k}.csv",
                point_load,
                target.device,
                budget.left_s(spent),
            )
            server.check_alive()
            stops.update(point, mode, status, measured)
            row = {
                **target.columns(),
                "mode": mode,
                "batch": point.batch,
                "concurrency": point.concurrency,
                "status": status,
                **measured,
                **described,
                **(provenance or {}),
            }
            if status == Status.FAILED:
                row.update(stage=f"perf_{mode}", reason=error_lines(text), log_excerpt=text[-2000:])
            rows.append(row)
            if status in (Status.OK, Status.DISTURBED):
                log.info(
                    "point %d of %d: %s%s infer/s, p99 %s us (%.1f s); server %s cores, client %s "
                    "cores, foreign %s cores, server peak %s MiB",
                    k,
                    len(points),
                    "DISTURBED " if status == Status.DISTURBED else "",
                    measured.get(Header.THROUGHPUT),
                    measured.get(Header.P99),
                    time.monotonic() - started,
                    measured.get("server_cpu"),
                    measured.get("client_cpu"),
                    measured.get("foreign_cpu"),
                    measured.get("server_peak_rss_mb"),
                )
            elif status == Status.FAILED:
                log.warning(
                    "%s/%s point %d of %d (batch %d, concurrency %d) cannot be measured, recorded as "
                    "failed: %s",
                    target.model,
                    target.format,
                    k,
                    len(points),
                    point.batch,
                    point.concurrency,
                    row["reason"],
                )
            else:
                log.warning(
                    "point %d of %d: unstable measurement, recorded as unstable:\n%s",
                    k,
                    len(points),
                    text[-1500:],
                )
        repeat_best(
            rows,
            int(settings.get("repeats", 0) or 0),
            lambda k, point, s: measure_point(
                executable,
                model_name,
                server,
                point,
                s,
                mode,
                Path(tmp) / f"repeat{k}.csv",
                replace(
                    load,
                    timeout_s=60.0
                    + 3 * s["measurement_interval_ms"] / 1000.0 * int(s["max_trials"]),
                ),
                target.device,
            ),
            dict(planned),
        )
        server.check_alive()
    left_out = [r for r in rows if r["status"] == Status.LEFT_OUT]
    log.info(
        "measured %d of %d point(s) in %.0f s%s",
        len(rows) - len(left_out),
        len(rows),
        time.monotonic() - job_started,
        "; left out (not measured, each row's reason says why): "
        + ", ".join(f"batch {r['batch']} concurrency {r['concurrency']}" for r in left_out)
        if left_out
        else "",
    )
    for row in rows:
        row.update(spread_columns(row))
    known = COLUMNS + PERF_ANALYZER_COLUMNS + USAGE_COLUMNS
    columns = known + [c for c in dict.fromkeys(k for r in rows for k in r) if c not in known]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(output)  # only a complete sweep becomes the output
    return rows
