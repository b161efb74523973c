"""Process hygiene: nothing the workflow starts outlives the process that started it, and a lock left
by a killed Snakemake does not block the next run."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """preexec_fn for children: the kernel sends `sig` to the child when its parent dies (even by SIGKILL)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def _is_snakemake(proc: psutil.Process) -> bool:
    try:
        return any(
            Path(part).name == "snakemake" or part.endswith("snakemake/__main__.py")
            for part in proc.cmdline()[:3]
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


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


def remove_stale_locks(workdir: str | Path) -> bool:
    """Remove .snakemake/locks when no other Snakemake process runs in workdir on this machine: the
    locks of a run that was killed (kill -9, power loss), which would otherwise need `--unlock`."""
    locks = Path(workdir) / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        return False
    me = os.getpid()
    mine = {me} | {p.pid for p in psutil.Process(me).parents()}
    here = Path(workdir).resolve()
    for proc in psutil.process_iter():
        if proc.pid in mine or not _is_snakemake(proc):
            continue
        try:
            if Path(proc.cwd()).resolve() == here:
                return False  # a live run holds them
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    for lock in locks.iterdir():
        lock.unlink(missing_ok=True)
    log.warning("removed stale Snakemake locks in %s (left by a run that was killed)", locks)
    return True
