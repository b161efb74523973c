"""The capacity search end to end: the real workflow, tritonserver and perf_analyzer on the tiny
digits model (onnx only), short windows, a coarse resolution and few rates (the finished run
test_gate shares, tests/served_run.py)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/browser.py
from browser import chart_summary, chromium_available, render_in_chromium

from deploysnake.contracts import Target
from deploysnake.measuring import capacity

from . import served_run
from .conftest import ROOT, snakemake
from .faults.conftest import no_processes_left, processes_in, start

RESULT = Path("results") / "capacity" / "digits" / "onnx" / "cpu"
LOG = Path("logs") / "capacity" / "digits" / "onnx" / "cpu.log"
# the shared run's config (test_gate's too): digits, onnx only, one offline and one online point,
# and a capacity search with a p99 budget of 10 ms from 100 req/s, at most 8 rates, 500 ms windows
CONFIG: dict[str, Any] = served_run.CONFIG


def write(workdir: Path, config: dict[str, Any]) -> None:
    (workdir / "c.yaml").write_text(yaml.safe_dump(config))


def run(workdir: Path, *targets: str) -> None:
    snakemake(
        *(targets or ("results/report.html",)),
        "--cores",
        "2",
        "--configfile",
        "c.yaml",
        cwd=workdir,
        timeout=1200,
    )


def rows(workdir: Path) -> list[dict[str, str]]:
    with open(workdir / RESULT.with_suffix(".csv"), newline="") as handle:
        return list(csv.DictReader(handle))


def rate_files(workdir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (workdir / RESULT / "rates").glob("r*.csv")}


@pytest.fixture(scope="module")
def searched(capacity_and_gate_run: Path) -> Path:
    """The finished run, shared with test_gate: the tests here read it, or copy it (`copy`)."""
    return capacity_and_gate_run


@pytest.fixture
def copy(searched: Path, tmp_path: Path) -> Any:
    workdir = tmp_path / "run"
    shutil.copytree(searched, workdir, symlinks=True)  # mtimes kept: nothing is out of date
    yield workdir
    for line in processes_in(workdir):
        import psutil

        psutil.Process(int(line.split()[0])).kill()


def linear_server(capacity_rps: int, budget_us: float) -> Any:
    """A p99 that grows with the rate and crosses the budget at capacity_rps; records each call."""
    calls: list[tuple[int, str]] = []

    def measure(rate: int, step: str) -> capacity.Rate:
        calls.append((rate, step))
        p99 = budget_us * rate / capacity_rps
        return capacity.Rate(rate, "ok", p99 / 2, p99, {"request_rate": rate})

    return measure, calls


def test_the_search_doubles_then_bisects_to_the_resolution_and_never_repeats_a_rate() -> None:
    measure, calls = linear_server(1000, 10_000.0)
    found = capacity.search(measure, 10_000.0, 100, 100_000, 0.1, 20)
    rates = [r for r, _ in calls]
    assert rates[:5] == [100, 200, 400, 800, 1600] and {s for _, s in calls[:5]} == {"bracket"}
    assert {s for _, s in calls[5:]} == {"bisect"} and len(set(rates)) == len(rates)
    cap, upper = found["capacity"], found["upper"]
    assert found["status"] == "within_budget" and cap.rate <= 1000 < upper.rate
    assert upper.rate - cap.rate <= 0.1 * cap.rate
    # a start beyond the capacity halves down first; a bound stops the search where it is
    measure, calls = linear_server(300, 10_000.0)
    found = capacity.search(measure, 10_000.0, 1000, 100_000, 0.1, 4)
    assert [r for r, _ in calls] == [1000, 500, 250, 375]
    assert found["status"] == "bounded" and found["capacity"].rate == 250
    # nothing holds: none within budget, the lowest rate measured reported
    measure, calls = linear_server(1, 10_000.0)
    found = capacity.search(measure, 10.0, 8, 100, 0.1, 10)
    assert found["capacity"] is None and found["status"] == "none_within_budget"
    assert [r for r, _ in calls] == [8, 4, 2, 1] and found["lowest"].rate == 1

    # the lowest rate unstable: the lowest one with a stable measurement is reported beside it
    def noisy(rate: int, step: str) -> capacity.Rate:
        if rate < 4:
            return capacity.Rate(rate, "unstable", None, None, {})
        return capacity.Rate(rate, "ok", 20_000.0, 40_000.0, {})

    found = capacity.search(noisy, 10_000.0, 8, 100, 0.1, 10)
    assert (found["lowest"].rate, found["lowest_stable"].rate) == (1, 4)
    result = capacity.summary(
        found,
        Target("m", "f", "cpu"),
        {"batch_size": 1, "distribution": "poisson", "resolution": 0.1},
        10.0,
    )
    assert capacity.describe(result) == (
        "no rate meets p99 ≤ 10 ms: the lowest measured, 1 req/s, gave unstable; the lowest "
        "with a stable measurement, 4 req/s, gave p99 40.00 ms"
    )
    # an unstable or client-behind point is no result: it bounds the search from above
    behind = capacity.Rate(400, "client_behind", 1.0, 1.0, {})
    assert not behind.within(10_000.0)


def test_perf_analyzers_client_report_decides_whether_the_client_kept_up() -> None:
    late = (
        "Request Rate: 200 inference requests per seconds\n  Client: \n    Request count: 354\n"
        "    Avg send request rate: 196.72 infer/sec\n    [WARNING] Perf Analyzer was not able "
        "to keep up with the desired request rate. 39.83% of the requests were delayed. \n"
    )
    assert capacity.client_figures(late) == (196.72, 39.83, 354)
    assert capacity.kept_up(200, 196.72, 39.83, 0.05, 354)  # late, but the load was sent
    assert not capacity.kept_up(200, 150.0, 80.0, 0.05, 354)
    # 12 % short of 100 requests/s over 150 Poisson arrivals: within their spread, not so when
    # the arrivals are constant or many
    assert capacity.kept_up(100, 88.0, 4.7, 0.05, 150)
    assert not capacity.kept_up(100, 88.0, 4.7, 0.05, 150, poisson=False)
    assert not capacity.kept_up(100, 88.0, 4.7, 0.05, 10_000)
    on_time = "Request Rate: 100 inference requests per seconds\n  Client: \n    Request count: 9\n"
    assert capacity.client_figures(on_time) == (None, 0.0, 9)
    assert capacity.kept_up(100, None, 0.0, 0.05)
    assert capacity.client_figures("Failed to obtain stable measurement.") == (None, None, None)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"formats": ["onxx"]}, r"config.perf.capacity.formats: \['onxx'\] are not formats"),
        ({"batch_size": 512}, r"config.perf.capacity.batch_size: 512 above triton.max_batch_size"),
        ({"start_rate": 500, "max_rate": 100}, r"config.perf.capacity.start_rate: 500 above"),
        ({"distribution": "burst"}, r"perf.capacity.distribution"),
    ],
)
def test_bad_capacity_settings_name_the_key(change: dict[str, Any], expected: str) -> None:
    from deploysnake.configuration import validate
    from deploysnake.errors import UserError

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["perf"]["capacity"].update(change)
    with pytest.raises(UserError, match=expected):
        validate(config)


def test_cost_per_million_inferences() -> None:
    # 0.10 an hour at 1,000 infer/s: 3.6 million an hour, so 0.10 / 3.6 per million
    assert capacity.cost_per_million(1000.0, {"cpu": 0.10}, "cpu") == pytest.approx(0.10 / 3.6)
    assert capacity.cost_per_million(1000.0, {"a100": 3.0}, "cpu") is None
    assert capacity.cost_per_million(None, {"cpu": 0.10}, "cpu") is None


@pytest.mark.e2e
def test_the_search_brackets_then_bisects_and_the_capacity_reaches_csv_and_report(
    searched: Path,
) -> None:
    result = json.loads((searched / RESULT.with_suffix(".json")).read_text())
    table = rows(searched)
    log = (searched / LOG).read_text()
    steps = [line for line in log.splitlines() if re.search(r"(bracketing|bisection): rate", line)]
    assert [s["step"] for s in table] == [
        "bracket" if "bracketing" in line else "bisect" for line in steps
    ]
    assert len(table) == result["measurements"] <= 8
    # The job followed the search: replaying its own measurements through capacity.search gives
    # the same rates in the same order with the same steps (bisection whenever the bracket closed
    # before max_measurements; which rates close it depends on the machine, so the mechanics of
    # bisection are the unit test's above).
    measured = {
        int(s["request_rate"]): capacity.Rate(
            int(s["request_rate"]),
            s["status"],
            None,
            float(s["p99 latency"]) if s["p99 latency"] else None,
            {},
        )
        for s in table
    }
    replayed: list[tuple[int, str]] = []

    def replay(rate: int, step: str) -> capacity.Rate:
        replayed.append((rate, step))
        return measured[rate]

    settings = CONFIG["perf"]["capacity"]
    again = capacity.search(
        replay,
        settings["p99_budget_ms"] * 1000.0,
        settings["start_rate"],
        settings["max_rate"],
        settings["resolution"],
        settings["max_measurements"],
    )
    assert replayed == [(int(s["request_rate"]), s["step"]) for s in table]
    assert again["status"] == result["status"]
    if again["upper"] is not None and again["capacity"] is not None:
        assert any(step == "bisect" for _, step in replayed) or len(table) == 8
    assert len({s["request_rate"] for s in table}) == len(table)  # no rate twice
    # the capacity: the highest rate within the budget, its row in the CSV with its p99
    within = [s for s in table if s["within_budget"] == "True"]
    assert result["status"] in ("within_budget", "bounded") and within
    best = max(within, key=lambda s: int(s["request_rate"]))
    assert result["capacity_rps"] == int(best["request_rate"])
    assert result["p99_us"] == float(best["p99 latency"]) <= 10_000
    assert best["status"] == "ok" and best["kept_up"] == "True"
    # every rate above it in the search is beyond the budget, unstable or client-behind
    assert all(
        s["within_budget"] == "False"
        for s in table
        if int(s["request_rate"]) > result["capacity_rps"]
    )
    # open-loop columns: offered and achieved rates, what the client sent
    assert float(best["achieved_rate"]) > 0 and best["distribution"] == "poisson"
    # perf_analyzer -v: the rate found keeps its windows, and the result the achieved rate's
    # 95 % interval over them (capacity.achieved_spread)
    assert len(best["window_infer_s"].split(";")) >= 2 and result["achieved_infer_s_n"] >= 2
    assert (
        result["achieved_infer_s_low"]
        <= result["achieved_infer_s_mean"]
        <= result["achieved_infer_s_high"]
    )
    html = (searched / "results" / "report.html").read_text()
    assert f"n {result['achieved_infer_s_n']} windows" in html
    assert f'data-capacity="{result["capacity_rps"]}"' in html
    assert (
        html.count('data-table="best_capacity"') == 1 and html.count('data-table="capacity"') == 1
    )
    cost = capacity.cost_per_million(result["capacity_infer_per_s"], {"cpu": 0.10}, "cpu")
    assert cost is not None and f"<b>{cost:,.4g}</b> per million inferences" in html
    if chromium_available():
        charts = {
            c["title"]: c
            for c in chart_summary(render_in_chromium(searched / "results" / "report.html"))
        }
        lat = charts["digits · onnx · cpu: latency vs offered rate (budget dashed, capacity solid)"]
        stable = [s for s in table if s["status"] == "ok"]
        assert lat["error"] is None and lat["by_mark"].get("rule") == 2  # budget and capacity
        assert lat["by_mark"].get("symbol") == 4 * len(stable)  # p50, p90, p95, p99 per rate
        bars = charts["digits · onnx · cpu: latency breakdown at the capacity"]
        assert bars["error"] is None and bars["by_mark"].get("rect") == 7


@pytest.mark.e2e
def test_a_stopped_search_resumes_without_measuring_a_rate_twice(copy: Path) -> None:
    before = rate_files(copy)
    config = json.loads(json.dumps(CONFIG))
    # a finer resolution and more rates: the search goes on from what it has
    config["perf"]["capacity"].update(resolution=0.05, max_measurements=10)
    write(copy, config)
    target = str(RESULT.with_suffix(".json"))
    for done in (RESULT.with_suffix(".json"), RESULT.with_suffix(".csv")):
        (copy / done).unlink()  # the search must run again: it can only be stopped then
    first = start(copy, target, config="c.yaml")
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:
            if len(rate_files(copy)) > len(before):
                break
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):  # (ended already: the assert below says so)
            os.killpg(first.pid, signal.SIGINT)  # Ctrl-C in the middle of the search
        first.wait(timeout=120)
    finally:
        first.kill()
    no_processes_left(copy)
    stopped = rate_files(copy)
    assert not (copy / RESULT.with_suffix(".json")).exists(), "the search was not stopped"
    assert {k: v for k, v in stopped.items() if k in before} == before
    run(copy, target)
    after = rate_files(copy)
    # every rate measured before the stop is kept as it was, and read back, not measured again
    assert {k: after[k] for k in stopped} == stopped
    log = (copy / LOG).read_text()
    resumed = log[log.rfind("bracketing: rate 100 req/s (step 1 of at most 10)") :]
    for name in stopped:
        rate = name[1:-4]
        assert re.search(rf"rate {rate} req/s \(step \d+ of at most 10\): measured before", resumed)
    result = json.loads((copy / RESULT.with_suffix(".json")).read_text())
    assert result["measured_now"] == len(after) - len(stopped)
    # the same budget and cached outcomes lead the search down the same path: every file is visited
    assert result["from_cache"] == len(stopped)
    table = rows(copy)
    assert len({s["request_rate"] for s in table}) == len(table) == result["measurements"]


@pytest.mark.e2e
def test_a_budget_no_rate_meets_is_reported_with_the_lowest_rates_p99(copy: Path) -> None:
    config = json.loads(json.dumps(CONFIG))
    config["perf"]["capacity"].update(
        p99_budget_ms=0.001,  # one microsecond: no real server answers that fast
        start_rate=200,
        max_measurements=2,
        distribution="constant",
        measurement_interval_ms=1000,
    )
    write(copy, config)
    run(copy)
    result = json.loads((copy / RESULT.with_suffix(".json")).read_text())
    table = rows(copy)
    assert result["status"] == "none_within_budget" and result["capacity_rps"] is None
    assert [int(s["request_rate"]) for s in table] == [200, 100]
    assert all(s["distribution"] == "constant" and s["within_budget"] == "False" for s in table)
    lowest = table[-1]
    assert result["lowest_rate"] == 100 and result["lowest_status"] == lowest["status"]
    html = (copy / "results" / "report.html").read_text()
    assert "no rate meets p99 ≤ 0.001 ms: the lowest measured, 100 req/s, gave " in html
    if lowest["status"] == "ok":  # its p99, as measured
        p99 = float(lowest["p99 latency"])
        assert result["lowest_p99_us"] == p99
        assert f"100 req/s, gave p99 {p99 / 1000:,.2f} ms" in html
    elif table[0]["status"] == "ok":  # unstable at 100: the lowest stable one's p99 beside it
        p99 = float(table[0]["p99 latency"])
        assert (
            f"the lowest with a stable measurement, 200 req/s, gave p99 {p99 / 1000:,.2f} ms"
            in html
        )
    assert 'data-capacity=""' in html


@pytest.mark.e2e
def test_a_model_the_server_cannot_load_is_a_failed_search_in_the_report(copy: Path) -> None:
    """The capacity stage is a served stage like the others: a model x format the server cannot load
    ends the search as a failure record (CSV and JSON), the run goes on to the report, which lists
    it with the served failures; the rates measured before stay on disk."""
    before = rate_files(copy)
    model = copy / "results" / "repository" / "digits" / "onnx" / "cpu" / "digits_onnx" / "1"
    (model / "model.onnx").write_bytes(b"corrupted on disk")
    for done in (RESULT.with_suffix(".json"), RESULT.with_suffix(".csv")):
        (copy / done).unlink()
    run(copy, str(RESULT.with_suffix(".json")))  # (a deleted result is made again when asked for)
    result = json.loads((copy / RESULT.with_suffix(".json")).read_text())
    assert result["status"] == "failed" and result["capacity_rps"] is None
    assert result["reason"].startswith("the server cannot load the model:"), result["reason"]
    assert "digits_onnx" in result["reason"]
    (record,) = rows(copy)
    assert record["status"] == "failed" and record["stage"] == "capacity"
    assert record["reason"] == result["reason"]
    assert rate_files(copy) == before  # nothing measured is lost, nothing measured now
    run(copy)  # the report, newer than the search's outputs: made again, with the failure
    html = (copy / "results" / "report.html").read_text()
    listed = html.split('class="served-failures"')[1].split("</ul>")[0]
    assert "capacity failed: the server cannot load the model:" in listed
    assert 'data-capacity="">the search failed: the server cannot load the model:' in html
    no_processes_left(copy)


def test_a_client_past_its_memory_bound_or_time_is_stopped_with_its_output() -> None:
    import subprocess

    from deploysnake.measuring import perf_analyzer

    # a real process that holds 400 MB (every page written) and would then sleep a minute
    hog = (
        "import time; b = bytearray(400 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
        "print('held', flush=True); time.sleep(60)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", hog], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    started = time.monotonic()
    why, out, _ = perf_analyzer.wait_bounded(process, 50.0, 200.0)
    assert why is not None and why.startswith("memory: perf_analyzer held"), why
    assert "limit 200 MB" in why and "held" in out
    assert process.returncode == -signal.SIGKILL and time.monotonic() - started < 30
    # within its memory, past its time
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    why, out, _ = perf_analyzer.wait_bounded(process, 1.0, 200.0)
    assert why == "time: perf_analyzer did not finish within 1 s" and "up" in out
    # a process that ends on its own: its whole output, nothing stopped
    process = subprocess.Popen(
        [sys.executable, "-c", "print('done')"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert perf_analyzer.wait_bounded(process, 30.0, 200.0) == (None, "done\n", "")
    assert 0 < perf_analyzer.client_memory_limit_mb() <= perf_analyzer.CLIENT_MEMORY_MB
