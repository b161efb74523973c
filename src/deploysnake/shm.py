"""Turns for perf_analyzer's system shared-memory regions, host-wide.

perf_analyzer 2.51 (triton-inference-server/perf_analyzer, src/infer_data_manager_shm.cc) names its
system shared-memory regions after the model's tensors alone, `/<input>_<stream>_<step>` and
`/<output>` (TensorToRegionName: the tensor name without slashes), and makes each with the client
library's CreateSharedMemoryRegion: `shm_open(O_RDWR | O_CREAT)` (no O_EXCL), then `ftruncate` to
its own size. Two perf_analyzers on one host whose models share a tensor name (every model with an
`image` input, say: the digits recipe and a ResNet) therefore share the files under /dev/shm: the
second one's ftruncate cuts the first one's regions to its own size, and the first one's server,
which has them mapped, dies of SIGBUS when it reads an input past the new end (a larger size
instead makes it read the other one's data, silently). Each call that sends through system shared
memory takes its turn (`turn`): an exclusive lock per region name, in a lock file beside the
regions, held for the whole perf_analyzer call. The lock files (empty) stay: one removed while
another call waits on it would let a third call lock a new file of the same name beside it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

# Where shm_open's names live on Linux (glibc: /dev/shm/<name>); the locks sit beside them so that
# exactly the processes that share the regions (the same host, the same /dev/shm) share the locks.
SHM_DIR = Path("/dev/shm")
LOCK_PREFIX = "deploysnake-perf-shm-"
# How often a waiting call tries the lock again (seconds), and how often it says it still waits.
POLL_S = 0.2
SAY_EVERY_S = 60.0


def region_name(tensor: str) -> str:
    """The base name perf_analyzer gives a tensor's regions: the tensor name without '/' and '\\'
    (perf_analyzer's TensorToRegionName)."""
    return tensor.replace("/", "").replace("\\", "")


def _lock_path(name: str, folder: Path) -> Path:
    # A file name of the region's name where it is plain, and a hash that tells names apart always.
    plain = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64]
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return folder / f"{LOCK_PREFIX}{plain}-{digest}.lock"


def _open_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    with contextlib.suppress(OSError):  # another user's file: flock on a read-only fd works too
        os.fchmod(fd, 0o666)  # the lock serves every user of this host
    return fd


@contextlib.contextmanager
def turn(tensors: Iterable[str], folder: Path | None = None) -> Iterator[float]:
    """Hold the host-wide turn for the shared-memory regions of `tensors` (a model's input and output
    names): an exclusive flock per region name on `<folder>/deploysnake-perf-shm-<name>-<hash>.lock`
    (folder: /dev/shm, else the temporary directory), taken in sorted order so that two calls never
    wait on each other crosswise. Waits, with a log line, while another call holds one of them;
    yields the seconds waited. The locks go with the process (a killed holder frees them)."""
    if folder is None:
        folder = SHM_DIR if SHM_DIR.is_dir() else Path(tempfile.gettempdir())
    names = sorted({region_name(t) for t in tensors})
    fds: list[int] = []
    started = time.monotonic()
    said = 0.0
    try:
        for name in names:
            fd = _open_lock(_lock_path(name, folder))
            fds.append(fd)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                waited = time.monotonic() - started
                if not said or waited - said >= SAY_EVERY_S:
                    log.info(
                        "waiting (%.0f s so far) for another perf_analyzer on this host that uses "
                        "shared-memory regions named %s: perf_analyzer names them after the "
                        "tensors alone, so two at once would overwrite each other's",
                        waited,
                        ", ".join(names),
                    )
                    said = waited or 1e-9
                time.sleep(POLL_S)
        yield time.monotonic() - started
    finally:
        for fd in reversed(fds):
            os.close(fd)  # closing the last descriptor of the open file releases its flock


def leftovers(tensors: Iterable[str], folder: Path = SHM_DIR) -> list[Path]:
    """Region files of these tensors that exist under `folder` (/dev/shm): `<name>` (an output's)
    and `<name>_<stream>_<step>` (an input's). Held in their turn, they are leftovers of a
    perf_analyzer that did not end by itself (it unlinks its regions at exit), or in use by a
    perf_analyzer outside deploysnake."""
    found: list[Path] = []
    if not folder.is_dir():
        return found
    names = {region_name(t) for t in tensors}
    pattern = re.compile(r"(?P<name>.+)_\d+_\d+")
    for path in folder.iterdir():
        match = pattern.fullmatch(path.name)
        if path.name in names or (match and match["name"] in names):
            found.append(path)
    return sorted(found)
