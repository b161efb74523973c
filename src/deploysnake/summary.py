"""results/summary.json: one run's results per model x format x device, machine-readable.

The same inputs the report reads (correctness verdicts, accuracy and perf CSVs, capacity results,
tuning choices, environment), reduced to verdicts, accuracy, best points, capacity, cost, the
measurements' spread, the capacity plan and provenance. Its schema, with every field described, is
summary.schema.json beside this module (SCHEMA_VERSION); `validate` checks a document against it.
The gate of a later run (gate.py, config key baseline) reads it.
"""

from __future__ import annotations

import json
import math
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl
from jsonschema import Draft202012Validator

from .contracts import FIELDS, Header, Status, number
from .errors import UserError
from .measuring.capacity import cost_per_million
from .paths import target_of
from .report.coldstart import SUMMARY_FIELDS as COLD_START_FIELDS
from .report.coldstart import load as load_coldstart
from .report.frames import capacity_failures, served_failures, without_failure_records
from .report.load import accuracy as load_accuracy
from .report.load import capacity as load_capacity
from .report.load import correctness as load_correctness
from .report.load import native as load_native
from .report.load import perf as load_perf
from .spread import (
    Spread,
    at_figure,
    capacity_spread,
    interval_spread,
    of_columns,
    p99_spread,
    ratio,
    ratio_fields,
    stability_spread,
)

# 2: points carry p99_spread, requests, p99_enough, p99_margin and server_batch, and their spread
# may be an interval (method interval); a version-1 file still validates (the gate reads either).
SCHEMA_VERSION = 2
SCHEMA_PATH = Path(__file__).with_name("summary.schema.json")
STAGES = ("accuracy", "perf_offline", "perf_online", "capacity")
Key = tuple[str, str, str]


def load_schema() -> dict[str, Any]:
    """The summary's JSON Schema (draft 2020-12) as a dict."""
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


def validate(doc: Mapping[str, Any], where: str = "summary") -> None:
    """Raise UserError naming the first field of `doc` that does not follow the schema."""
    errors = sorted(
        Draft202012Validator(load_schema()).iter_errors(doc), key=lambda e: list(e.path)
    )
    if errors:
        first = errors[0]
        field = "/".join(str(p) for p in first.path) or "(top level)"
        raise UserError(
            f"{where} does not follow summary schema version {SCHEMA_VERSION} at {field}: "
            f"{first.message}; give a summary.json written by deploysnake"
        )


def read(path: str | Path) -> dict[str, Any]:
    """A summary.json, validated; or the summary inside a tar archive (a release archive,
    results/release/<device>.tar.gz: the member <folder>/summary.json or summary.json). Raises
    UserError for a missing, unreadable or invalid file, or an archive without exactly one summary."""
    path = Path(path)
    where = str(path)
    try:
        if path.is_file() and tarfile.is_tarfile(path):
            with tarfile.open(path) as tar:
                found = [
                    m
                    for m in tar.getmembers()
                    if m.isfile()
                    and m.name.lstrip("./").count("/") <= 1
                    and Path(m.name).name == "summary.json"
                ]
                if len(found) != 1:
                    raise UserError(
                        f"the archive {path} holds {len(found)} summary.json files at its top "
                        "(one expected); name a release archive (results/release/<device>.tar.gz) "
                        "or a run's results/summary.json"
                    )
                where = f"{path}:{found[0].name}"
                handle = tar.extractfile(found[0])
                assert handle is not None  # a regular file member
                text = handle.read().decode("utf-8")
        else:
            text = path.read_text()
        doc: dict[str, Any] = json.loads(text)
    except (OSError, EOFError, tarfile.TarError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read the summary {path}: {exc}; check the path") from exc
    validate(doc, where)
    return doc


def for_device(doc: Mapping[str, Any], device: str) -> dict[str, Any]:
    """The summary reduced to one device's entries (what that device's release archive carries):
    the entries served on `device`; formats that failed correctness (device null) stay."""
    return {
        **doc,
        "entries": [e for e in doc["entries"] if e["device"] in (device, None)],
    }


def _i(value: Any) -> int | None:
    out = number(value)
    return None if out is None else int(out)


def _point(row: Mapping[str, Any], percentage: float) -> dict[str, Any]:
    infer = number(row.get(Header.THROUGHPUT))
    ok = row.get("status") == Status.OK
    enough = row.get("p99_enough")
    p95, p99 = number(row.get(Header.P95)), number(row.get(Header.P99))
    return {
        "batch": _i(row.get("batch")) or 0,
        "concurrency": _i(row.get("concurrency")) or 0,
        # perf_analyzer's columns by their field names: infer_per_s, p50_us, p95_us, p99_us
        **{
            FIELDS[h]: number(row.get(h))
            for h in (Header.THROUGHPUT, Header.P50, Header.P95, Header.P99)
        },
        "status": str(row.get("status") or ""),
        # cores of other processes' CPU load during the point's window (deploysnake.usage)
        "foreign_cpu": number(row.get("foreign_cpu")),
        # the interval of repeated runs or windows where measured, else the stability criterion
        "spread": (interval_spread(row, "infer_s") or stability_spread(infer, percentage))
        if ok
        else None,
        # the p99's interval over repeats where measured, else the stability band plus the tail
        "p99_spread": (interval_spread(row, "p99") or p99_spread(p95, p99, percentage))
        if ok
        else None,
        "requests": _i(row.get("requests")),
        "p99_enough": None if enough in (None, "") else str(enough) == "True",
        "p99_margin": number(row.get("p99_margin")),
        "server_batch": number(row.get("server_batch")),
    }


def _best(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [p for p in points if p["status"] == Status.OK and p["infer_per_s"] is not None]
    return max(ok, key=lambda p: p["infer_per_s"]) if ok else None


def _with_native(
    point: dict[str, Any] | None,
    native_rate: Mapping[tuple[Any, ...], float],
    key: Key,
    native_spread: Mapping[tuple[Any, ...], Spread] | None = None,
) -> dict[str, Any] | None:
    """The best offline point with served_over_native (its infer/s over the in-process infer/s at
    its batch, where both are measured; never above 1 as a figure: the report's rule, "baseline
    suspect" or within the spread there) and that ratio's 95 % interval (deploysnake.spread.ratio:
    the served figure's windows or runs against the in-process run's sub-windows, native_spread;
    a side without a spread counts as exact, and with neither the spread is null)."""
    if point is None:
        return None
    base = native_rate.get((*key, point["batch"]))
    if not base or point["infer_per_s"] is None or point["infer_per_s"] > base:
        return {**point, "served_over_native": None, "served_over_native_spread": None}
    measured = point.get("spread") or {}
    served = (
        Spread(int(measured["n"]), 0.0, measured.get("cv"), 0.0, 0.0)
        if measured.get("method") == "interval" and measured.get("n")
        else None
    )
    r = ratio(
        at_figure(point["infer_per_s"], served),
        at_figure(base, (native_spread or {}).get((*key, point["batch"]))),
    )
    return {
        **point,
        "served_over_native": point["infer_per_s"] / base,
        "served_over_native_spread": ratio_fields(r) if r.df is not None else None,
    }


def plan(
    capacity: Mapping[str, Any] | None, settings: Mapping[str, Any], per_hour: float | None
) -> dict[str, Any] | None:
    """The servers (scale replicas) or model instances (scale instances) that serve
    settings["target_rps"] requests/s at the SLA, from the capacity less its spread (the headroom):
    usable = rps / (1 + spread.relative); replicas = ceil(target / usable), each with the measured
    instances; or instances = ceil(target / (usable / measured instances)) on one server. Cost per
    month: replicas x per_hour x hours_per_month. None without a target or a capacity."""
    target = float(settings.get("target_rps") or 0)
    if not target or not capacity or not capacity.get("rps"):
        return None
    spread = (capacity.get("spread") or {}).get("relative") or 0.0
    usable = float(capacity["rps"]) / (1.0 + float(spread))
    measured = int(capacity.get("instances") or 1)
    scale = str(settings.get("scale") or "replicas")
    if scale == "instances":
        replicas, instances = 1, max(1, math.ceil(target * measured / usable))
    else:
        replicas, instances = max(1, math.ceil(target / usable)), measured
    hours = float(settings.get("hours_per_month") or 730)
    return {
        "target_rps": target,
        "scale": scale,
        "usable_rps": usable,
        "replicas": replicas,
        "instances": instances,
        "cost_per_month": None if per_hour is None else replicas * per_hour * hours,
    }


def _cold_start(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The entry's cold-start figures (report.coldstart; ms, MiB), null where not measured or
    failed."""
    if not row or row.get("status") != Status.OK:
        return None
    return {k: row.get(k) for k in COLD_START_FIELDS}


def _instances(config: Mapping[str, Any], device: str, chosen: Mapping[str, Any] | None) -> int:
    triton = (chosen or {}).get("triton") or config.get("triton") or {}
    counts = triton.get("instances") or {}
    count = counts.get(device, counts.get("default"))
    return int(count) if count else 1


def build(
    config: Mapping[str, Any],
    correctness: Iterable[Path],
    accuracy: Iterable[Path],
    offline: Iterable[Path],
    online: Iterable[Path],
    capacity: Iterable[Path],
    tuning: Iterable[Path],
    environment: Iterable[Path],
    native: Iterable[Path] = (),
) -> dict[str, Any]:
    """The summary document (see summary.schema.json) of one run's result files; native: the
    in-process baseline's CSVs (the best offline point's served/native and its interval)."""
    perf = config.get("perf") or {}
    stab = float(perf.get("stability_percentage", 20))
    cap_stab = float((perf.get("capacity") or {}).get("stability_percentage", 30))
    per_hour = {k: float(v) for k, v in ((config.get("cost") or {}).get("per_hour") or {}).items()}
    plan_settings = config.get("plan") or {}

    _, corr = load_correctness(correctness)
    accuracy = list(accuracy)
    acc, off, on = load_accuracy(accuracy), load_perf(offline), load_perf(online)
    caps = load_capacity(list(capacity))
    cold = {(r["model"], r["format"], r["device"]): r for r in load_coldstart(accuracy)}
    nat = load_native(native)
    native_rate = {
        (r["model"], r["format"], r["device"], int(r["batch"])): r["throughput_infer_per_s"]
        for r in (
            nat.filter(pl.col("status").fill_null(Status.OK) == Status.OK).iter_rows(named=True)
            if nat.height and "throughput_infer_per_s" in nat.columns
            else []
        )
        if r["throughput_infer_per_s"] and r["batch"] is not None
    }
    # the in-process run's sub-windows (native.subwindow_throughputs): served/native's interval
    native_spread: dict[tuple[Any, ...], Spread] = {}
    for row in nat.to_dicts() if nat.height and "infer_s_n" in nat.columns else []:
        measured = of_columns(row)
        if measured is not None and row["batch"] is not None:
            native_spread[(row["model"], row["format"], row["device"], int(row["batch"]))] = (
                measured
            )
    failures = served_failures(
        {
            "accuracy": acc,
            "perf_offline": off,
            "perf_online": on,
            "capacity": capacity_failures(caps),
        }
    )
    frames = {"accuracy": acc, "perf_offline": off, "perf_online": on}
    chosen: dict[Key, dict[str, Any]] = {}
    for p in map(Path, tuning):
        if p.name == "chosen.json" and p.is_file():
            target = target_of(p)  # results/tuning/<model>/<format>/<device>/chosen.json
            chosen[(target.model, target.format, target.device)] = json.loads(p.read_text())

    keys: set[Key] = set()
    for frame in frames.values():
        if frame.height:
            keys |= {
                (r[0], r[1], r[2]) for r in frame.select("model", "format", "device").iter_rows()
            }
    keys |= {(r["model"], r["format"], r["device"]) for r, _ in caps}
    verdicts = {(r["model"], r["format"]): r for r in corr.iter_rows(named=True)}

    def rows(frame: pl.DataFrame, key: Key) -> list[dict[str, Any]]:
        if not frame.height:
            return []
        return frame.filter(
            (pl.col("model") == key[0])
            & (pl.col("format") == key[1])
            & (pl.col("device") == key[2])
        ).to_dicts()

    entries: list[dict[str, Any]] = []
    for key in sorted(keys, key=lambda k: (k[0], k[1], k[2] or "")):
        model, fmt, device = key
        verdict = verdicts.get((model, fmt))
        stages = {}
        for stage, frame in frames.items():
            found = rows(frame, key)
            stages[stage] = (
                Status.NOT_RUN
                if not found
                else Status.FAILED
                if any(r.get("status") == Status.FAILED for r in found)
                else Status.OK
            )
        cap_result, cap_rows = next(
            ((r, f) for r, f in caps if (r["model"], r["format"], r["device"]) == key),
            (None, pl.DataFrame()),
        )
        stages["capacity"] = (
            Status.NOT_RUN
            if cap_result is None
            else Status.FAILED
            if cap_result["status"] == Status.FAILED
            else Status.OK
        )
        key_failures = [
            {"stage": f["stage"], "where": f["where"], "reason": f["reason"]}
            for f in failures.iter_rows(named=True)
            if (f["model"], f["format"], f["device"]) == key
        ]
        metrics = [
            {
                "metric": str(r["metric"]),
                "source": number(r.get("source")),
                "exported": number(r.get("exported")),
                "served": number(r.get("served")),
                "samples": number(r.get("samples")),
                # the same data through two paths: their difference is the figure's numeric noise
                "spread": {
                    "method": "numeric",
                    "relative": abs(number(r.get("served_minus_source")) or 0.0),
                },
            }
            for r in rows(without_failure_records(acc, "metric"), key)
            if r.get("metric")
        ]
        off_points = [_point(r, stab) for r in rows(without_failure_records(off, "batch"), key)]
        on_points = sorted(
            (_point(r, stab) for r in rows(without_failure_records(on, "batch"), key)),
            key=lambda p: (p["batch"], p["concurrency"]),
        )
        pick = chosen.get(key)
        cap: dict[str, Any] | None = None
        if cap_result is not None:
            cap = {
                "status": str(cap_result["status"]),
                "rps": number(cap_result.get("capacity_rps")),
                "infer_per_s": number(cap_result.get("capacity_infer_per_s")),
                "batch": _i(cap_result.get("batch")),
                "p50_us": number(cap_result.get("p50_us")),
                "p99_us": number(cap_result.get("p99_us")),
                "p99_budget_ms": float(cap_result.get("p99_budget_ms") or 0),
                "upper_rps": number(cap_result.get("upper_rate")),
                "instances": _instances(config, device, pick),
                "spread": capacity_spread(cap_result, float(cap_result.get("resolution") or 0.1)),
                # the most foreign CPU load (cores) any rate of the search saw
                "foreign_cpu": (
                    number(cap_rows["foreign_cpu"].cast(pl.Float64, strict=False).max())
                    if "foreign_cpu" in cap_rows.columns and cap_rows.height
                    else None
                ),
            }
        price = per_hour.get(device)
        side = None
        if pick and pick.get("side_by_side") and pick.get("trial") in pick["side_by_side"]:
            m = pick["side_by_side"][pick["trial"]]
            side = {
                "trial": pick["trial"],
                "throughput": m.get("throughput"),
                "p99_us": m.get("p99_us"),
                "spread": {
                    "method": "rounds",
                    "relative": (
                        (m["max"] - m["min"]) / 2 / m["throughput"]
                        if m.get("throughput") and m.get("max") is not None
                        else None
                    ),
                    "low": m.get("min"),
                    "high": m.get("max"),
                    "n": m.get("stable_rounds"),
                },
                # tuned over untuned, its 95 % interval over the rounds (tuning.gain)
                "over_untuned": pick.get("over_untuned"),
            }
        entries.append(
            {
                "model": model,
                "format": fmt,
                "device": device,
                "correctness": {
                    "passed": None if verdict is None else bool(verdict["passed"]),
                    "reason": "" if verdict is None else str(verdict["reason"] or ""),
                },
                "served_stages": stages,
                "failures": key_failures,
                "accuracy": metrics,
                "offline_best": _with_native(_best(off_points), native_rate, key, native_spread),
                "online_best": _best(on_points),
                "online_points": on_points,
                "side_by_side": side,
                "capacity": cap,
                "cost": {
                    "per_hour": price,
                    "per_million_inferences": cost_per_million(
                        number(cap["infer_per_s"]) if cap else None, per_hour, device
                    ),
                },
                "plan": plan(cap, plan_settings, price),
                "cold_start": _cold_start(cold.get(key)),
            }
        )
    # formats that failed correctness were never served: one entry each, no device
    for (model, fmt), verdict in sorted(verdicts.items()):
        if not verdict["passed"]:
            entries.append(
                {
                    "model": model,
                    "format": fmt,
                    "device": None,
                    "correctness": {"passed": False, "reason": str(verdict["reason"] or "")},
                    "served_stages": dict.fromkeys(STAGES, Status.NOT_RUN),
                    "failures": [],
                    "accuracy": [],
                    "offline_best": None,
                    "online_best": None,
                    "online_points": [],
                    "side_by_side": None,
                    "capacity": None,
                    "cost": {"per_hour": None, "per_million_inferences": None},
                    "plan": None,
                    "cold_start": None,
                }
            )

    envs = [json.loads(Path(p).read_text()) for p in environment]
    prov = [f for f in (acc, off, on) if f.height]

    def distinct(col: str) -> list[str]:
        return sorted(
            {str(v) for f in prov if col in f.columns for v in f[col].drop_nulls().to_list() if v}
        )

    hardware: dict[str, str] = {}
    for f in prov:
        if "hardware" in f.columns:
            for r in f.select("device", "hardware").drop_nulls().unique().iter_rows():
                hardware.setdefault(str(r[0]), str(r[1]))
    env = envs[0] if envs else {}
    return {
        "schema_version": SCHEMA_VERSION,
        "provenance": {
            "deploysnake": env.get("deploysnake"),
            "git_commit": env.get("git_commit"),
            "config_hashes": distinct("config_hash"),
            "code_versions": distinct("code_version"),
            "hardware": hardware,
            "packages": distinct("packages"),
        },
        "settings": {
            "p99_budget_ms": float((config.get("selection") or {}).get("p99_budget_ms", 10)),
            "capacity_p99_budget_ms": float((perf.get("capacity") or {}).get("p99_budget_ms", 10)),
            "perf_stability_percentage": stab,
            "capacity_stability_percentage": cap_stab,
            "cost_per_hour": per_hour,
        },
        "entries": entries,
    }


def planned_instances(path: str | Path, device: str) -> dict[tuple[str, str], int]:
    """(model, format) -> the instance count the plan (scale instances) asks for on `device`,
    from a summary.json; formats without a plan are absent."""
    doc = read(path)
    return {
        (e["model"], e["format"]): int(e["plan"]["instances"])
        for e in doc["entries"]
        if e["device"] == device and e.get("plan") and e["plan"]["scale"] == "instances"
    }


def write(doc: Mapping[str, Any], output: str | Path) -> None:
    """Validate `doc` against the schema and write it as indented JSON."""
    validate(doc)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
