"""What a measured window used, and what else ran on the machine meanwhile.

Every measured window (a perf point, a native batch size, a tuning trial, a side-by-side round) runs
inside `Window`: from psutil it takes the CPU time the host spent outside the measurement's own
processes (this job and everything it started: the server tree, perf_analyzer), the CPU time of the
server tree and of the load generator, and the server tree's peak resident memory; on a GPU device
the other processes on the GPU (nvidia-smi) and the GPU's utilisation and memory from Triton's
metrics endpoint. A window whose foreign load passes `perf.max_foreign_cpu` is `disturbed`.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import psutil

log = logging.getLogger(__name__)

# The row columns a window adds (cores: CPU seconds per second of the window).
COLUMNS = [
    "foreign_cpu",
    "server_cpu",
    "client_cpu",
    "job_cpu",
    "server_peak_rss_mb",
    "window_s",
]
GPU_COLUMNS = ["gpu_utilization", "gpu_memory_used_mb", "foreign_gpu_processes"]


def _host_busy_s() -> float:
    """CPU seconds the whole host spent in processes (user + nice + system; guest time is inside
    user), from /proc/stat through psutil.cpu_times(). Interrupt time is left out: with the kernel's
    IRQ time accounting it is charged to no process, so the measurement's own loopback traffic
    (softirq) would pass for foreign load."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system)


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu_s(procs: list[psutil.Process], children: bool = True) -> dict[int, float]:
    """Per pid, CPU seconds of the process, with those of the children it reaped (children=True):
    a process that ends inside the window moves its time into its parent's reaped-children counters,
    so sum(end) - sum(start) over a tree counts every process that ran in it during the window."""
    out = {}
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        out[proc.pid] = t.user + t.system + (t.children_user + t.children_system if children else 0)
    return out


def _rss_bytes(procs: list[psutil.Process]) -> int:
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def tree_rss_mb(pid: int) -> float:
    """Resident memory (MiB, 2**20 bytes) of process `pid` and all its descendants (a server's
    backend stubs), summed from psutil; 0.0 when the process is gone. Pages the processes share
    count once per process, as RSS does."""
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return 0.0
    return _rss_bytes(_tree(root)) / 2**20


def gpu_processes() -> list[tuple[int, float]]:
    """(pid, used MiB) of every compute process on the machine's GPUs (nvidia-smi); [] without."""
    try:
        done = subprocess.run(
            [
                "nvidia-smi",
                "--query-compute-apps=pid,used_memory",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in done.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit():
            try:
                found.append((int(parts[0]), float(parts[1])))
            except ValueError:
                continue
    return found


_METRIC = re.compile(r"^(nv_gpu_utilization|nv_gpu_memory_used_bytes)\{[^}]*\}\s+(\S+)$", re.M)


def triton_gpu_metrics(metrics_url: str, timeout_s: float = 2.0) -> dict[str, float]:
    """GPU utilisation (0-1, mean over the server's GPUs) and memory used (MiB, sum) from Triton's
    Prometheus endpoint (`nv_gpu_utilization`, `nv_gpu_memory_used_bytes`: Triton's metrics docs);
    {} where the server exposes none (no GPU, metrics off)."""
    try:
        with urllib.request.urlopen(f"http://{metrics_url}/metrics", timeout=timeout_s) as r:
            text = r.read().decode(errors="replace")
    except OSError:
        return {}
    seen: dict[str, list[float]] = {}
    for name, value in _METRIC.findall(text):
        try:
            seen.setdefault(name, []).append(float(value))
        except ValueError:
            continue
    out = {}
    if seen.get("nv_gpu_utilization"):
        util = seen["nv_gpu_utilization"]
        out["gpu_utilization"] = sum(util) / len(util)
    if seen.get("nv_gpu_memory_used_bytes"):
        out["gpu_memory_used_mb"] = sum(seen["nv_gpu_memory_used_bytes"]) / 2**20
    return out


@dataclass
class Window:
    """`with Window(server_pid, device, metrics_url) as w: <measure>`; then `w.columns()`.

    server_pid: the tritonserver of the measurement (None: an in-process measurement);
    metrics_url: host:port of Triton's metrics endpoint (GPU figures on GPU devices);
    interval_s: how often the sampler thread reads memory (and GPU metrics)."""

    server_pid: int | None = None
    device: str = "cpu"
    metrics_url: str | None = None
    interval_s: float = 0.2
    result: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> Window:
        self._me = psutil.Process()
        try:  # a server already gone: the caller's check_alive says why, with its log
            self._server = psutil.Process(self.server_pid) if self.server_pid else None
        except psutil.Error:
            self._server = None
        self._stop = threading.Event()
        self._peak_rss = 0
        self._gpu: list[dict[str, float]] = []
        self._gpu_pids: set[int] = set()
        self._sampler = threading.Thread(target=self._sample, name="usage-window", daemon=True)
        self._t0 = time.monotonic()
        self._host0 = _host_busy_s()
        self._own0 = _cpu_s(_tree(self._me))
        self._server0 = _cpu_s(_tree(self._server)) if self._server else {}
        me = self._me.cpu_times()
        self._self0 = me.user + me.system
        self._reaped0 = me.children_user + me.children_system
        self._sampler.start()
        return self

    def _sample(self) -> None:
        gpu_every = max(1, round(1.0 / self.interval_s))
        k = 0
        while not self._stop.is_set():
            if self._server is not None:
                self._peak_rss = max(self._peak_rss, _rss_bytes(_tree(self._server)))
            if self.device != "cpu" and k % gpu_every == 0:
                if self.metrics_url and (got := triton_gpu_metrics(self.metrics_url)):
                    self._gpu.append(got)
                self._gpu_pids |= {pid for pid, _ in gpu_processes()}
            k += 1
            self._stop.wait(self.interval_s)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._sampler.join(timeout=15)
        wall = max(1e-6, time.monotonic() - self._t0)
        host = _host_busy_s() - self._host0
        tree = _tree(self._me)
        own = sum(_cpu_s(tree).values()) - sum(self._own0.values())
        me = self._me.cpu_times()
        result = {
            "window_s": wall,
            # What the host did besides this job's process tree, in cores (clock ticks: ±0.01 s).
            "foreign_cpu": max(0.0, (host - own) / wall),
            # This job's own process (its measuring threads, e.g. the in-process runtimes).
            "job_cpu": (me.user + me.system - self._self0) / wall,
            # Children this job reaped in the window: the load generator (perf_analyzer).
            "client_cpu": (me.children_user + me.children_system - self._reaped0) / wall,
        }
        if self._server is not None:
            server = sum(_cpu_s(_tree(self._server)).values()) - sum(self._server0.values())
            result["server_cpu"] = max(0.0, server) / wall
            result["server_peak_rss_mb"] = self._peak_rss / 2**20
        if self.device != "cpu":
            own_pids = {p.pid for p in tree} | {os.getpid()}
            result["foreign_gpu_processes"] = float(len(self._gpu_pids - own_pids))
            if self._gpu:
                utils = [g["gpu_utilization"] for g in self._gpu if "gpu_utilization" in g]
                mems = [g["gpu_memory_used_mb"] for g in self._gpu if "gpu_memory_used_mb" in g]
                if utils:
                    result["gpu_utilization"] = sum(utils) / len(utils)
                if mems:
                    result["gpu_memory_used_mb"] = max(mems)
        self.result = result

    def columns(self) -> dict[str, Any]:
        """The row columns: cores and MiB rounded for the CSV."""
        return {
            k: round(v, 3) if k != "server_peak_rss_mb" else round(v, 1)
            for k, v in self.result.items()
        }

    def disturbed(self, max_foreign_cpu: float) -> bool:
        """Whether the foreign load passed the limit (cores), or, on a GPU device, another process
        used the GPU during the window."""
        return (
            self.result.get("foreign_cpu", 0.0) > max_foreign_cpu
            or self.result.get("foreign_gpu_processes", 0.0) > 0
        )


def per_thousand_ms(cores: float | None, throughput: float | None) -> float | None:
    """CPU time per 1,000 inferences in ms, from a window's cores (CPU s per s) and its throughput
    (infer/s): cores / throughput * 1e6. None where either is missing or the throughput is 0."""
    if cores is None or not throughput:
        return None
    return cores / throughput * 1e6
