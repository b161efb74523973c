"""Process hygiene: nothing the workflow starts outlives the process that started it, one run at a
time in a folder, and a lock left by a killed Snakemake does not block the next run."""

from __future__ import annotations

import atexit
import ctypes
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from .errors import UserError

log = logging.getLogger(__name__)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """preexec_fn for children: the kernel sends `sig` to the child when its parent dies (even by SIGKILL)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def _is_snakemake(proc: psutil.Process) -> bool:
    """Whether proc runs Snakemake: its `snakemake` script, or `python [options] -m snakemake`."""
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    if any(
        Path(part).name == "snakemake" or part.endswith("snakemake/__main__.py")
        for part in cmdline[:3]
    ):
        return True
    # The interpreter's own options come before -m (python -u -X dev -m snakemake ...).
    return any(a == "-m" and b == "snakemake" for a, b in zip(cmdline, cmdline[1:], strict=False))


def watch_snakemake(interval_s: float = 1.0) -> threading.Thread | None:
    """If the Snakemake that runs this job dies (kill -9), end this job with SIGTERM, so its cleanup runs
    (servers stopped, partial outputs not written) instead of it going on as an orphan."""
    try:
        owner = next((p for p in psutil.Process().parents() if _is_snakemake(p)), None)
    except psutil.Error:
        return None
    if owner is None:
        return None

    def watch() -> None:
        while owner.is_running() and owner.status() != psutil.STATUS_ZOMBIE:
            threading.Event().wait(interval_s)
        log.error("snakemake (pid %d) is gone: stopping this job", owner.pid)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="watch-snakemake", daemon=True)
    thread.start()
    return thread


# A real run records who it is beside Snakemake's own locks (.snakemake/locks/): Snakemake removes
# that folder when the run ends and on `snakemake --unlock`, so the record goes with the locks.
OWNER_FILE = "deploysnake-run.json"
_LOCK_NAME = re.compile(r"[0-9]+\.(input|output)\.lock")


def _this_run() -> dict[str, Any]:
    me = psutil.Process()
    return {"pid": me.pid, "host": socket.gethostname(), "started": me.create_time()}


def run_state(record: dict[str, Any]) -> str:
    """ "alive", "gone" or "unknown" (another host: nothing here can prove it gone) for an owner
    record {pid, host, started}: the same pid alone is not the run, its start time must match too
    (a pid is reused after the process ends)."""
    if record.get("host") != socket.gethostname():
        return "unknown"
    try:
        proc = psutil.Process(int(record["pid"]))
        started = proc.create_time()
    except psutil.NoSuchProcess:
        return "gone"
    except (psutil.Error, KeyError, TypeError, ValueError):
        return "unknown"
    return "alive" if abs(started - float(record.get("started", -1))) < 0.01 else "gone"


def claim_workdir(workdir: str | Path) -> str | None:
    """Make this process (a real run's main Snakemake process, before it takes its locks) the one
    run working in workdir; returns a line to log when it removed a gone run's locks.

    Raises UserError when another run works there (alive, or on another host where it cannot be
    proven gone): two runs in one folder would redo each other's jobs (rerun-incomplete), and the
    first to end removes the other's locks. Locks whose run is provably gone (same host, its pid no
    longer the process that started then) are removed; locks without a record (another tool, an
    older version) are left to Snakemake, whose message names `--unlock`. Never call it in a dry
    run: only a run that takes locks may remove any."""
    locks = Path(workdir) / ".snakemake" / "locks"
    record_path = locks / OWNER_FILE
    me = _this_run()
    removed = None
    if record_path.exists():
        try:
            record = dict(json.loads(record_path.read_text()))
        except (OSError, ValueError, TypeError):
            record = {}
        if record.get("pid") == me["pid"] and record.get("host") == me["host"]:
            return None  # this process parsed the Snakefile once already
        state = run_state(record)
        if state != "gone":
            when = (
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record["started"])))
                if "started" in record
                else "?"
            )
            raise UserError(
                f"another run works in {Path(workdir).resolve()}: Snakemake pid "
                f"{record.get('pid', '?')} on host {record.get('host', '?')}, started {when} "
                f"({state}); two runs in one folder would redo each other's jobs. Wait for it to "
                "end; if it is gone (e.g. its machine went down), run `snakemake --unlock` first"
            )
        for path in locks.iterdir():
            if _LOCK_NAME.fullmatch(path.name) or path == record_path:
                path.unlink(missing_ok=True)
        removed = (
            f"removed the Snakemake locks in {locks} left by run pid {record.get('pid')} on "
            f"{record.get('host')}, which is gone (killed)"
        )
        log.warning("%s", removed)
    locks.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(record_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise UserError(
            f"another run started in {Path(workdir).resolve()} at the same moment "
            f"({record_path}); wait for it to end"
        ) from None
    with os.fdopen(fd, "w") as handle:
        json.dump(me, handle)
    atexit.register(_release, record_path, me)
    return removed


def _release(record_path: Path, me: dict[str, Any]) -> None:
    """At exit: remove this run's record if it is still there (Snakemake removes it with its locks
    when the run ran; not when it stopped before, e.g. refused by a lock)."""
    try:
        if json.loads(record_path.read_text()) == me:
            record_path.unlink()
    except (OSError, ValueError):
        pass


# ---------------------------------------------------------------- the CPUs a job may really use

# What Snakemake exports into a job's environment from its thread count (and what the numeric
# libraries read to size their pools): with `threads: workflow.cores` and `--cores 8`, 8 even on a
# 2-core machine. Every measuring job overwrites them with the CPUs it may use.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
# The count every process of a measuring job sizes its runtime from (the served runner reads it).
CPUS_VARIABLE = "DEPLOYSNAKE_CPUS"


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup and its ancestors, in cores (None: no quota).

    cgroup v2: `cpu.max` ("<quota> <period>" or "max <period>"); v1: `cpu.cfs_quota_us` (-1: none)
    over `cpu.cfs_period_us` (kernel docs: admin-guide/cgroup-v2.rst, scheduler/sched-bwc.rst)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:  # v2
            bases = [root]
            files: tuple[str, ...] = ("cpu.max",)
        elif "cpu" in controllers.split(","):  # v1
            bases = [root / controllers, root / "cpu", root / "cpu,cpuacct"]
            files = ("cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        for base in dict.fromkeys(bases):
            # Inside a container the cgroup path may be namespaced: also look at the mount's root.
            for folder in dict.fromkeys([base / path.lstrip("/"), base]):
                here = folder
                while True:
                    quota = _read_quota(here, files)
                    if quota is not None:
                        quotas.append(quota)
                    if here == base or here.parent == here:
                        break
                    here = here.parent
    return min(quotas) if quotas else None


def _read_quota(folder: Path, files: tuple[str, ...]) -> float | None:
    try:
        if files == ("cpu.max",):
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota_us = int((folder / files[0]).read_text())
        period_us = int((folder / files[1]).read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


def usable_cpus() -> tuple[int, str]:
    """(count, how it was found): the CPUs this process may actually use.

    The smallest of: its CPU affinity (`os.sched_getaffinity`, which a SLURM task's binding and a
    cpuset narrow), the cgroup v2/v1 CPU quota rounded down (at least 1), and under SLURM the
    allocation on this node (`SLURM_CPUS_ON_NODE`, `SLURM_CPUS_PER_TASK`). Never Snakemake's
    `--cores` or the thread variables it exports."""
    affinity = len(os.sched_getaffinity(0))
    found = {"affinity": affinity}
    quota = _cgroup_quota()
    if quota is not None:
        found["cgroup quota"] = max(1, int(quota))
    for name in ("SLURM_CPUS_ON_NODE", "SLURM_CPUS_PER_TASK"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            found[name] = int(value)
    count = min(found.values())
    how = ", ".join(f"{k} {v}" for k, v in found.items())
    return count, how


def resolve_runtime_threads(setting: int, instances: int, cpus: int) -> int:
    """Runtime threads per instance: `setting` when set (> 0); 0 (the runtime's default) becomes the
    job's CPUs shared among the instances (at least 1), so served and in-process runs use the same
    explicit count and never more threads than the job has CPUs."""
    return int(setting) if int(setting) > 0 else max(1, cpus // max(1, int(instances)))


def job_cpus() -> int:
    """The CPUs of this job: $DEPLOYSNAKE_CPUS where the job already sized its pools, else
    usable_cpus()."""
    value = os.environ.get(CPUS_VARIABLE, "")
    return int(value) if value.isdigit() and int(value) > 0 else usable_cpus()[0]


def thread_env(cpus: int) -> dict[str, str]:
    """The environment variables that size a started process's thread pools to `cpus`."""
    return {**dict.fromkeys(THREAD_VARIABLES, str(cpus)), CPUS_VARIABLE: str(cpus)}


def size_thread_pools(cpus: int | None = None) -> int:
    """Set this process's thread variables (and torch's pool, if torch is loaded) to the job's CPUs,
    so whatever it starts inherits them; returns the count. Called first thing in every job."""
    import sys

    if cpus is None:
        cpus, how = usable_cpus()
    else:
        how = "given"
    inherited = {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ}
    os.environ.update(thread_env(cpus))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(cpus)
    log.info(
        "CPUs this job may use: %d (%s); thread variables set to %d%s",
        cpus,
        how,
        cpus,
        f" (inherited {inherited})" if inherited else "",
    )
    return cpus


def thread_settings(pid: int) -> dict[str, str]:
    """What a running process got, read back from it: its thread count (/proc/<pid>/status Threads)
    and the thread variables of its environment (/proc/<pid>/environ)."""
    proc = psutil.Process(pid)
    got = {"threads": str(proc.num_threads())}
    try:
        environ = proc.environ()
    except (psutil.AccessDenied, psutil.ZombieProcess):
        environ = {}
    for name in (*THREAD_VARIABLES, CPUS_VARIABLE):
        if name in environ:
            got[name] = environ[name]
    return got
