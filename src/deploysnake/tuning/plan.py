"""A search's rounds and its choice: the strategies by name (one module each, as Model Analyzer's
config generators), a round's plan from the trials measured before it, the shortlist the side by side
measures again, and the chosen configuration."""

from __future__ import annotations

import csv
import json
import logging
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..contracts import Status
from ..spread import Spread, at_figure, ratio, spread
from .brute_force import propose as brute_force
from .coordinate import propose as coordinate
from .hill_climb import propose as hill_climb
from .joint import propose as joint
from .restarts import propose as restarts
from .space import full_space, grid, naive, newcomer, parse_trial, trial_id, triton_settings
from .state import TRIAL_COLUMNS, SearchState, incumbent, ranked, read_trials

log = logging.getLogger(__name__)

# Strategy name (config tuning.strategy) -> its round's proposals.
STRATEGIES: dict[str, Callable[[SearchState], list[dict[str, Any]]]] = {
    "joint": joint,
    "restarts": restarts,
    "coordinate": coordinate,
    "hill_climb": hill_climb,
    "brute_force": brute_force,
}


Strategy = Callable[[SearchState], list[dict[str, Any]]]


def propose(
    strategy: str | Strategy,
    space: dict[str, list[Any]],
    start: dict[str, Any],
    rows: list[dict[str, Any]],
    round_no: int,
    budget_us: float,
    min_throughput: float,
    fmt: str | None = None,
) -> list[dict[str, Any]]:
    """The trials of one round of `strategy` (a STRATEGIES name, or a strategy's propose function):
    never one already measured, none twice. Raises KeyError for an unknown strategy name."""
    state = SearchState(full_space(space), start, rows, round_no, budget_us, min_throughput, fmt)
    unique: dict[str, dict[str, Any]] = {}
    for trial in (STRATEGIES[strategy] if isinstance(strategy, str) else strategy)(state):
        unique.setdefault(trial_id(trial), trial)
    return [t for k, t in unique.items() if k not in state.done]


def plan_round(
    settings: dict[str, Any],
    triton: dict[str, Any],
    device: str,
    round_no: int,
    trial_csvs: list[str],
    output: str | Path,
    fmt: str | None = None,
) -> dict[str, Any]:
    """Write round N's plan from every trial measured in rounds before it (trial_csvs)."""
    rows = read_trials(trial_csvs)
    start = naive(triton, device, settings["space"], fmt)
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
            fmt,
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


def shortlist(
    settings: dict[str, Any],
    triton: dict[str, Any],
    device: str,
    trial_csvs: list[str],
    fmt: str | None = None,
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
    untuned = trial_id(naive(triton, device, settings["space"], fmt))
    return list(dict.fromkeys([*best, untuned, newcomer()]))


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
            # each stable round's throughput, for the tuned/untuned ratio's interval
            "samples": [t for t, _ in v],
        }
        for trial, v in seen.items()
    }


def gain(side: dict[str, dict[str, Any]], trial: str, untuned: str) -> dict[str, Any] | None:
    """Tuned over untuned from the side by side (summarize_side_by_side): value, the ratio of the
    two medians (the report's figure), and its 95 % interval from the rounds' repeats and CVs
    (deploysnake.spread.ratio: delta method on the log ratio, Welch-Satterthwaite degrees of
    freedom) with each side's rounds (n, n_den) and the CV of one measured ratio; low and high
    None where neither side has two stable rounds. None where either has no stable round, or the
    side by side predates its samples."""
    a, b = side.get(trial, {}), side.get(untuned, {})
    if (
        not a.get("throughput")
        or not b.get("throughput")
        or "samples" not in a
        or "samples" not in b
    ):
        return None

    def measured(samples: list[float]) -> Spread | None:
        return spread(samples) if len(samples) >= 2 else None

    r = ratio(
        at_figure(a["throughput"], measured(a["samples"])),
        at_figure(b["throughput"], measured(b["samples"])),
    )
    return {
        "value": r.value,
        "low": r.low if r.df is not None else None,
        "high": r.high if r.df is not None else None,
        "n": r.n,
        "n_den": r.n_den,
        "cv": r.cv,
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
    fmt: str | None = None,
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
    start = trial_id(naive(triton, device, settings["space"], fmt))
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
        "grid_size": len(grid(settings["space"], fmt)),
        "strategy": settings["strategy"],
        "naive": start,
        "naive_throughput": naive_row["throughput"] if naive_row else None,
        # tuned over untuned with its 95 % interval over the side by side's rounds
        "over_untuned": gain(side, best["trial"], start) if side and best else None,
        "newcomer": newcomer(),
        "newcomer_throughput": side.get(newcomer(), {}).get("throughput"),
        # Nothing meets the constraints: serve the closest trial, and say so everywhere.
        "triton": triton_settings(triton, parse_trial(best["trial"]), device) if best else triton,
    }
    if io_json:  # the config.pbtxt a production Triton gets (deploy/), for the report
        from google.protobuf import text_format

        from ..repository import build_config, triton_model_name

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
