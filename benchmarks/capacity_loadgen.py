"""Cross-check of the capacity search (issue #20): one deployment's capacity measured two ways.

    make bench-capacity  (or: python benchmarks/capacity_loadgen.py [--workdir DIR] [--budget-ms N])

The workflow builds the default model's served repository (digits, ONNX, CPU). One tritonserver is
started on it, and on that same server, one after the other:
1. deploysnake's capacity search: perf_analyzer's request-rate mode, Poisson arrivals, batch-1
   requests (open_loop.run_search, as the workflow's perf_analyzer_capacity job runs it);
2. MLPerf Inference's own load generator (mlcommons-loadgen, the `bench` extra) in its Server
   scenario (Poisson arrivals at server_target_qps, the run VALID when its p99 is within
   server_target_latency_ns), driving the server through tritonclient's asynchronous gRPC client
   with the same real samples; the same bracketing and bisection (capacity.search) over loadgen
   runs, a rate within the budget when loadgen says "Performance constraints satisfied" (its p99
   within server_target_latency_ns). Loadgen's VALID also asks for early stopping's confidence,
   which at p99 needs about 660 queries without a late one: more than short runs at low rates
   hold, so it is printed, not required.

Both capacities and their ratio are printed; the last line is machine-readable:

    bench: perf_analyzer_capacity=A loadgen_capacity=B ratio=B/A
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from deploysnake import server, tools  # noqa: E402
from deploysnake.contracts import Target  # noqa: E402
from deploysnake.measuring import capacity, open_loop  # noqa: E402
from deploysnake.repository import triton_model_name  # noqa: E402

REPOSITORY = Path("results/repository/digits/onnx/cpu")
IO = Path("results/export/digits/onnx/io.json")
PERF_DATA = Path("results/perf_data/digits/input.json")
SUMMARY = {
    "valid": re.compile(r"Result is\s*:\s*(\w+)"),
    "constraints": re.compile(r"Performance constraints satisfied\s*:\s*(\w+)"),
    "early_stopping": re.compile(r"Early stopping satisfied\s*:\s*(\w+)"),
    "p50_ns": re.compile(r"50\.00 percentile latency \(ns\)\s*:\s*(\d+)"),
    "p99_ns": re.compile(r"99\.00 percentile latency \(ns\)\s*:\s*(\d+)"),
    "completed": re.compile(r"Completed samples per second\s*:\s*([0-9.]+)"),
}


def build(workdir: Path, config: dict[str, Any]) -> None:
    """The served repository and the perf samples, by the workflow itself."""
    (workdir / "bench.yaml").write_text(yaml.safe_dump(config))
    exe = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    with open(workdir / "snakemake.out", "a") as out:
        subprocess.run(
            [exe, str(REPOSITORY), str(PERF_DATA), "--snakefile", str(ROOT / "Snakefile")]
            + ["--cores", "2", "--configfile", "bench.yaml"],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=3600,
        )


class LoadgenSUT:
    """A loadgen system under test that sends each query sample to Triton (async gRPC) and
    completes it when the answer arrives."""

    def __init__(self, url: str, model: str, io: dict[str, Any], samples: list[dict]) -> None:
        import tritonclient.grpc as grpcclient

        self.client = grpcclient.InferenceServerClient(url)
        self.model = model
        self.outputs = [grpcclient.InferRequestedOutput(t["name"]) for t in io["outputs"]]
        dtypes = {t["name"]: t["dtype"] for t in io["inputs"]}
        self.inputs = []
        for sample in samples:
            tensors = []
            for name, value in sample.items():
                array = np.asarray(value["content"], dtype=dtypes[name]).reshape(
                    [1, *value["shape"]]
                )
                tensor = grpcclient.InferInput(name, list(array.shape), _triton_dtype(array))
                tensor.set_data_from_numpy(array)
                tensors.append(tensor)
            self.inputs.append(tensors)
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def issue(self, query_samples: list[Any]) -> None:
        import mlperf_loadgen as lg

        for qs in query_samples:

            def done(result: Any, error: Any, qid: int = qs.id) -> None:
                if error is not None:
                    with self.lock:
                        self.errors.append(str(error))
                lg.QuerySamplesComplete([lg.QuerySampleResponse(qid, 0, 0)])

            self.client.async_infer(
                self.model, self.inputs[qs.index % len(self.inputs)], done, outputs=self.outputs
            )

    def flush(self) -> None:
        pass


def _triton_dtype(array: np.ndarray) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return str(np_to_triton_dtype(array.dtype))


def server_totals(sut: LoadgenSUT) -> dict[str, float]:
    """Triton's cumulative statistics of the model (its statistics extension): successful requests,
    and their time inside the server, in the queue and in compute (ns)."""
    stats = sut.client.get_inference_statistics(sut.model, as_json=True)["model_stats"][0]
    inference = stats["inference_stats"]

    def ns(key: str) -> float:
        return float(inference.get(key, {}).get("ns", 0))

    return {
        "count": float(inference.get("success", {}).get("count", 0)),
        "request_ns": ns("success"),
        "queue_ns": ns("queue"),
        "compute_ns": ns("compute_input") + ns("compute_infer") + ns("compute_output"),
    }


def loadgen_run(
    sut: LoadgenSUT, rate: int, budget_ms: float, duration_ms: int, outdir: Path
) -> dict[str, Any]:
    """One loadgen Server-scenario run at `rate` queries/s (PerformanceOnly): its summary, with what
    the server spent per request in the same run (Triton's statistics: `server_request_us`, of
    which `server_queue_us` and `server_compute_us`, averages in µs) and the client's CPU: the
    cores this process (loadgen, tritonclient and their Python callbacks) used over the run
    (`client_cores`) and its CPU time per query (`client_cpu_us_per_query`, µs)."""
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Server
    settings.mode = lg.TestMode.PerformanceOnly
    settings.server_target_qps = float(rate)
    settings.server_target_latency_ns = int(budget_ms * 1e6)
    settings.server_target_latency_percentile = 0.99
    settings.min_duration_ms = duration_ms
    settings.max_duration_ms = 4 * duration_ms
    settings.min_query_count = 100
    outdir.mkdir(parents=True, exist_ok=True)
    log = lg.LogSettings()
    log.log_output.outdir = str(outdir)
    log.log_output.copy_summary_to_stdout = False
    count = len(sut.inputs)
    system = lg.ConstructSUT(sut.issue, sut.flush)
    qsl = lg.ConstructQSL(count, count, lambda _: None, lambda _: None)
    before, cpu0, wall0 = server_totals(sut), time.process_time(), time.monotonic()
    try:
        lg.StartTestWithLogSettings(system, qsl, settings, log)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(system)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    after = server_totals(sut)
    served = after["count"] - before["count"]

    def per_request(key: str) -> float | None:
        return round((after[key] - before[key]) / served / 1000, 1) if served else None

    text = (outdir / "mlperf_log_summary.txt").read_text()
    found = {k: (m.group(1) if (m := p.search(text)) else None) for k, p in SUMMARY.items()}
    return {
        "server_request_us": per_request("request_ns"),
        "server_queue_us": per_request("queue_ns"),
        "server_compute_us": per_request("compute_ns"),
        "client_cores": round(cpu / wall, 2) if wall else None,
        "client_cpu_us_per_query": round(cpu / served * 1e6, 1) if served else None,
        "valid": found["valid"] == "VALID",
        "constraints": found["constraints"] == "Yes",
        "early_stopping": found["early_stopping"] == "Yes",
        "p50_us": int(found["p50_ns"]) / 1000 if found["p50_ns"] else None,
        "p99_us": int(found["p99_ns"]) / 1000 if found["p99_ns"] else None,
        "completed": float(found["completed"]) if found["completed"] else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, help="keep the workflow's files here")
    parser.add_argument("--budget-ms", type=float, default=10.0, help="the p99 SLA (ms)")
    parser.add_argument("--start-rate", type=int, default=200)
    parser.add_argument("--resolution", type=float, default=0.1)
    parser.add_argument("--max-measurements", type=int, default=10)
    parser.add_argument("--duration-ms", type=int, default=5000, help="each loadgen run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="deploysnake-capacity-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["formats"] = ["onnx"]
    build(workdir, config)
    settings = {
        **config["perf"]["capacity"],
        "start_rate": args.start_rate,
        "resolution": args.resolution,
        "max_measurements": args.max_measurements,
        "p99_budget_ms": args.budget_ms,
    }
    perf = {k: v for k, v in config["perf"].items() if k not in ("offline", "online", "capacity")}
    io = json.loads((workdir / IO).read_text())
    samples = json.loads((workdir / PERF_DATA).read_text())["data"]
    name = triton_model_name("digits", "onnx")
    executable = tools.perf_analyzer(perf["perf_analyzer"])
    with server.from_settings(
        workdir / REPOSITORY, config["triton"], workdir / "bench.server.log"
    ) as running:
        started = time.monotonic()
        outcome = open_loop.run_search(
            executable,
            running,
            Target("digits", "onnx", "cpu"),
            name,
            workdir / IO,
            workdir / REPOSITORY,
            settings,
            perf,
            args.budget_ms,
            workdir / "bench_rates" / time.strftime("%Y%m%dT%H%M%S"),
            workdir / PERF_DATA,
        )
        pa = capacity.summary(outcome, Target("digits", "onnx", "cpu"), settings, args.budget_ms)
        pa_s = time.monotonic() - started
        print(f"perf_analyzer: {capacity.describe(pa)} ({pa_s:.0f} s)", flush=True)
        # perf_analyzer's own split at its capacity (µs, averages): client send/receive and the
        # server's queue and compute, to set beside loadgen's per-run figures below.
        print(f"perf_analyzer at its capacity, latency breakdown (us): {pa['breakdown_us']}")

        sut = LoadgenSUT(running.grpc_url, name, io, samples)
        runs: dict[int, dict[str, Any]] = {}

        def measure(rate: int, step: str) -> capacity.Rate:
            figures = loadgen_run(
                sut, rate, args.budget_ms, args.duration_ms, workdir / "loadgen" / f"r{rate}"
            )
            runs[rate] = figures
            within = figures["constraints"] and figures["p99_us"] is not None
            print(
                f"loadgen {step}: {rate} q/s: p99 {figures['p99_us']} us, constraints "
                f"{'met' if figures['constraints'] else 'NOT met'} (early stopping "
                f"{'met' if figures['early_stopping'] else 'not met'}, "
                f"{'VALID' if figures['valid'] else 'INVALID'}), completed "
                f"{figures['completed']} /s; in the server {figures['server_request_us']} us a "
                f"request (queue {figures['server_queue_us']}, compute "
                f"{figures['server_compute_us']}); client {figures['client_cores']} cores, "
                f"{figures['client_cpu_us_per_query']} us CPU a query",
                flush=True,
            )
            return capacity.Rate(
                rate,
                "ok" if within else "over_budget",
                figures["p50_us"],
                figures["p99_us"] if within else None,
                {"request_rate": rate, **figures},
            )

        started = time.monotonic()
        lg_outcome = capacity.search(
            measure,
            args.budget_ms * 1000.0,
            args.start_rate,
            int(settings["max_rate"]),
            args.resolution,
            args.max_measurements,
        )
        lg_s = time.monotonic() - started
        if sut.errors:
            print(f"loadgen: {len(sut.errors)} failed request(s), first: {sut.errors[0]}")
    lg_cap = lg_outcome["capacity"].rate if lg_outcome["capacity"] else None
    print(
        f"loadgen: {lg_cap} q/s at p99 <= {args.budget_ms:g} ms ({lg_outcome['status']}, "
        f"{len(lg_outcome['steps'])} runs, {lg_s:.0f} s)"
    )
    ratio = lg_cap / pa["capacity_rps"] if lg_cap and pa["capacity_rps"] else None
    print(
        f"bench: perf_analyzer_capacity={pa['capacity_rps']} loadgen_capacity={lg_cap} "
        f"ratio={ratio:.3f}"
        if ratio is not None
        else f"bench: perf_analyzer_capacity={pa['capacity_rps']} loadgen_capacity={lg_cap} "
        "ratio=none"
    )


if __name__ == "__main__":
    main()
