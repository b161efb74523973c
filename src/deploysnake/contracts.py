"""The words the jobs' files share: the statuses written in the CSVs and JSON files,
perf_analyzer's CSV headers with the field names the package gives them, a served stage's target
(model, format, device) and the Triton settings it is served with (ServedSettings).

Statuses and headers are StrEnums: a member is its value as a str (`Status.OK == "ok"`, `f"{Status.OK}"` is "ok",
json and csv write "ok"), so the files keep the same strings.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class Status(StrEnum):
    """A row's or a result's status in results/ (CSV column `status`, JSON key "status")."""

    OK = "ok"  # measured, or built
    FAILED = "failed"  # a failure record: the stage could not run (deploysnake.failures)
    UNSTABLE = "unstable"  # no stable measurement, twice (perf, capacity)
    DISTURBED = "disturbed"  # foreign load above perf.max_foreign_cpu, twice (deploysnake.usage)
    CLIENT_BEHIND = "client_behind"  # the client fell behind its schedule (capacity)
    BOUNDED = "bounded"  # a capacity search that reached max_measurements first
    AT_MAX_RATE = "at_max_rate"  # a capacity search that reached max_rate within the budget
    PASSED = "passed"  # the regression gate's verdict (deploysnake.gate)
    NO_BASELINE = "no baseline"  # the gate without a baseline summary to compare with
    BASELINE_SUSPECT = "baseline suspect"  # served above in-process by more than the spread, twice
    # not measured: perf.max_job_s, the sweep's stop or the probe's prediction (perf, native)
    LEFT_OUT = "left out"
    NOT_RUN = "not_run"  # a served stage with no result for a format (summary.json)


class Header(StrEnum):
    """perf_analyzer's CSV headers (its -f file, 2.51), which perf.csv and the capacity CSVs keep as
    their column names. Latencies and the breakdown are in µs, throughput in inferences/s."""

    CONCURRENCY = "Concurrency"
    THROUGHPUT = "Inferences/Second"
    CLIENT_SEND = "Client Send"
    NETWORK = "Network+Server Send/Recv"
    SERVER_QUEUE = "Server Queue"
    COMPUTE_INPUT = "Server Compute Input"
    COMPUTE_INFER = "Server Compute Infer"
    COMPUTE_OUTPUT = "Server Compute Output"
    CLIENT_RECV = "Client Recv"
    P50 = "p50 latency"
    P90 = "p90 latency"
    P95 = "p95 latency"
    P99 = "p99 latency"


# perf_analyzer's first column in request-rate mode, where closed loop has "Concurrency".
REQUEST_RATE = "Request Rate"
# perf_analyzer's header -> its field name in the package's JSON files (summary.json's online points
# carry infer_per_s, p50_us and p99_us), as Model Analyzer's perf_metric_table names each
# perf_analyzer column once. Latencies in µs, throughput in inferences/s.
FIELDS: dict[str, str] = {
    Header.CONCURRENCY: "concurrency",
    REQUEST_RATE: "request_rate",
    Header.THROUGHPUT: "infer_per_s",
    Header.CLIENT_SEND: "client_send_us",
    Header.NETWORK: "network_us",
    Header.SERVER_QUEUE: "server_queue_us",
    Header.COMPUTE_INPUT: "compute_input_us",
    Header.COMPUTE_INFER: "compute_infer_us",
    Header.COMPUTE_OUTPUT: "compute_output_us",
    Header.CLIENT_RECV: "client_recv_us",
    Header.P50: "p50_us",
    Header.P90: "p90_us",
    Header.P95: "p95_us",
    Header.P99: "p99_us",
}
# perf_analyzer's columns in its own order; the latency percentiles; the latency breakdown (the
# parts of a request's time, client to server and back).
PERF_ANALYZER_COLUMNS: list[str] = list(Header)
PERCENTILES: list[str] = [Header.P50, Header.P90, Header.P95, Header.P99]
BREAKDOWN: list[str] = [
    Header.CLIENT_SEND,
    Header.NETWORK,
    Header.SERVER_QUEUE,
    Header.COMPUTE_INPUT,
    Header.COMPUTE_INFER,
    Header.COMPUTE_OUTPUT,
    Header.CLIENT_RECV,
]


# The runtime's knobs beside its threads, as the triton section and a tuned configuration name them
# (config.pbtxt parameters of Triton's onnxruntime and PyTorch backends; deploysnake.runtime).
RUNTIME_KNOBS = ("inter_op_threads", "execution_mode", "graph_optimization_level")


@dataclass(frozen=True)
class Target:
    """One model x format x device: what a served stage's job measures (its wildcards)."""

    model: str
    format: str
    device: str

    @classmethod
    def of(cls, wildcards: Any) -> Target:
        """The target a job's wildcards name (Snakemake's `model`, `format` and `device`)."""
        return cls(str(wildcards.model), str(wildcards.format), str(wildcards.device))

    def columns(self) -> dict[str, str]:
        """The key columns every served stage's rows start with: model, format, device."""
        return {"model": self.model, "format": self.format, "device": self.device}


@dataclass(frozen=True)
class ServedSettings:
    """The Triton settings one model x format x device is served with, resolved once by the
    repository job (the triton section, or the configuration its tuning search chose) and written
    beside the repository (results/repository/<model>/<format>/<device>.json); every later job
    (accuracy, perf, capacity, native baseline) reads them here, never the config, chosen.json or
    config.pbtxt again.

    model_name: the model's name in the repository; max_batch_size: Triton's (0: unbatched, each
    request one whole sample); instances: model instances on this device; runtime_threads: threads
    per instance of the runtime (0: the runtime's default, or the job's CPUs over the instances in
    the bundled runner); runtime_options: RUNTIME_KNOBS' values; trial: the tuning trial id of a
    tuned format (None: the triton section as configured)."""

    model_name: str
    device: str
    max_batch_size: int
    instances: int
    runtime_threads: int
    runtime_options: dict[str, Any] = field(default_factory=dict)
    trial: str | None = None

    def write(self, path: str | Path) -> None:
        """Write as JSON (keys sorted, so the same settings give the same bytes)."""
        Path(path).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> ServedSettings:
        """Read what write wrote. Raises OSError, json.JSONDecodeError, or TypeError for a file
        whose keys are not these (an older run's: run the repository job again)."""
        return cls(**json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class TunedConfiguration:
    """What a tuning search chose for one model x format x device, as the repository job (the
    served repository, ServedSettings) and the deploy job (the native repository) take it from
    results/tuning/<model>/<format>/<device>/chosen.json (written by tuning.plan.choose, beside the
    measurements the report shows). trial: the chosen trial's id (None where no trial was stable);
    triton: the triton section with the trial's settings in it."""

    trial: str | None
    triton: dict[str, Any]

    @classmethod
    def read(cls, path: str | Path) -> TunedConfiguration:
        """Raises OSError, json.JSONDecodeError, or KeyError for a file without "triton"."""
        doc = json.loads(Path(path).read_text())
        return cls(doc.get("trial"), dict(doc["triton"]))


def number(value: Any) -> float | None:
    """A CSV cell or JSON value as a float: None for an empty cell, None, a non-number or NaN
    (a figure that was not measured)."""
    try:
        out = float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return None if out is None or math.isnan(out) else out
