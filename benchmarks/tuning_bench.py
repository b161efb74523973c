"""Benchmark of issue #7 on the default model (digits, ONNX, CPU): served vs native throughput, the
brute-force, hill-climbing, coordinate, restarts and joint (default) searches, and the tuned against
the untuned configuration.

    make bench            (or: python benchmarks/tuning_bench.py [--workdir DIR] [--interval-ms N] [--rounds N]
                           [--runs 5] [--aoti]; make bench BENCH_ARGS="--runs 5 --aoti")

--runs N searches N times in all with the default strategy, each search on fresh trial measurements
(the tuning folder of the run before moved aside), each choice measured side by side against brute
force's choice: search quality and the fraction of brute force's trials per run (issue 34: >= 0.95
in each of five runs at <= 10 % of the trials). --aoti adds the AOTInductor format to the workflow
run (compiled on this machine: about 10 s for digits) and prints its throughput against ONNX Runtime's.

Everything is measured in one run, on this machine, by the workflow itself: one brute-force search of
the whole tuning space, then the hill-climbing, coordinate, restarts and joint (default) searches over
the same trial results (a trial is a cached job, so the strategies read the same measurement of each
configuration and differ only in which ones they ask for). Each search then chooses as the workflow
does: its two best trials and the untuned configuration measured again side by side (3 rounds),
the best median wins; search_cost counts those measurements too. The choices themselves (the brute
force's, the default search's and the untuned configuration) are then measured once more side by
side by the same code, 5 rounds with windows four times as long; search_quality and tuned_over_naive
come from those medians. Likewise the served repository and the runtime in-process are measured in
alternation for the two ratios (the workflow's native and perf jobs run minutes apart), and in the
same rotation a floor model beside it (same configuration and runner, almost no compute), whose online
number is the most any model can be served at here (deploysnake.measuring.floor, as in the workflow's online
jobs). The workflow jobs' and the trials' own numbers are printed too, then the native baseline job
of the same artifact run again under `--cores 2` and `--cores 8` with their ratio (threads come from
the CPUs a job may use, so it must be 1 within the spread) and online served/floor. The last line is
machine-readable; its search figures are the default (joint) search's, search_runs its quality
in each of the --runs runs:

    bench: offline_ratio=R1 offline_ratio_lo=L offline_ratio_hi=H online_ratio=R2 ... search_quality=Q
    search_quality_lo=L search_quality_hi=H search_cost=C tuned_over_naive=T tuned_over_naive_lo=L
    tuned_over_naive_hi=H search_runs=Q1,Q2,... search_trials=F1,F2,...

Each headline ratio is the ratio of the side by side's medians; <key>_lo and <key>_hi are its 95 %
interval from the rounds' spread (deploysnake.spread.ratio: delta method on the log ratio,
Welch-Satterthwaite degrees of freedom; nan with fewer than two rounds on both sides).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from deploysnake.spread import Ratio, Spread

ROOT = Path(__file__).resolve().parents[1]
TUNED = Path("results/tuning/digits/onnx/cpu")
PERF_DATA = Path("results/perf_data/digits/input.json")
EXPORT = Path("results/export/digits/onnx")
FLOOR = "floor"  # served beside the model: what the serving path alone can do (deploysnake.measuring.floor)
FLOOR_LABEL = "served b1 c16, floor model"
DEFAULT = "joint"  # the default strategy (config tuning.strategy)
sys.path.insert(0, str(ROOT / "src"))  # the package, for the side-by-side measurements


def snakemake(workdir: Path, config: dict, *targets: str, cores: str = "2") -> float:
    (workdir / "bench.yaml").write_text(yaml.safe_dump(config))
    exe = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    started = time.monotonic()
    with open(workdir / "snakemake.out", "a") as out:
        subprocess.run(
            [
                exe,
                *targets,
                "--snakefile",
                str(ROOT / "Snakefile"),
                "--cores",
                cores,
                "--configfile",
                "bench.yaml",
            ],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=7200,
        )
    return time.monotonic() - started


def long_windows(perf: dict, interval_ms: int) -> dict:
    """The perf settings with windows (and the request-count floor) four times the workflow's."""
    return {
        **perf,
        "measurement_interval_ms": interval_ms,
        "measurement_request_count": 4 * perf["measurement_request_count"],
    }


def floor_repository(served: Path, name: str, io: dict, into: Path) -> Path:
    """The served repository (model `name`) plus FLOOR: the same configuration and runner with a model
    that computes nothing (deploysnake.measuring.floor, which the workflow's online jobs use too)."""
    from deploysnake.measuring import floor

    shutil.rmtree(into, ignore_errors=True)
    shutil.copytree(served, into)
    floor.floor_repository(served / name, io, into.with_name("floor_only"))
    shutil.copytree(into.with_name("floor_only") / floor.FLOOR, into / FLOOR)
    return into


def served_vs_native(
    workdir: Path, config: dict, chosen: dict, rounds: int, interval_ms: int
) -> dict[str, list[float]]:
    """The served repository (the chosen configuration) and the runtime in-process with its instances
    and threads, measured in alternation on one server: the workflow's native and perf jobs run
    minutes apart, and this machine's speed moves by 10 % in that time. The floor model (same
    configuration, almost no compute) is measured in the same rotation. config: validated."""
    from deploysnake import server, tools, tuning
    from deploysnake.devices import instance_count
    from deploysnake.measuring import native, perf, workload
    from deploysnake.repository import triton_model_name
    from deploysnake.runtime import ArtifactRuntime

    triton = chosen["triton"]
    settings = long_windows(config["perf"], interval_ms)
    io = json.loads((workdir / EXPORT / "io.json").read_text())
    names = [t["name"] for t in io["inputs"]], [t["name"] for t in io["outputs"]]
    instances = instance_count(triton, "cpu")
    runtimes = [  # runtime_threads 0: the job's CPUs over the instances, as the served runner does
        ArtifactRuntime(
            workdir / EXPORT / "model.onnx",
            "onnx",
            *names,
            triton["runtime_threads"],
            "cpu",
            instances,
        )
        for _ in range(instances)
    ]
    load = workload.plan_load(io, settings, workdir / PERF_DATA)
    natives = {"native b256": 256, "native b1": 1}
    # The workflow's offline concurrencies for these instances (two per instance keep every one busy).
    offline = [p for p in workload.sweep("offline", settings, len(runtimes)) if p.batch == 256]
    name = triton_model_name("digits", "onnx")
    served = {f"served b256 c{p.concurrency}": ("offline", p, name) for p in offline} | {
        "served b1 c16": ("online", workload.Point(1, 16), name),
        FLOOR_LABEL: ("online", workload.Point(1, 16), FLOOR),
    }
    measured: dict[str, list[float]] = {label: [] for label in [*natives, *served]}
    executable = tools.perf_analyzer(settings["perf_analyzer"])
    out = workdir / "served_vs_native"
    out.mkdir(exist_ok=True)
    repository = floor_repository(
        workdir / "results/repository/digits/onnx/cpu", name, io, out / "repository"
    )
    with server.from_settings(repository, triton, out / "server.log") as running:
        for r in range(rounds):
            for label in tuning.rotated(list(measured), r):
                if label in natives:
                    inputs = native.random_inputs(io, natives[label])
                    measured[label].append(
                        native.time_batch(
                            runtimes, inputs, interval_ms / 1000, config["native"]["max_iterations"]
                        )["throughput_infer_per_s"]
                    )
                    continue
                mode, point, model = served[label]
                status, row, _ = perf.measure_point(
                    executable, model, running, point, settings, mode, out / f"{r}.csv", load
                )
                if status == "ok":
                    measured[label].append(float(row["Inferences/Second"]))
    return measured


def side_by_side(
    workdir: Path, config: dict, trials: dict[str, str], rounds: int, interval_ms: int
) -> dict[str, dict[int, float]]:
    """Each distinct trial measured `rounds` times, interleaved, by the workflow's side-by-side code with
    the trial job's settings (perf without the sweeps, as common.smk passes them; the tuning section).
    config: validated. Labels naming the same trial share its numbers; each label's stable throughputs
    by round."""
    from deploysnake import server, tuning
    from deploysnake.contracts import Target

    perf = long_windows(
        {k: v for k, v in config["perf"].items() if k not in ("offline", "online")}, interval_ms
    )
    flavour = server.locate(config["triton"]["server"], config["triton"]["bundled_runner"]).flavour
    out = workdir / "side_by_side"
    rows = tuning.side_by_side(
        Target("digits", "onnx", "cpu"),
        workdir / EXPORT / "model.onnx",
        workdir / EXPORT / "io.json",
        config["triton"],
        flavour,
        perf,
        config["tuning"],
        list(trials.values()),
        rounds,
        out / "side_by_side.csv",
        workdir / PERF_DATA,
        out / "server.log",
    )
    return {
        label: {
            r["round"]: float(r["throughput"])
            for r in rows
            if r["trial"] == trial and r["status"] == "ok"
        }
        for label, trial in trials.items()
    }


def per_round(a: dict[int, float], b: dict[int, float]) -> list[float]:
    """a / b in each round where both were measured: neighbours in time, so the machine's drift
    between rounds cancels; their range shows how far one ratio of medians can be trusted."""
    return [a[r] / b[r] for r in sorted(a.keys() & b.keys())]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def measured(samples: list[float]) -> Spread | None:
    """The spread of repeated measurements (deploysnake.spread.spread); None for fewer than two."""
    from deploysnake.spread import spread

    return spread(samples) if len(samples) >= 2 else None


def interval(
    num: float | None, num_spread: Spread | None, den: float | None, den_spread: Spread | None
) -> Ratio | None:
    """num / den (the headline's figures, e.g. two medians) with its 95 % interval from each
    figure's repeats and CV (deploysnake.spread.ratio: delta method on the log ratio,
    Welch-Satterthwaite degrees of freedom); None where either figure is missing."""
    from deploysnake.spread import at_figure, ratio

    if not num or not den:
        return None
    return ratio(at_figure(num, num_spread), at_figure(den, den_spread))


def of_rounds(num: list[float], den: list[float]) -> Ratio | None:
    """interval of the two sets' medians from the sets' own spreads."""
    return interval(median(num), measured(num), median(den), measured(den))


def shown(r: Ratio | None, what: str = "rounds") -> str:
    """The ratio with its interval for a line of output: "0.912 (95 % 0.871-0.955 (n 5/5 rounds,
    CV 2.1 %))"; "0.000 (not measured)" for None."""
    from deploysnake.spread import describe_ratio

    if r is None:
        return "0.000 (not measured)"
    return f"{r.value:.3f} ({describe_ratio(r, 3, what)})"


def keys(name: str, r: Ratio | None) -> str:
    """name=V name_lo=L name_hi=H for the machine-readable line (nan: no interval or no figure;
    V 0.000 without a figure, as before)."""
    value = r.value if r is not None else 0.0
    lo, hi = (r.low, r.high) if r is not None and r.df is not None else (float("nan"),) * 2
    return f"{name}={value:.3f} {name}_lo={lo:.3f} {name}_hi={hi:.3f}"


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def throughput(path: Path, column: str, **where: int) -> float | None:
    for row in rows(path):
        if all(int(row[k]) == v for k, v in where.items()) and row.get(column):
            return float(row[column])
    return None


def native_by_cores(workdir: Path, config: dict, native: Path, rounds: int) -> None:
    """The workflow's native baseline job of the same artifact run again under `--cores 2` and
    `--cores 8` (the README's command), alternated for `rounds` rounds: the job sizes its threads
    from the CPUs it may use, so cores8/cores2 must be 1 within the spread. Prints, per batch, each
    run's infer/s (status, runtime threads), the ratio round by round (neighbours in time, so the
    machine's drift cancels) and its median, and the spread of repeated runs under the same flag."""
    by_cores: dict[str, dict[int, list[tuple[float, str, str]]]] = {"2": {}, "8": {}}
    for _ in range(rounds):
        for cores in ("2", "8"):
            snakemake(
                workdir,
                config,
                str(native.relative_to(workdir)),
                "--forcerun",
                "runtime_native_baseline",
                cores=cores,
            )
            for r in rows(native):
                by_cores[cores].setdefault(int(r["batch"]), []).append(
                    (float(r["throughput_infer_per_s"]), r["status"], r["runtime_threads"])
                )
    for batch in sorted(by_cores["2"]):
        two, eight = by_cores["2"][batch], by_cores["8"].get(batch, [])
        ratios = [b[0] / a[0] for a, b in zip(two, eight, strict=False) if a[0] and b[0]]
        spread = [max(v) / min(v) for v in ([x[0] for x in two], [x[0] for x in eight]) if min(v)]

        def runs(measured: list[tuple[float, str, str]]) -> str:
            return ", ".join(f"{t:.0f} ({st}, {th} thr)" for t, st, th in measured)

        print(
            f"native b{batch}: --cores 2 {runs(two)}; --cores 8 {runs(eight)} infer/s; "
            f"cores8/cores2 round by round {', '.join(f'{r:.3f}' for r in ratios)} "
            f"(median {median(ratios) or 0:.3f}); same flag, max/min "
            f"{', '.join(f'{x:.3f}' for x in spread)}",
            flush=True,
        )


def fresh_search(
    workdir: Path, config: dict, validated: dict, brute: dict, run: int, args: argparse.Namespace
) -> tuple[float, float]:
    """One more search with the default strategy on fresh trial measurements (the tuning folder
    before it moved to runs/<run-1>/), its choice then measured side by side against brute force's
    choice (`--rounds` rounds, long windows): (search quality, fraction of brute force's trials)."""
    kept = workdir / "runs" / str(run - 1)
    kept.parent.mkdir(exist_ok=True)
    shutil.move(str(workdir / TUNED), str(kept))
    config["tuning"]["strategy"] = DEFAULT
    seconds = snakemake(workdir, config, str(TUNED / "chosen.json"))
    chosen = json.loads((workdir / TUNED / "chosen.json").read_text())
    pair = {"brute force's choice": brute["trial"], f"run {run}'s choice": chosen["trial"]}
    again = side_by_side(workdir, validated, pair, args.rounds, 4 * args.interval_ms)
    mine, reference = again[f"run {run}'s choice"], again["brute force's choice"]
    quality = ratio(median(list(mine.values())), median(list(reference.values())))
    fraction = chosen["measurements"] / brute["measurements"]
    print(
        f"run {run}: {DEFAULT} chose {chosen['trial']} after {chosen['measurements']} trials "
        f"({fraction:.3f} of brute force's {brute['measurements']}) + "
        f"{chosen['side_by_side_measurements']} side by side in {seconds:.0f} s; against brute "
        f"force's {brute['trial']}: round by round "
        f"{', '.join(f'{v:.3f}' for v in per_round(mine, reference)) or 'none'}, "
        f"search_quality {quality:.3f}",
        flush=True,
    )
    return quality, fraction


def aoti_against_onnx(workdir: Path) -> None:
    """The workflow's own perf jobs of the AOTInductor package and the ONNX file (same model, same
    server, untuned aoti against tuned onnx where onnx is tuned): best offline and online infer/s,
    and each format's build seconds (export and compile, io.json)."""
    line = []
    single: dict[str, dict[int, float | None]] = {}
    for fmt in ("onnx", "aoti"):
        offline = workdir / f"results/perf_offline/digits/{fmt}/cpu.csv"
        online = workdir / f"results/perf_online/digits/{fmt}/cpu.csv"
        io = workdir / f"results/export/digits/{fmt}/io.json"
        verdict = workdir / f"results/correctness/digits/{fmt}.json"
        doc = json.loads(verdict.read_text()) if verdict.is_file() else {}
        if doc and not doc.get("passed"):
            print(
                f"AOTInductor against ONNX Runtime: {fmt} failed correctness: {doc.get('reason')}"
            )
            return
        # one request in flight: one instance busy whatever the configuration's instance count
        single[fmt] = {
            b: throughput(offline, "Inferences/Second", batch=b, concurrency=1)
            if offline.is_file()
            else None
            for b in (1, 256)
        }
        best = {
            mode: max(
                (float(r["Inferences/Second"]) for r in rows(path) if r.get("Inferences/Second")),
                default=0.0,
            )
            if path.is_file()
            else 0.0
            for mode, path in (("offline", offline), ("online", online))
        }
        build = json.loads(io.read_text()).get("build_seconds") if io.is_file() else None
        line.append((fmt, best, build))
    (_, onnx, _), (_, aoti, _) = line
    print(
        "AOTInductor against ONNX Runtime (workflow jobs, best point): "
        + "; ".join(
            f"{fmt} offline {b['offline']:.0f}, online {b['online']:.0f} infer/s, build {s} s"
            for fmt, b, s in line
        )
        + f"; aoti/onnx offline {ratio(aoti['offline'], onnx['offline']):.3f}, online "
        f"{ratio(aoti['online'], onnx['online']):.3f}; one request in flight (onnx's tuned "
        "instances idle then), aoti/onnx "
        + ", ".join(f"b{b} {ratio(single['aoti'][b], single['onnx'][b]):.3f}" for b in (1, 256)),
        flush=True,
    )


def ratio(a: float | None, b: float | None) -> float:
    return (a / b) if a and b else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", type=Path, help="keep results here (default: a temporary folder)"
    )
    parser.add_argument(
        "--interval-ms",
        type=int,
        default=500,
        help="perf_analyzer measurement window of the workflow's jobs",
    )
    parser.add_argument(
        "--max-foreign-cpu",
        type=float,
        default=None,
        help="perf.max_foreign_cpu for every measurement (default: the schema's, 0.25 core); raise "
        "it on a shared machine, where the default records most points as disturbed",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="rounds of the side-by-side measurements (served vs native; chosen and untuned configurations)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="searches with the default strategy, each on fresh trial measurements, each choice "
        "measured side by side against brute force's (5: issue 34's five runs)",
    )
    parser.add_argument(
        "--aoti",
        action="store_true",
        help="serve and measure the AOTInductor format too (compiled here, about 10 s for digits) and print "
        "it against ONNX Runtime",
    )
    parser.add_argument(
        "--cores-only",
        action="store_true",
        help="only the native baseline under --cores 2 and --cores 8, in the --workdir of a "
        "finished bench run",
    )
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="deploysnake-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["models"]["digits"]["recipe"] = str(ROOT / "recipes" / "digits")
    config["formats"] = ["onnx", "aoti"] if args.aoti else ["onnx"]
    config["perf"].update(
        measurement_interval_ms=args.interval_ms,
        offline={"batch_sizes": [1, 256], "concurrency": [1, 2], "shared_memory": "system"},
        online={"batch_size": 1, "concurrency": [16]},
    )
    config["tuning"].update(formats=["onnx"], strategy="brute_force", mode="online", concurrency=16)
    if args.max_foreign_cpu is not None:
        config["perf"]["max_foreign_cpu"] = args.max_foreign_cpu
    if args.cores_only:
        # The finished run's last search, so that nothing is planned again.
        config["tuning"]["strategy"] = DEFAULT
        native_by_cores(
            workdir, config, workdir / "results/native/digits/onnx/cpu.csv", args.rounds
        )
        return
    from deploysnake.processes import size_thread_pools

    size_thread_pools()  # this process measures too: its pools from the CPUs it may use

    def search(strategy: str, target: str) -> dict:
        """One strategy's search and choice; its chosen.json and side by side kept under its name, so
        the next strategy chooses (and measures its own side by side) afresh."""
        config["tuning"]["strategy"] = strategy
        seconds = snakemake(workdir, config, target)
        chosen = json.loads((workdir / TUNED / "chosen.json").read_text())
        side = {t: m["throughput"] for t, m in chosen["side_by_side"].items()}
        print(
            f"{strategy}: {chosen['measurements']} trials + {chosen['side_by_side_measurements']} "
            f"side by side in {seconds:.0f} s; "
            f"best trial {chosen['search_best']}: {chosen['search_best_throughput']} infer/s; "
            f"side by side medians {side}; "
            f"chosen {chosen['trial']}: {chosen['throughput']} infer/s, p99 {chosen['p99_us']} us",
            flush=True,
        )
        for name in ("chosen.json", "side_by_side.csv"):
            if strategy != DEFAULT:
                (workdir / TUNED / name).rename(workdir / f"{strategy}_{name}")
        return chosen

    # The other strategies plan from the brute force's trial files: they measure no trial again.
    brute = search("brute_force", str(TUNED / "chosen.json"))
    for other in ("hill_climb", "coordinate", "restarts"):
        search(other, str(TUNED / "chosen.json"))
    smart = search(DEFAULT, "results/report.html")  # the default: the bench line reports it
    print(f"untuned ({smart['naive']}): trial {smart['naive_throughput']} infer/s", flush=True)

    # What the workflow's own jobs measured (the report's numbers), minutes apart...
    native = workdir / "results/native/digits/onnx/cpu.csv"
    offline = workdir / "results/perf_offline/digits/onnx/cpu.csv"
    online = workdir / "results/perf_online/digits/onnx/cpu.csv"
    n256, n1 = (
        throughput(native, "throughput_infer_per_s", batch=256),
        throughput(native, "throughput_infer_per_s", batch=1),
    )
    s256 = {
        int(r["concurrency"]): float(r["Inferences/Second"])
        for r in rows(offline)
        if r["batch"] == "256" and r["Inferences/Second"]
    }
    s16 = throughput(online, "Inferences/Second", concurrency=16)
    print(
        f"workflow jobs: native b256 {n256:.0f} infer/s, served offline b256 {s256} (by requests in flight); "
        f"native b1 {n1:.0f} infer/s, served online b1 c16 {s16} (tuned configuration)",
        flush=True,
    )
    # ...and the same five side by side, in alternation, windows four times as long.
    from deploysnake.configuration import validate

    validated = validate(config)  # with the workflow's defaults, as its jobs saw them
    paired = served_vs_native(workdir, validated, smart, args.rounds, 4 * args.interval_ms)
    for label, values in paired.items():
        print(
            f"side by side, {label}: {', '.join(f'{v:.0f}' for v in values) or 'unstable'} "
            f"infer/s (median {median(values) or 0:.0f})",
            flush=True,
        )
    # The offline ratio is the server's batch capacity: the best of one request at a time and two in
    # flight per instance, where a request's transfer overlaps the previous one's compute.
    best_offline = max(
        (v for k, v in paired.items() if k.startswith("served b256")),
        key=lambda v: median(v) or 0.0,
    )
    offline = of_rounds(best_offline, paired["native b256"])
    online_r = of_rounds(paired["served b1 c16"], paired["native b1"])
    floor = median(paired[FLOOR_LABEL])
    print(
        f"offline served/native {shown(offline)}; online served/native {shown(online_r)} "
        "(medians of the side by side; 95 % interval from the rounds' spread)",
        flush=True,
    )
    print(
        "serving floor: a model that computes almost nothing, same configuration and runner, b1 "
        f"c16: {floor or 0:.0f} infer/s, "
        f"{shown(of_rounds(paired[FLOOR_LABEL], paired['native b1']))} of native b1: the served "
        "model cannot do better here (up to noise)",
        flush=True,
    )
    print(
        "workflow jobs' numbers (single run, no interval): "
        f"offline_ratio={ratio(max(s256.values(), default=0.0), n256):.3f} "
        f"online_ratio={ratio(s16, n1):.3f}",
        flush=True,
    )
    floor_csv = online.with_name("cpu.floor.csv")
    workflow_floor = throughput(floor_csv, "Inferences/Second", concurrency=16)
    online_over_floor = of_rounds(paired["served b1 c16"], paired[FLOOR_LABEL])

    # The chosen and the untuned configurations again, side by side, with windows four times as long.
    trials = {
        "brute force's choice": brute["trial"],
        "default search's choice": smart["trial"],
        "untuned": smart["naive"],
    }
    again = side_by_side(workdir, validated, trials, args.rounds, 4 * args.interval_ms)
    for label, trial in trials.items():
        values = list(again[label].values())
        print(
            f"side by side, {label} ({trial}): "
            f"{', '.join(f'{v:.0f}' for v in values) or 'unstable'} infer/s (median {median(values) or 0:.0f})",
            flush=True,
        )
    smart_, brute_, naive_ = (
        again[k] for k in ("default search's choice", "brute force's choice", "untuned")
    )
    # 1 where both chose the same (one set of rounds: exactly 1, no interval)
    quality = (
        interval(1.0, None, 1.0, None)
        if smart["trial"] == brute["trial"]
        else of_rounds(list(smart_.values()), list(brute_.values()))
    )
    tuned = of_rounds(list(smart_.values()), list(naive_.values()))
    same = f"1.000 (both chose {smart['trial']}: exactly 1)"
    print(
        f"search_quality {same if smart['trial'] == brute['trial'] else shown(quality)}; "
        f"tuned_over_naive {shown(tuned)}",
        flush=True,
    )
    for name, pairs in (
        ("search_quality", per_round(smart_, brute_)),
        ("tuned_over_naive", per_round(smart_, naive_)),
    ):
        print(
            f"{name} round by round: {', '.join(f'{v:.3f}' for v in pairs) or 'none'} (median "
            f"{median(pairs) or 0:.3f})",
            flush=True,
        )
    print(
        "trial numbers (one short measurement each; single run, no interval): "
        f"search_quality={ratio(smart['search_best_throughput'], brute['search_best_throughput']):.3f} "
        f"tuned_over_naive={ratio(smart['search_best_throughput'], smart['naive_throughput']):.3f}; "
        f"search_cost in trials alone {ratio(smart['measurements'], brute['measurements']):.3f}"
    )
    print(f"results in {workdir}")
    runs = [(quality.value if quality else 0.0, smart["measurements"] / brute["measurements"])]
    for k in range(2, args.runs + 1):
        runs.append(fresh_search(workdir, config, validated, brute, k, args))
    print(
        f"search quality of {len(runs)} run(s) ({DEFAULT}, fresh trials each, side by side against "
        f"brute force's choice): "
        + ", ".join(f"{q:.3f} at {f:.3f} of the trials" for q, f in runs)
        + f"; worst {min(q for q, _ in runs):.3f}",
        flush=True,
    )
    if args.aoti:
        aoti_against_onnx(workdir)
    native_by_cores(workdir, config, native, args.rounds)
    print(
        f"online served/floor: {shown(online_over_floor)} side by side (b1 c16: served "
        f"{median(paired['served b1 c16']) or 0:.0f}, floor {floor or 0:.0f} infer/s); workflow jobs "
        f"{ratio(s16, workflow_floor):.3f} (served {s16}, floor {workflow_floor})",
        flush=True,
    )
    # The cost counts every measurement each search made: its trials and its side by side.
    cost = ratio(
        smart["measurements"] + smart["side_by_side_measurements"],
        brute["measurements"] + brute["side_by_side_measurements"],
    )
    print(bench_line(offline, online_r, quality, cost, tuned, runs))


def bench_line(
    offline: Ratio | None,
    online: Ratio | None,
    quality: Ratio | None,
    cost: float,
    tuned: Ratio | None,
    runs: list[tuple[float, float]] | None = None,
) -> str:
    """The machine-readable last line: each headline ratio with its 95 % interval's ends
    (<key>_lo, <key>_hi; nan where it has none); search_cost is a count ratio, exact; search_runs
    and search_trials: each --runs run's quality and share of the trials."""
    return (
        f"bench: {keys('offline_ratio', offline)} {keys('online_ratio', online)} "
        f"{keys('search_quality', quality)} search_cost={cost:.3f} {keys('tuned_over_naive', tuned)} "
        f"search_runs={','.join(f'{q:.3f}' for q, _ in runs or [])} "
        f"search_trials={','.join(f'{f:.3f}' for _, f in runs or [])}"
    )


if __name__ == "__main__":
    main()
