"""The deployment gate: this run's summary.json against a baseline run's (config key baseline).

Per model x format x device both runs served, each figure is compared and judged twice: against its
threshold (config gate:) and against the two runs' own spread (summary.json's spread fields). A
figure fails only when it is worse than its threshold AND the difference is beyond the spread; a
difference past the threshold but within the spread is reported as "within noise". results/gate.json
holds every comparison; `failures_text` is what the run prints before it exits non-zero.

The noise of a comparison is the sum of both runs' relative spreads (each run's figure may sit at
either end of its band):
- infer/s: the wider of its recorded spread (an interval over repeats or windows) and
  perf_analyzer's stability band. A point is "ok" only when its last 3 windows agreed within
  --stability-percentage (max/min of their throughput and average latency within 1 + s;
  perf_analyzer's docs, "--stability-percentage" in docs/cli.md), and the figure is their merge;
  the summary's settings.perf_stability_percentage gives s.
- p99: the wider of its interval over repeats and the stability band plus the run's p95-to-p99 tail
  term (summary.p99_spread; the stability criterion holds the AVERAGE latency, and a p99 rests on a
  handful of requests).
- capacity: the search's bracket plus settings.capacity_stability_percentage (the rate at the
  boundary is itself a measurement within that band).
- accuracy: the numeric difference of the same data through two paths (served minus source).
A latency or throughput point measured beside foreign CPU load (its foreign_cpu above
settings["max_foreign_cpu"] cores in either run) is reported "not comparable", not judged: no band
of the run's own covers another tenant's load (on a loaded shared 2-core machine, the same model's
p99 at concurrency 1 came out several times apart in two runs, far past both runs' bands added).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .contracts import Status
from .errors import UserError

# a comparison's verdicts
OK = Status.OK
FAIL = "fail"
NOISE = "within noise"
NOT_COMPARABLE = "not comparable"


def _key(entry: Mapping[str, Any]) -> tuple[str, str, str]:
    return (entry["model"], entry["format"], entry["device"])


def _rel(spread: Mapping[str, Any] | None, fallback: float = 0.0) -> float:
    """A spread's relative half-width; `fallback` where none is recorded (never silently zero for a
    measured figure: the callers pass the run's stability band)."""
    value = (spread or {}).get("relative")
    return fallback if value is None else float(value)


def _stability(doc: Mapping[str, Any], key: str) -> float:
    """A summary's stability percentage setting (perf_ or capacity_) as a fraction."""
    default = 30.0 if key.startswith("capacity") else 20.0
    return float((doc.get("settings") or {}).get(key, default)) / 100.0


def _perf_noise(point: Mapping[str, Any] | None, stability: float) -> float:
    """A point's infer/s spread, never narrower than the stability band its "ok" guarantees: an
    interval from perf_analyzer's own three windows (perf.repeats 0) is narrower than the spread
    between runs (issue 32), so the wider of the recorded spread and the band."""
    return max(_rel((point or {}).get("spread"), stability), stability)


def _p99_noise(point: Mapping[str, Any], stability: float) -> float:
    """A point's p99 spread: the wider of its recorded p99_spread (an interval over repeats) and the
    stability band plus the tail term from its p95 (summary.p99_spread's rule)."""
    p95, p99 = point.get("p95_us"), point.get("p99_us")
    tail = max(0.0, (p99 - p95) / p99) if p95 is not None and p99 else 0.0
    return max(_rel(point.get("p99_spread"), 0.0), stability + tail)


def _judge(worse_by: float, limit: float, noise: float) -> str:
    """worse_by: how much worse (in the threshold's units); limit: the threshold; noise: spread."""
    if worse_by <= limit:
        return OK
    return FAIL if worse_by > noise else NOISE


def _row(
    key: tuple[str, str, str],
    figure: str,
    baseline: float | None,
    current: float | None,
    change: float | None,
    limit: float,
    noise: float,
    verdict: str,
    unit: str,
    note: str = "",
) -> dict[str, Any]:
    return {
        "model": key[0],
        "format": key[1],
        "device": key[2],
        "figure": figure,
        "baseline": baseline,
        "current": current,
        "change": change,
        "threshold": limit,
        "noise": noise,
        "unit": unit,
        "verdict": verdict,
        "note": note,
    }


def _foreign(points: list[Mapping[str, Any] | None], limit: float) -> str:
    """Why points measured beside foreign load are not judged ("" when none was)."""
    loads = [float(p["foreign_cpu"]) for p in points if p and p.get("foreign_cpu") is not None]
    if not loads or max(loads) <= limit:
        return ""
    return (
        f"measured beside {max(loads):.2f} cores of foreign CPU load (gate.max_foreign_cpu "
        f"{limit:g}): the machine's, not the model's"
    )


def _ratio_check(
    key: tuple[str, str, str],
    figure: str,
    base: float | None,
    cur: float | None,
    noise: float,
    min_ratio: float,
    note: str = "",
) -> dict[str, Any]:
    """A throughput-like figure (higher is better): fails below min_ratio x baseline beyond noise;
    not judged where `note` says why (foreign load)."""
    if not base or cur is None or note:
        ratio = cur / base if base and cur is not None else None
        return _row(key, figure, base, cur, ratio, min_ratio, noise, NOT_COMPARABLE, "ratio", note)
    ratio = cur / base
    verdict = _judge(1.0 - ratio, 1.0 - min_ratio, noise)
    return _row(key, figure, base, cur, ratio, min_ratio, noise, verdict, "ratio")


def compare(
    current: Mapping[str, Any], baseline: Mapping[str, Any], settings: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Every comparison of `current` with `baseline` (summary documents) under the gate settings
    (max_accuracy_drop, lower_is_better, max_p99_increase, min_throughput_ratio, missing_fails).

    Rows: model, format, device, figure (e.g. "accuracy: accuracy", "p99 at concurrency 2", "best
    online infer/s", "capacity req/s"), baseline and current values, change (metric units for
    accuracy, new/baseline ratio otherwise), threshold, noise (same units as change's distance from
    no change: the sum of both runs' spreads, see the module's docstring for each figure's spread)
    and verdict (ok, fail, within noise, not comparable)."""
    max_drop = float(settings.get("max_accuracy_drop", 0.01))
    lower = set(settings.get("lower_is_better") or [])
    max_p99 = float(settings.get("max_p99_increase", 0.25))
    min_ratio = float(settings.get("min_throughput_ratio", 0.8))
    max_foreign = float(settings.get("max_foreign_cpu", 0.25))
    b_perf, c_perf = (
        _stability(baseline, "perf_stability_percentage"),
        _stability(current, "perf_stability_percentage"),
    )
    b_cap, c_cap_stab = (
        _stability(baseline, "capacity_stability_percentage"),
        _stability(current, "capacity_stability_percentage"),
    )
    cur_entries = {_key(e): e for e in current["entries"] if e["device"] is not None}
    out: list[dict[str, Any]] = []
    for base in baseline["entries"]:
        if base["device"] is None:
            continue
        key = _key(base)
        cur = cur_entries.get(key)
        if cur is None or cur["correctness"]["passed"] is False:
            verdict = FAIL if settings.get("missing_fails", True) else NOT_COMPARABLE
            out.append(_row(key, "served", 1, 0, None, 0, 0, verdict, "served"))
            continue
        failed = [s for s, v in cur["served_stages"].items() if v == Status.FAILED]
        was_failed = [s for s, v in base["served_stages"].items() if v == Status.FAILED]
        for stage in failed:
            if stage not in was_failed:
                out.append(_row(key, f"{stage} failed", 1, 0, None, 0, 0, FAIL, "served"))
        cur_metrics = {m["metric"]: m for m in cur["accuracy"]}
        for m in base["accuracy"]:
            now = cur_metrics.get(m["metric"])
            figure = f"accuracy: {m['metric']}"
            if now is None or now["served"] is None or m["served"] is None:
                out.append(
                    _row(
                        key, figure, m["served"], None, None, max_drop, 0, NOT_COMPARABLE, "metric"
                    )
                )
                continue
            change = now["served"] - m["served"]
            drop = change if m["metric"] in lower else -change
            noise = _rel(m.get("spread")) + _rel(now.get("spread"))
            out.append(
                _row(
                    key,
                    figure,
                    m["served"],
                    now["served"],
                    change,
                    max_drop,
                    noise,
                    _judge(drop, max_drop, noise),
                    "metric",
                )
            )
        for name in ("offline_best", "online_best"):
            b, c = base[name], cur[name]
            noise = _perf_noise(b, b_perf) + _perf_noise(c, c_perf)
            label = f"best {name.split('_')[0]} infer/s"
            out.append(
                _ratio_check(
                    key,
                    label,
                    (b or {}).get("infer_per_s"),
                    (c or {}).get("infer_per_s"),
                    noise,
                    min_ratio,
                    _foreign([b, c], max_foreign),
                )
            )
        now_points = {
            (p["batch"], p["concurrency"]): p
            for p in cur["online_points"]
            if p["status"] == Status.OK
        }
        for p in base["online_points"]:
            q = now_points.get((p["batch"], p["concurrency"]))
            if p["status"] != Status.OK or q is None or not p["p99_us"] or q["p99_us"] is None:
                continue
            ratio = q["p99_us"] / p["p99_us"]
            noise = _p99_noise(p, b_perf) + _p99_noise(q, c_perf)
            note = _foreign([p, q], max_foreign)
            out.append(
                _row(
                    key,
                    f"p99 at concurrency {p['concurrency']}",
                    p["p99_us"],
                    q["p99_us"],
                    ratio,
                    1 + max_p99,
                    noise,
                    NOT_COMPARABLE if note else _judge(ratio - 1.0, max_p99, noise),
                    "ratio",
                    note,
                )
            )
        if base.get("capacity") and base["capacity"].get("rps"):
            c_cap = cur.get("capacity") or {}
            # the bracket (where the boundary lies between two rates) plus each boundary rate's
            # own stability band
            noise = (
                _rel(base["capacity"].get("spread"), 0.0)
                + b_cap
                + _rel(c_cap.get("spread"), 0.0)
                + c_cap_stab
            )
            out.append(
                _ratio_check(
                    key,
                    "capacity req/s",
                    base["capacity"]["rps"],
                    c_cap.get("rps") if cur.get("capacity") else None,
                    noise,
                    min_ratio,
                    _foreign([base["capacity"], c_cap], max_foreign),
                )
            )
    return out


def evaluate(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any] | None,
    settings: Mapping[str, Any],
    baseline_path: str = "",
) -> dict[str, Any]:
    """The gate document (results/gate.json): status passed, failed or "no baseline", the
    comparisons, the failed ones, and a note where the two runs' hardware differs."""
    if baseline is None:
        return {
            "status": Status.NO_BASELINE,
            "baseline": "",
            "settings": dict(settings),
            "comparisons": [],
            "failures": [],
            "notes": [],
        }
    rows = compare(current, baseline, settings)
    failures = [r for r in rows if r["verdict"] == FAIL]
    notes = []
    b_hw = baseline["provenance"].get("hardware") or {}
    c_hw = current["provenance"].get("hardware") or {}
    for device in sorted(set(b_hw) & set(c_hw)):
        if b_hw[device] != c_hw[device]:
            notes.append(
                f"{device}: the baseline ran on {b_hw[device]}, this run on {c_hw[device]}: "
                "latency and throughput differences may be the hardware's"
            )
    return {
        "status": Status.FAILED if failures else Status.PASSED,
        "baseline": baseline_path,
        "settings": dict(settings),
        "comparisons": rows,
        "failures": failures,
        "notes": notes,
    }


def describe(row: Mapping[str, Any]) -> str:
    """One comparison in words, e.g. "digits/onnx on cpu: accuracy: accuracy 0.95 -> 0.41
    (change -0.54, threshold 0.01, noise 0)"."""
    where = f"{row['model']}/{row['format']} on {row['device']}"
    if row["unit"] == "served":
        return f"{where}: {row['figure']} (served in the baseline, not now)"

    def n(v: Any) -> str:
        return "—" if v is None else f"{v:.4g}"

    change = "" if row["change"] is None else f"change {n(row['change'])}, "
    note = f"; {row['note']}" if row.get("note") else ""
    return (
        f"{where}: {row['figure']} {n(row['baseline'])} -> {n(row['current'])} "
        f"({change}threshold {n(row['threshold'])}, noise {n(row['noise'])}{note})"
    )


def failures_text(doc: Mapping[str, Any]) -> str:
    """The failed comparisons as one line each (empty when the gate passed)."""
    return "\n".join(describe(r) for r in doc.get("failures") or [])


def write(doc: Mapping[str, Any], output: str | Path) -> None:
    """Write the gate document as indented JSON."""
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(doc, indent=2) + "\n")


def check(gate_json: str | Path, report_html: str | Path, output: str | Path) -> None:
    """Write `output` when the gate in gate_json passed (or had no baseline); raise UserError naming
    every failed model and figure otherwise (the run then exits non-zero; the report exists)."""
    doc = json.loads(Path(gate_json).read_text())
    if doc["status"] == Status.FAILED:
        raise UserError(
            f"the gate failed against {doc['baseline']} ({len(doc['failures'])} figures; "
            f"the report {report_html} shows every comparison):\n" + failures_text(doc)
        )
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(f"{doc['status']}\n")
