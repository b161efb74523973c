"""Tuning: the search logic on its own, and real searches through the workflow on a tiny space (real
tritonserver and perf_analyzer): brute force end to end, an interrupted search that resumes without
measuring a trial twice, and a budget that no configuration meets."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploysnake import tuning
from deploysnake.contracts import Target

from .browser import chart_summary, chromium_available, render_in_chromium
from .conftest import ROOT, snakemake

SPACE = {
    "max_batch_size": [16, 64, 256],
    "dynamic_batching": [False, True],
    "max_queue_delay_us": [0, 100, 1000],
    "preferred_batch_sizes": ["none", "max"],
    "instances": [1, 2],
    "runtime_threads": [1, 2],
}


def test_trial_ids_round_trip_and_the_grid_has_no_duplicates() -> None:
    trials = tuning.grid(SPACE)
    # without dynamic batching, delay and preferred sizes collapse: 3*2*2 off + 3*3*2*2*2 on
    assert len(trials) == 3 * 2 * 2 + 3 * 3 * 2 * 2 * 2
    ids = [tuning.trial_id(t) for t in trials]
    assert len(set(ids)) == len(ids)
    assert all(tuning.trial_id(tuning.parse_trial(i)) == i for i in ids)
    with pytest.raises(ValueError, match="not a trial id"):
        tuning.parse_trial("mbs~16_db~1")


def test_hill_climbing_steps_from_the_best_and_never_repeats_a_trial() -> None:
    start = tuning.naive(
        {
            "max_batch_size": 200,
            "dynamic_batching": {"enabled": True, "max_queue_delay_us": 80},
            "instances": {"cpu": 1},
            "runtime_threads": 0,
        },
        "cpu",
        SPACE,
    )
    assert tuning.trial_id(start) == "mbs~256_db~1_delay~100_pref~none_inst~1_thr~1"
    first = tuning.propose("hill_climb", SPACE, start, [], 0, 10_000, 0)
    assert first[0] == start and all(
        sum(t[d] != start[d] for d in tuning.DIMENSIONS) <= 2 for t in first[1:]
    )
    # the best so far: two instances; the next round steps from it and skips what was measured
    rows = [
        {"trial": tuning.trial_id(t), "status": "ok", "throughput": 100.0, "p99_us": 5000.0}
        for t in first
    ]
    best = next(r for r in rows if "inst~2" in r["trial"])
    best["throughput"] = 500.0
    second = tuning.propose("hill_climb", SPACE, start, rows, 1, 10_000, 0)
    measured = {r["trial"] for r in rows}
    assert second and not measured & {tuning.trial_id(t) for t in second}
    assert all(
        t["instances"] == 2
        or t == tuning.canonical({**tuning.parse_trial(best["trial"]), "instances": 1})
        for t in second
    )
    assert tuning.propose("brute_force", SPACE, start, rows, 1, 10_000, 0) == []


def search(strategy: str, throughput: Any, max_rounds: int) -> list[dict[str, Any]]:
    """The rounds as the workflow runs them (each planned from every earlier trial), on a made-up
    throughput function of the configuration; the rows of every trial measured."""
    start = tuning.naive(
        {
            "max_batch_size": 16,
            "dynamic_batching": {"enabled": False},
            "instances": {"cpu": 1},
            "runtime_threads": 1,
        },
        "cpu",
        SPACE,
    )
    rows: list[dict[str, Any]] = []
    for round_no in range(max_rounds):
        trials = tuning.propose(strategy, SPACE, start, rows, round_no, 10_000, 0)
        if not trials:
            break
        rows += [
            {
                "trial": tuning.trial_id(t),
                "status": "ok",
                "throughput": throughput(t),
                "p99_us": 1000.0,
            }
            for t in trials
        ]
    return rows


def separable(t: dict[str, Any]) -> float:
    """Each setting adds its own share: the best is every dimension's best option."""
    return (
        1000.0 * t["dynamic_batching"]
        + 300.0 * t["instances"]
        + 200.0 * t["runtime_threads"]
        + t["max_batch_size"]
        + (
            t["max_queue_delay_us"] / 10 + 50.0 * (t["preferred_batch_sizes"] == "max")
            if t["dynamic_batching"]
            else 0.0
        )
    )


def test_coordinate_search_finds_the_best_of_a_separable_space_in_one_pass_of_sweeps() -> None:
    rows = search("coordinate", separable, max_rounds=len(SPACE))  # one pass: a round a dimension
    ids = [r["trial"] for r in rows]
    assert len(ids) == len(set(ids))  # never a trial twice
    best = max(tuning.grid(SPACE), key=separable)
    assert max(rows, key=lambda r: r["throughput"])["trial"] == tuning.trial_id(best)
    # one pass: the start, then each dimension's other options (6 + 1*5 - ... see SPACE)
    assert len(rows) == 1 + sum(len(v) - 1 for v in SPACE.values()) < len(tuning.grid(SPACE)) / 5
    # more rounds confirm the optimum: sweeps around the best find nothing better, then the search ends
    longer = search("coordinate", separable, max_rounds=50)
    assert max(r["throughput"] for r in longer) == separable(best) and len(longer) < len(
        tuning.grid(SPACE)
    )


def test_coordinate_search_skips_the_sweeps_that_mean_nothing_without_dynamic_batching() -> None:
    # dynamic batching loses: queue delay and preferred sizes are never swept; their rounds pass to
    # the next dimension, so the pass ends in round 3 and rounds 4-5 start the next pass around the
    # best (dynamic batching, then instances)
    rows = search(
        "coordinate",
        lambda t: separable(t) - 2000.0 * t["dynamic_batching"],
        max_rounds=len(SPACE),
    )
    trials = [tuning.parse_trial(r["trial"]) for r in rows]
    assert {(t["max_queue_delay_us"], t["preferred_batch_sizes"]) for t in trials} == {(0, "none")}
    assert (
        len(rows) == 1 + 1 + 1 + 1 + 2 + 1 + 1
        and trials[-2]["dynamic_batching"]
        and trials[-1]["instances"] == 1
    )
    assert all(t["max_batch_size"] == 256 for t in trials[-2:])


def test_the_incumbent_respects_budget_and_minimum_or_is_the_closest() -> None:
    rows = [
        {"trial": "a", "status": "ok", "throughput": 900.0, "p99_us": 20_000.0},
        {"trial": "b", "status": "ok", "throughput": 500.0, "p99_us": 8_000.0},
        {"trial": "c", "status": "ok", "throughput": 300.0, "p99_us": 2_000.0},
        {"trial": "d", "status": "unstable", "throughput": None, "p99_us": None},
    ]
    assert tuning.incumbent(rows, 10_000, 0) == (rows[1], True)
    assert tuning.incumbent(rows, 10_000, 600) == (
        rows[2],
        False,
    )  # none reaches 600/s within budget: the closest
    assert tuning.incumbent(rows, 1_000, 0) == (rows[2], False)
    assert tuning.incumbent(rows[3:], 1_000, 0) == (None, False)


def test_the_side_by_side_decides_between_the_best_trials_and_the_untuned(tmp_path: Path) -> None:
    """The search's best trial (one lucky window) loses to the runner-up measured again in
    alternation: the choice, the served settings and the numbers follow the side by side."""
    import csv

    triton = {
        "max_batch_size": 16,
        "dynamic_batching": {"enabled": False},
        "instances": {"cpu": 1},
        "runtime_threads": 1,
    }
    settings = {
        "strategy": "brute_force",
        "space": SPACE,
        "p99_budget_ms": 10,
        "min_throughput": 0,
        "side_by_side_candidates": 2,
    }
    untuned = tuning.trial_id(tuning.naive(triton, "cpu", SPACE))
    lucky, steady, slow = [t for t in map(tuning.trial_id, tuning.grid(SPACE)) if t != untuned][:3]

    def write(path: Path, columns: list[str], rows: list[dict]) -> Path:
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        return path

    numbers = {lucky: 5000.0, steady: 4000.0, slow: 1000.0, untuned: 2000.0}
    csvs = [
        write(
            tmp_path / f"{t}.csv",
            tuning.TRIAL_COLUMNS,
            [{"trial": t, "status": "ok", "throughput": v, "p99_us": 900}],
        )
        for t, v in numbers.items()
    ]
    newcomer = tuning.newcomer()  # seed 003's "before": measured beside them, never chosen
    assert tuning.shortlist(settings, triton, "cpu", csvs) == [lucky, steady, untuned, newcomer]
    again = [
        (lucky, 3100.0),
        (steady, 3900.0),
        (untuned, 2100.0),
        (steady, 4100.0),
        (untuned, 1900.0),
        (lucky, 2900.0),
        (newcomer, 9000.0),  # faster than all (say, at a batch the others cannot run): not chosen
        (newcomer, 9000.0),
    ]
    side = write(
        tmp_path / "side.csv",
        tuning.SIDE_BY_SIDE_COLUMNS,
        [
            {"trial": t, "round": k // 3, "status": "ok", "throughput": v, "p99_us": 800}
            for k, (t, v) in enumerate(again)
        ],
    )
    chosen = tuning.choose(
        settings,
        triton,
        "digits",
        "cpu",
        [],
        csvs,
        tmp_path / "chosen.json",
        tmp_path / "trials.csv",
        None,
        side,
    )
    assert (
        chosen["trial"],
        chosen["throughput"],
        chosen["measured_by"],
        chosen["search_best"],
    ) == (steady, 4000.0, "side_by_side", lucky)
    assert (
        chosen["side_by_side"][lucky]["throughput"] == 3000.0
        and chosen["side_by_side_measurements"] == 8
    )
    assert (chosen["newcomer"], chosen["newcomer_throughput"]) == (newcomer, 9000.0)
    assert chosen["triton"] == tuning.triton_settings(triton, tuning.parse_trial(steady), "cpu")
    # without a side by side, the search's best trial as measured
    assert (
        tuning.choose(
            settings, triton, "digits", "cpu", [], csvs, tmp_path / "c2.json", tmp_path / "t2.csv"
        )["trial"]
        == lucky
    )


def test_an_offline_trial_keeps_every_instance_busy(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    """Offline, a trial runs its largest batch within batch_range with two requests per instance in
    flight, through the real server and perf_analyzer."""
    from deploysnake import server
    from deploysnake.configuration import validate

    config = validate(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    perf = {k: v for k, v in config["perf"].items() if k not in ("offline", "online")} | {
        "measurement_interval_ms": 300,
        "stability_percentage": 50,
    }
    settings = {"mode": "offline", "concurrency": 16, "batch_range": [1, 32]}
    trial = tuning.trial_id(
        {
            "max_batch_size": 64,
            "dynamic_batching": False,
            "max_queue_delay_us": 0,
            "preferred_batch_sizes": "none",
            "instances": 2,
            "runtime_threads": 1,
        }
    )
    flavour = server.locate("bundled", "deploysnake").flavour
    row = tuning.run_trial(
        Target("digits", "onnx", "cpu"),
        exported["onnx"],
        exported["onnx/io"],
        config["triton"],
        flavour,
        perf,
        settings,
        trial,
        tmp_path / "trial.csv",
        None,
        tmp_path / "server.log",
    )
    # disturbed: other work on the machine beside the test (its figures are kept, never ranked)
    assert (row["batch"], row["concurrency"]) == (32, 4) and row["status"] in ("ok", "disturbed")
    assert float(row["throughput"]) > 0 and float(row["server_cpu"]) > 0
    assert tuning.read_trials([tmp_path / "trial.csv"])[0]["concurrency"] == "4"  # as written


TINY = {
    "models": {
        "digits": {
            "recipe": str(ROOT / "recipes" / "digits"),
            "params": {"channels": 8, "epochs": 2, "batch_size": 64, "seed": 0},
        }
    },
    "formats": ["onnx"],
    "devices": ["cpu"],
    "correctness": {"batch_size": 64, "batches": 2},
    "accuracy": {"batch_size": 16},
    "perf": {
        "measurement_interval_ms": 300,
        "stability_percentage": 50,
        "max_trials": 4,
        "input_samples": 32,
        "offline": {"batch_sizes": [1, 16]},
        "online": {"concurrency": [1, 4]},
    },
    "native": {"window_s": 0.2},
    "tuning": {
        "formats": ["onnx"],
        "strategy": "brute_force",
        "concurrency": 4,
        "p99_budget_ms": 200,
        "side_by_side_rounds": 2,
        "space": {  # a runtime knob beside the batcher: ONNX Runtime's execution mode
            "max_batch_size": [32],
            "dynamic_batching": [True],
            "max_queue_delay_us": [0, 200],
            "preferred_batch_sizes": ["none"],
            "instances": [1],
            "runtime_threads": [1],
            "execution_mode": ["sequential", "parallel"],
            "inter_op_threads": [1],  # in parallel execution (sequential ignores it): one
        },
    },
}
TUNED = Path("results") / "tuning" / "digits" / "onnx" / "cpu"
# What every search below needs before its first trial (training, export, correctness, perf data):
# the same jobs with the same settings in each test (they differ in the tuning section only, which
# none of these jobs reads), so made once and copied into each test's folder.
UPSTREAM = ["results/correctness/digits/verdicts.json", "results/perf_data/digits/input.json"]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("tuning_upstream")
    (workdir / "t.yaml").write_text(yaml.safe_dump(TINY))
    snakemake(*UPSTREAM, "--cores", "2", "--configfile", "t.yaml", cwd=workdir, timeout=1200)
    return workdir


def copy_upstream(upstream: Path, workdir: Path) -> None:
    """The shared upstream results into workdir, mtimes and Snakemake's records kept (copy2): the
    workflow there sees those jobs done and starts at the search."""
    shutil.copytree(upstream, workdir, symlinks=True, dirs_exist_ok=True)


def run(workdir: Path, config: dict, *args: str) -> None:
    (workdir / "t.yaml").write_text(yaml.safe_dump(config))
    snakemake(
        "results/report.html",
        "--cores",
        "2",
        "--configfile",
        "t.yaml",
        *args,
        cwd=workdir,
        timeout=1200,
    )


@pytest.mark.e2e
def test_a_brute_force_search_end_to_end(upstream: Path, tmp_path: Path) -> None:
    copy_upstream(upstream, tmp_path)
    run(tmp_path, TINY)
    chosen = json.loads((tmp_path / TUNED / "chosen.json").read_text())
    trials = sorted(p.stem for p in (tmp_path / TUNED / "trials").glob("*.csv"))
    assert len(trials) == chosen["measurements"] == chosen["grid_size"] == 4
    assert chosen["within_budget"] and chosen["trial"] in trials
    rows = tuning.read_trials([tmp_path / TUNED / "trials" / f"{t}.csv" for t in trials])
    stable = [r for r in rows if r["status"] == "ok" and r["p99_us"] <= 200_000]
    assert chosen["search_best_throughput"] == max(r["throughput"] for r in stable)
    # the two best trials and the untuned configuration measured again, alternated, 2 rounds; the
    # choice is the best median among them
    side = tuning.read_trials([tmp_path / TUNED / "side_by_side.csv"])
    ranked = [r["trial"] for r in sorted(stable, key=lambda r: -r["throughput"])]
    distinct = list(dict.fromkeys([*ranked[:2], chosen["naive"], tuning.newcomer()]))
    assert [(r["trial"], r["round"]) for r in side] == [
        (t, str(k)) for k in range(2) for t in tuning.rotated(distinct, k)
    ]
    medians = {
        t: m["throughput"]
        for t, m in tuning.summarize_side_by_side(tmp_path / TUNED / "side_by_side.csv").items()
    }
    assert (
        chosen["measured_by"] == "side_by_side"
        and chosen["throughput"]
        == max(v for v in medians.values() if v)
        == medians[chosen["trial"]]
    )
    # the chosen configuration is what the served and the deployed repositories hold
    mbs = tuning.parse_trial(chosen["trial"])["max_batch_size"]
    served = (
        tmp_path
        / "results"
        / "repository"
        / "digits"
        / "onnx"
        / "cpu"
        / "digits_onnx"
        / "config.pbtxt"
    ).read_text()
    deployed = (
        tmp_path / "results" / "deploy" / "cpu" / "digits_onnx" / "config.pbtxt"
    ).read_text()
    assert f"max_batch_size: {mbs}\n" in served and f"max_batch_size: {mbs}\n" in deployed
    assert chosen["config_pbtxt"] == deployed
    # the chosen execution mode, as Triton's onnxruntime backend reads it, in both configs
    parallel = tuning.parse_trial(chosen["trial"])["execution_mode"] == "parallel"
    for text in (served, deployed):
        assert ('key: "execution_mode"' in text) == parallel, text
    html = (tmp_path / "results" / "report.html").read_text()
    assert (
        "Tuning: the Triton configuration searched" in html
        and f"chosen: <b>{chosen['trial']}</b>" in html
    )
    assert html.count('data-table="tuning_side_by_side"') == 1
    if chosen["trial"] != chosen["naive"] and medians[chosen["naive"]]:
        assert f"<b>×{medians[chosen['trial']] / medians[chosen['naive']]:.2f}</b>" in html
    assert html.count('data-table="tuning"') == 1
    if (
        chromium_available()
    ):  # the trial plot renders: every stable trial a point, the budget a rule
        charts = {
            c["title"]: c
            for c in chart_summary(render_in_chromium(tmp_path / "results" / "report.html"))
        }
        plot = charts["digits · onnx · cpu: trials, throughput vs p99 (budget dashed)"]
        assert plot["error"] is None and plot["by_mark"].get("rule") == 1
        assert plot["by_mark"].get("symbol") == len([r for r in rows if r["status"] == "ok"])


@pytest.mark.e2e
def test_an_interrupted_search_resumes_without_measuring_a_trial_twice(
    upstream: Path, tmp_path: Path
) -> None:
    copy_upstream(upstream, tmp_path)
    config = json.loads(json.dumps(TINY))
    config["tuning"].update(strategy="coordinate", max_rounds=1)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(config))
    exe = str(Path(sys.executable).parent / "snakemake")
    target = str(TUNED / "chosen.json")
    with open(tmp_path / "first.out", "w") as out:
        first = subprocess.Popen(
            [
                exe,
                target,
                "--snakefile",
                str(ROOT / "Snakefile"),
                "--cores",
                "2",
                "--configfile",
                "t.yaml",
            ],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 600
        while (
            time.monotonic() < deadline
            and first.poll() is None
            and not list((tmp_path / TUNED / "trials").glob("*.csv"))
        ):
            time.sleep(0.5)
        first.send_signal(signal.SIGINT)  # Ctrl-C in the middle of the search
        first.wait(timeout=120)
    done = {p: p.stat().st_mtime_ns for p in (tmp_path / TUNED / "trials").glob("*.csv")}
    assert done, "no trial finished before the interruption"
    # resume, then extend the search with more rounds: finished trials are kept as they are
    snakemake(target, "--cores", "2", "--configfile", "t.yaml", cwd=tmp_path, timeout=1200)
    config["tuning"]["max_rounds"] = 4
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(config))
    snakemake(target, "--cores", "2", "--configfile", "t.yaml", cwd=tmp_path, timeout=1200)
    assert {p: p.stat().st_mtime_ns for p in done} == done
    for log in (tmp_path / "logs" / "tuning" / "digits" / "onnx" / "cpu" / "trials").glob(
        "*[!r].log"
    ):  # not *.server.log
        finished = [line for line in log.read_text().splitlines() if "infer/s, p99" in line]
        assert len(finished) <= 1, f"{log.name} was measured {len(finished)} times"
    chosen = json.loads((tmp_path / TUNED / "chosen.json").read_text())
    assert (
        chosen["measurements"]
        == len(list((tmp_path / TUNED / "trials").glob("*.csv")))
        < chosen["grid_size"] + 1
    )


@pytest.mark.e2e
def test_a_budget_no_configuration_meets_is_reported_with_the_closest_trial(
    upstream: Path, tmp_path: Path
) -> None:
    copy_upstream(upstream, tmp_path)
    config = json.loads(json.dumps(TINY))
    config["tuning"]["p99_budget_ms"] = 0.001  # one microsecond: no real server answers that fast
    config["tuning"]["space"]["max_queue_delay_us"] = [0]
    config["tuning"]["side_by_side_rounds"] = 0  # none: the report gives the trial numbers only
    run(tmp_path, config)
    chosen = json.loads((tmp_path / TUNED / "chosen.json").read_text())
    rows = [
        r
        for r in tuning.read_trials(list((tmp_path / TUNED / "trials").glob("*.csv")))
        if r["status"] == "ok"
    ]
    assert (
        not chosen["within_budget"]
        and chosen["trial"] == min(rows, key=lambda r: r["p99_us"])["trial"]
    )
    html = (tmp_path / "results" / "report.html").read_text()
    assert (
        "no configuration meets p99 ≤ 0.001 ms" in html
        and f"the closest trial, <b>{chosen['trial']}</b>" in html
    )
    assert (
        not (tmp_path / TUNED / "side_by_side.csv").exists()
        and 'data-table="tuning_side_by_side"' not in html
    )
