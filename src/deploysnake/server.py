"""Server stage: start the official tritonserver on loopback and free ports, await readiness, and
stop it in every case (error, SIGTERM from Snakemake, Ctrl-C, death of the job process).

The server runs inside each measuring job (accuracy, perf), so the job is self-contained and runs
unchanged on a cluster node; the server's start, ports and its own log appear in the job's log.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import psutil

from . import inprocess
from .errors import UserError
from .processes import die_with_parent, job_cpus, thread_env, thread_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerBinary:
    executable: Path
    # "native": has native backends, serves deploy/ configs; bundled (python backend only): "inprocess"
    # (deploysnake's backend, see inprocess.py) or "python" (Triton's python backend)
    flavour: str
    backend_dir: Path | None
    env: dict[str, str] = field(default_factory=dict)


def _bundled(runner: str) -> ServerBinary | None:
    # Found, not imported: importing pytriton takes about 1 s of CPU, paid by every snakemake start
    # (the Snakefile locates the server), dry runs and each cluster job included.
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        return None
    package = Path(spec.origin).parent
    root = package / "tritonserver"
    libs = package.parent / "nvidia_pytriton.libs"
    exe = root / "bin" / "tritonserver"
    if not exe.exists():
        return None
    venv_bin = str(Path(sys.executable).parent)
    env = {
        "LD_LIBRARY_PATH": os.pathsep.join(
            p for p in (str(libs), os.environ.get("LD_LIBRARY_PATH", "")) if p
        ),
        # The python-backend stub runs the first `python` on PATH's packages: make it this venv's.
        "PATH": os.pathsep.join((venv_bin, os.environ.get("PATH", ""))),
    }
    if runner == "deploysnake":
        if inprocess.built() is None:
            log.warning(
                "the in-process backend is not built (scripts/setup.sh builds it): the bundled "
                "server uses Triton's python backend"
            )
        else:
            return ServerBinary(
                exe, "inprocess", root / "backends", {**env, **inprocess.server_env()}
            )
    return ServerBinary(exe, "python", root / "backends", env)


def _native(path: str) -> ServerBinary | None:
    exe = Path(path)
    backends = exe.resolve().parent.parent / "backends"
    if exe.is_file() and (backends / "onnxruntime").is_dir():
        return ServerBinary(exe, "native", backends, {})
    return None


def locate(setting: str, bundled_runner: str = "deploysnake") -> ServerBinary:
    """`auto`: a tritonserver with native backends on PATH (NGC container, cluster module), else the
    bundled one; `bundled`: always the bundled one; anything else: the path of a tritonserver.
    bundled_runner: what runs the model in the bundled server, "deploysnake" or "python"."""
    if setting not in ("auto", "bundled"):
        found = _native(setting)
        if found is None:
            raise UserError(
                f"triton.server is {setting!r}, but that is not a tritonserver with native "
                "backends beside it (../backends/onnxruntime); use 'auto' or 'bundled'"
            )
        return found
    if setting == "auto" and (on_path := shutil.which("tritonserver")):
        found = _native(on_path)
        if found is not None:
            return found
    bundled = _bundled(bundled_runner)
    if bundled is None:
        raise UserError(
            "no tritonserver found: install the project (make run installs nvidia-pytriton) or "
            "set triton.server to a tritonserver path"
        )
    return bundled


PORT_NAMES = ("http_port", "grpc_port", "metrics_port")
# Seconds between readiness checks while the server starts (it is ready 0.3 s after its start
# for a small model: a coarser poll added 0.1 s to every start on average).
READY_POLL_S = 0.05
# Seconds stop() waits for the models to unload before it sends SIGTERM anyway.
UNLOAD_WITHIN_S = 3.0


def loopback(host: str) -> bool:
    """Whether every address host resolves to is a loopback one (127.0.0.1, ::1, localhost)."""
    try:
        found = socket.getaddrinfo(host, None)
        return bool(found) and all(
            ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in found
        )
    except (OSError, ValueError):  # a name that does not resolve, an address of another family
        return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def free_ports(host: str, count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class ServerNotReady(RuntimeError):
    """tritonserver exited, or was not ready in time, before serving; log_tail: its log's end."""

    def __init__(self, message: str, returncode: int | None, log_tail: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.log_tail = log_tail


class ServerDied(RuntimeError):
    """tritonserver ended while it served (returncode: negative for a signal, as in subprocess)."""

    def __init__(self, message: str, returncode: int | None, log_tail: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.log_tail = log_tail


class _Terminated(Exception):
    pass


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(f"received signal {signum}")


class TritonServer:
    """Context manager: `with TritonServer(repo, binary, log_path) as server: server.grpc_url`."""

    def __init__(
        self,
        repository: str | Path,
        binary: ServerBinary,
        log_path: str | Path,
        host: str = "127.0.0.1",
        readiness_timeout_s: float = 120.0,
        ports: dict[str, int] | None = None,
        extra_args: list[str] | None = None,
        request_timeout_s: float = 300.0,
    ) -> None:
        self.repository = Path(repository).resolve()
        self.binary = binary
        self.log_path = Path(log_path)
        self.host = host
        self.readiness_timeout_s = readiness_timeout_s
        # s one request of a job that sends its own (accuracy, cold start) may wait for its answer
        self.request_timeout_s = request_timeout_s
        self.ports = ports or {}  # http_port/grpc_port/metrics_port; 0 or absent: a free port
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._old_handlers: dict[int, Any] = {}
        self._ready = False  # became ready: stop() unloads its models first (_unload_all)
        self.http_port = self.grpc_port = self.metrics_port = 0

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    def _backend_dir(self) -> Path:
        assert self.binary.backend_dir is not None
        if self.binary.flavour == "native":
            return self.binary.backend_dir
        # The bundled python backend needs the stub for this Python beside it: assemble a backend dir.
        import pytriton

        self._tmp = tempfile.TemporaryDirectory(prefix="deploysnake-backends-")
        target = Path(self._tmp.name) / "backends"
        shutil.copytree(self.binary.backend_dir, target)
        stub = (
            Path(pytriton.__file__).parent
            / "tritonserver"
            / "python_backend_stubs"
            / f"{sys.version_info.major}.{sys.version_info.minor}"
            / "triton_python_backend_stub"
        )
        shutil.copy2(stub, target / "python" / "triton_python_backend_stub")
        if self.binary.flavour == "inprocess" and (library := inprocess.built()):
            (target / inprocess.BACKEND).mkdir()
            (target / inprocess.BACKEND / library.name).symlink_to(library)
        return target

    def _command(self, backend_dir: Path) -> list[str]:
        return [
            str(self.binary.executable),
            "--model-repository",
            str(self.repository),
            "--backend-directory",
            str(backend_dir),
            "--http-address",
            self.host,
            "--http-port",
            str(self.http_port),
            "--grpc-address",
            self.host,
            "--grpc-port",
            str(self.grpc_port),
            "--metrics-address",
            self.host,
            "--metrics-port",
            str(self.metrics_port),
            "--exit-on-error",
            "true",
            "--strict-readiness",
            "true",
            "--exit-timeout-secs",
            "10",
            # Triton's metrics thread samples every metrics-interval-ms (default 2000) and a stop
            # waits out its current interval: 0.9 s of every stop here, 0.06 s at 200 ms (the
            # cost, one /proc read per interval, is noise; usage.Window reads GPU metrics each 1 s).
            "--metrics-interval-ms",
            "200",
            *(
                LOAD_ALL
                if "--model-control-mode" not in self.extra_args and loopback(self.host)
                else []
            ),
            *self.extra_args,
        ]

    def tail(self, lines: int = 15) -> str:
        """The server's error lines (glog level E) and its last lines: what a user needs to see."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        errors = [line for line in text if line.startswith("E")][-lines:]
        last = [
            line for line in text[-lines:] if line not in errors and not line.startswith(("+", "|"))
        ]
        return "\n".join(errors + (["..."] if errors and last else []) + last)

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://{self.http_url}/v2/health/ready", timeout=2
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _pick_ports(self) -> None:
        pinned = {name: int(self.ports.get(name, 0)) for name in PORT_NAMES}
        fresh = iter(free_ports(self.host, sum(1 for p in pinned.values() if p == 0)))
        for name, port in pinned.items():
            if port and port_in_use(self.host, port):
                raise UserError(
                    f"triton.{name} {port} on {self.host} is in use by another process; stop that "
                    f"process or set triton.{name} to 0 to pick a free port"
                )
            setattr(self, name, port or next(fresh))

    def start(self) -> None:
        backend_dir = self._backend_dir()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 4):
            self._pick_ports()
            command = self._command(backend_dir)
            log.info(
                "starting tritonserver (%s backends): %s", self.binary.flavour, " ".join(command)
            )
            log.info("server log: %s", self.log_path)
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            with open(self.log_path, "ab") as log_file:
                self.process = subprocess.Popen(
                    command,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    # Thread pools sized from the job's CPUs, not from Snakemake's --cores.
                    env={**os.environ, **thread_env(job_cpus()), **self.binary.env},
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            try:
                self._await_ready()
                return
            except RuntimeError:
                with open(self.log_path, "rb") as handle:
                    handle.seek(offset)
                    raced = b"already in use" in handle.read()
                # A free port taken by someone else between our pick and the server's bind: pick again.
                if raced and attempt < 3 and not any(self.ports.get(n) for n in PORT_NAMES):
                    log.warning(
                        "a port was taken before tritonserver could bind it; retrying with other ports"
                    )
                    self.stop(keep_backends=True)
                    continue
                raise

    def _await_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.readiness_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.tail()
                raise ServerNotReady(
                    f"tritonserver exited with code {self.process.returncode} before it was "
                    f"ready; its log ({self.log_path}) ends:\n{tail}",
                    self.process.returncode,
                    tail,
                )
            if self.is_ready():
                self._ready = True
                log.info(
                    "tritonserver ready (pid %d, http %s, grpc %s) after %.1f s",
                    self.process.pid,
                    self.http_url,
                    self.grpc_url,
                    self.readiness_timeout_s - (deadline - time.monotonic()),
                )
                self._log_threads()
                return
            time.sleep(READY_POLL_S)
        tail = self.tail()
        raise ServerNotReady(
            f"tritonserver was not ready within {self.readiness_timeout_s:.0f} s "
            f"(triton.readiness_timeout_s); its log ({self.log_path}) ends:\n{tail}",
            None,
            tail,
        )

    def _log_threads(self) -> None:
        """The job log states what the server got, read back from the process, and what each
        instance's runtime got (the runner's line in the server log)."""
        assert self.process is not None
        try:
            got = thread_settings(self.process.pid)
        except (psutil.Error, OSError) as exc:  # a report, never a reason to stop
            log.info("tritonserver thread settings unreadable: %s", exc)
            return
        log.info("tritonserver (pid %d) got: %s", self.process.pid, got)
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return
        for line in dict.fromkeys(text.splitlines()):
            if line.startswith("deploysnake runner "):
                log.info("tritonserver: %s", line)

    def _unload_all(self, within_s: float = UNLOAD_WITHIN_S) -> None:
        """Unload every model through the repository API and wait until none is loaded, loading
        or unloading (Triton's unload call returns before the model is gone). tritonserver unloads
        its models itself on SIGTERM, but then checks for live models once a second
        (InferenceServer::Stop in triton-inference-server/core, server.cc): the first check
        always found the model still there, so every stop cost a second (CI's server logs: "Timeout
        10: Found 1 live models", "Timeout 9: Found 0 live models" a second later). With the models
        gone first, the first check finds none and the server exits at once. Raises OSError,
        ValueError or http.client.HTTPException where the server does not answer as expected."""
        base = f"http://{self.http_url}/v2/repository"
        deadline = time.monotonic() + within_s

        def post(url: str) -> bytes:
            request = urllib.request.Request(url, data=b"{}", method="POST")
            timeout = max(0.1, deadline - time.monotonic())
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return bytes(response.read())

        def index() -> list[dict[str, Any]]:
            return list(json.loads(post(f"{base}/index") or b"[]"))

        for model in index():
            if model.get("state") == "READY":
                post(f"{base}/models/{urllib.parse.quote(str(model['name']), safe='')}/unload")
        while time.monotonic() < deadline:
            if not any(m.get("state") in ("READY", "LOADING", "UNLOADING") for m in index()):
                return
            time.sleep(0.02)

    def stop(self, keep_backends: bool = False) -> None:
        process, self.process = self.process, None
        ready, self._ready = self._ready, False
        if process is not None and process.poll() is None:
            if ready:
                # best effort: a server that does not answer is stopped by SIGTERM as before
                with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
                    self._unload_all()
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            except ProcessLookupError:
                pass
            log.info("tritonserver stopped (exit code %s)", process.returncode)
        if process is not None:
            # A server that was killed leaves its python-backend stubs behind in its process group: end them.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._tmp is not None and not keep_backends:
            self._tmp.cleanup()
            self._tmp = None

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            tail = self.tail()
            raise ServerDied(
                f"tritonserver died during the measurement (exit code {code}); its log "
                f"({self.log_path}) ends:\n{tail}",
                code,
                tail,
            )

    def __enter__(self) -> TritonServer:
        # SIGTERM (Snakemake cancelling a job, scancel) becomes an exception, so __exit__ stops the server.
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, _raise_terminated)
        try:
            self.start()
        except BaseException:
            self.stop()
            self._restore()
            raise
        return self

    def _restore(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._restore()


def from_settings(
    repository: str | Path,
    triton: dict[str, Any],
    log_path: str | Path,
    extra_args: list[str] | None = None,
) -> TritonServer:
    """The server a measuring job runs, from the config's triton section; extra_args: more
    tritonserver options (e.g. EXPLICIT, which starts it with no model loaded)."""
    ports = {name: int(triton.get(name, 0)) for name in PORT_NAMES}
    return TritonServer(
        repository,
        locate(triton["server"], triton["bundled_runner"]),
        log_path,
        triton["host"],
        triton["readiness_timeout_s"],
        ports,
        extra_args,
        triton["request_timeout_s"],
    )


# Model control mode "explicit": the server starts with no model and loads one on a repository load
# call (the cold-start measurement times that call and reads the empty server's memory first).
EXPLICIT = ["--model-control-mode", "explicit"]
# Every other server on loopback: mode "explicit" with every model of its repository loaded at start
# (the models mode "none" would load), so that the repository's unload call, which stop() makes
# before SIGTERM, is allowed (mode "none" refuses it). On a host that is not loopback the servers keep
# mode "none": load and unload calls from the network stay refused.
LOAD_ALL = ["--model-control-mode", "explicit", "--load-model", "*"]
