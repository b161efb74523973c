"""Cold start and memory: how long a model takes to load and to answer its first request, with and
without Triton's model_warmup, and the memory the server needs for it net of an empty server's.

Measured in the accuracy job's server (one server per model x format x device already), before the
validation set goes through it, at a cost of seconds: the server starts in model control mode
"explicit" (server.EXPLICIT) with no model loaded, so its resident memory then is the empty
server's. Then:

1. the model is loaded with the repository's config less its model_warmup (given as the load call's
   config): load_ms is the repository load call, which Triton answers once the model is ready;
   first_request_ms the first inference after it; steady_ms the median of STEADY_REQUESTS more of the
   same request; memory_net_mb the server tree's RSS now (psutil) minus the empty server's;
2. the model is unloaded and loaded again with model_warmup (the repository's config where it
   carries one, triton.warmup.enabled; else that config with triton.warmup's sample added):
   load_warmup_ms and first_request_warmup_ms. This is a second load in the same server: the backend
   library is loaded and the model's files are in the page cache, which the first load paid for;
3. the model stays loaded with the repository's own config for the accuracy run.

The request is the first validation sample (the whole first batch for an unbatched model).
"""

from __future__ import annotations

import contextlib
import json
import logging
import statistics
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import tritonclient.grpc as grpcclient
from google.protobuf import json_format
from numpy.typing import NDArray
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from . import shapes
from .contracts import Status, Target
from .failures import FormatFailure
from .repository import read_config, warmup_sample, without_warmup
from .server import TritonServer
from .usage import gpu_processes, tree_rss_mb

log = logging.getLogger(__name__)

# Requests after the first whose median is the steady latency.
STEADY_REQUESTS = 5
# Seconds an unloaded model has to leave the repository index's READY state.
UNLOAD_TIMEOUT_S = 30.0


@dataclass
class ColdStart:
    """One target's figures (ms, MiB = 2**20 bytes); None where not measured."""

    model: str
    format: str
    device: str
    status: str = Status.OK
    reason: str = ""
    request_batch: int = 1
    load_ms: float | None = None
    first_request_ms: float | None = None
    steady_ms: float | None = None
    load_warmup_ms: float | None = None
    first_request_warmup_ms: float | None = None
    warmup_in_repository: bool = False
    warmup_error: str = ""
    memory_empty_mb: float | None = None
    memory_loaded_mb: float | None = None
    memory_net_mb: float | None = None
    gpu_memory_net_mb: float | None = None


def request_inputs(
    io: dict[str, Any], inputs: Mapping[str, NDArray[Any]], max_batch_size: int
) -> list[grpcclient.InferInput]:
    """Named inputs (the model's shapes) as tritonclient gRPC inputs: a tensor Triton declares with a
    reshape is sent with its [1] axis (shapes.to_served); dtypes through tritonclient's map."""
    request = []
    for tensor in io["inputs"]:
        array = np.ascontiguousarray(
            shapes.to_served(np.asarray(inputs[tensor["name"]]), tensor, max_batch_size)
        )
        item = grpcclient.InferInput(
            tensor["name"], list(array.shape), np_to_triton_dtype(array.dtype)
        )
        item.set_data_from_numpy(array)
        request.append(item)
    return request


def first_sample(
    inputs: Mapping[str, NDArray[Any]], max_batch_size: int
) -> dict[str, NDArray[Any]]:
    """A batched model's (max_batch_size > 0: every input's batch on axis 0) first sample; an
    unbatched model's inputs as they are."""
    if max_batch_size <= 0:
        return {k: np.asarray(v) for k, v in inputs.items()}
    return {k: np.asarray(v)[:1] for k, v in inputs.items()}


def _gpu_mb(pid: int) -> float | None:
    """GPU memory (MiB) of the process tree of `pid` (nvidia-smi's compute processes); None
    without nvidia-smi."""
    found = gpu_processes()
    if not found:
        return None
    try:
        root = psutil.Process(pid)
        pids = {pid, *(c.pid for c in root.children(recursive=True))}
    except psutil.Error:
        return None
    return sum(mb for p, mb in found if p in pids)


@contextlib.contextmanager
def answer_deadline(server: TritonServer, model_name: str, timeout_s: float) -> Iterator[None]:
    """Around one request to `model_name` sent with client_timeout=timeout_s (s): gRPC's
    DEADLINE_EXCEEDED becomes the format's FormatFailure, naming the limit and its key
    (triton.request_timeout_s), with the server log's end; any other InferenceServerException
    passes."""
    try:
        yield
    except InferenceServerException as exc:
        if exc.status() != "StatusCode.DEADLINE_EXCEEDED":
            raise
        raise FormatFailure(
            f"the server did not answer a request to {model_name} within {timeout_s:g} s "
            f"(triton.request_timeout_s): raise it for a model this slow on this machine, or see "
            f"why in the server log {server.log_path}",
            server.tail(),
        ) from exc


class _Session:
    """One gRPC client on the running server: timed loads and requests of one model."""

    def __init__(
        self, server: TritonServer, name: str, request: list[grpcclient.InferInput]
    ) -> None:
        self.server, self.name, self.request = server, name, request
        self.client = grpcclient.InferenceServerClient(server.grpc_url)

    def load(self, config: str | None) -> float:
        """ms of the repository load call (config: the load call's JSON config, None: the file's)."""
        started = time.perf_counter()
        self.client.load_model(
            self.name, config=config, client_timeout=self.server.readiness_timeout_s
        )
        return (time.perf_counter() - started) * 1e3

    def infer(self) -> float:
        started = time.perf_counter()
        with answer_deadline(self.server, self.name, self.server.request_timeout_s):
            self.client.infer(self.name, self.request, client_timeout=self.server.request_timeout_s)
        return (time.perf_counter() - started) * 1e3

    def unload(self) -> None:
        """Unload and wait until the repository index no longer has the model READY (Triton's unload
        call returns before the model is gone)."""
        self.client.unload_model(self.name)
        deadline = time.monotonic() + UNLOAD_TIMEOUT_S
        while time.monotonic() < deadline:
            index = self.client.get_model_repository_index(as_json=True).get("models", [])
            if not any(m.get("name") == self.name and m.get("state") == "READY" for m in index):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} was still loaded {UNLOAD_TIMEOUT_S:.0f} s after unload")

    def close(self) -> None:
        self.client.close()


def _as_json(cfg: Any) -> str:
    return json_format.MessageToJson(cfg, preserving_proto_field_name=True)


def _load_failure(server: TritonServer, exc: InferenceServerException, what: str) -> FormatFailure:
    """The format failure of a load call Triton refused, worded as a server that cannot load the
    model at start (failures.classify), with Triton's own message and the server log's end."""
    server.check_alive()  # a crash while loading is the server's death (ServerDied), not a refusal
    message = " ".join(str(exc.message() or exc).split())[-1500:]
    return FormatFailure(f"the server cannot load the model{what}: {message}", server.tail())


def measure(
    server: TritonServer,
    target: Target,
    model_dir: str | Path,
    io: dict[str, Any],
    inputs: Mapping[str, NDArray[Any]],
    warmup: Mapping[str, Any] | None = None,
) -> ColdStart:
    """The cold-start figures of `target`, the model in `model_dir` (its Triton model folder) on `server`,
    started with server.EXPLICIT and nothing loaded yet (module docstring); leaves the model loaded
    with its repository config. inputs: one request's named inputs in the model's shapes (a batched
    model sends its first sample). warmup: triton.warmup, the sample added for the warmup load where
    the repository's config carries none.

    Raises FormatFailure (the server cannot load the model, or not with its own model_warmup),
    ServerDied (the server crashed), InferenceServerException from a request (the job's failure
    record says why). A warmup that fails only in the added sample is recorded as warmup_error."""
    model_dir = Path(model_dir)
    name = model_dir.name
    cfg = read_config(model_dir / "config.pbtxt")
    sample = first_sample(inputs, cfg.max_batch_size)
    result = ColdStart(
        target.model,
        target.format,
        target.device,
        request_batch=int(next(iter(sample.values())).shape[0]) if cfg.max_batch_size > 0 else 1,
        warmup_in_repository=bool(cfg.model_warmup),
    )
    assert server.process is not None
    pid = server.process.pid
    result.memory_empty_mb = tree_rss_mb(pid)
    gpu_empty = _gpu_mb(pid) if target.device != "cpu" else None
    session = _Session(server, name, request_inputs(io, sample, cfg.max_batch_size))
    try:
        try:
            result.load_ms = session.load(_as_json(without_warmup(cfg)))
        except InferenceServerException as exc:
            raise _load_failure(server, exc, "") from exc
        result.first_request_ms = session.infer()
        result.steady_ms = statistics.median(session.infer() for _ in range(STEADY_REQUESTS))
        result.memory_loaded_mb = tree_rss_mb(pid)
        result.memory_net_mb = result.memory_loaded_mb - result.memory_empty_mb
        if gpu_empty is not None and (gpu_loaded := _gpu_mb(pid)) is not None:
            result.gpu_memory_net_mb = gpu_loaded - gpu_empty
        session.unload()
        if cfg.model_warmup:
            try:
                result.load_warmup_ms = session.load(None)
            except InferenceServerException as exc:
                raise _load_failure(
                    server,
                    exc,
                    " with its model_warmup (triton.warmup; set triton.warmup.data to zero, or "
                    "triton.warmup.enabled to false)",
                ) from exc
            result.first_request_warmup_ms = session.infer()
        else:
            warmed = without_warmup(cfg)
            warmed.model_warmup.append(warmup_sample(io, cfg.max_batch_size, dict(warmup or {})))
            try:
                result.load_warmup_ms = session.load(_as_json(warmed))
                result.first_request_warmup_ms = session.infer()
            except InferenceServerException as exc:
                server.check_alive()
                result.load_warmup_ms = None
                result.warmup_error = " ".join(str(exc).split())[-500:]
                log.warning("%s: the load with model_warmup failed: %s", name, result.warmup_error)
            session.unload()
            try:
                session.load(None)  # the repository's own config, for the accuracy run
            except InferenceServerException as exc:
                raise _load_failure(server, exc, "") from exc
    finally:
        session.close()
    log.info(
        "%s: load %.0f ms, first request %.1f ms (steady %.1f ms); with model_warmup: load %s ms, "
        "first request %s ms; memory %.0f MiB net of the empty server's %.0f MiB",
        name,
        result.load_ms,
        result.first_request_ms,
        result.steady_ms,
        _or_dash(result.load_warmup_ms),
        _or_dash(result.first_request_warmup_ms),
        result.memory_net_mb,
        result.memory_empty_mb,
    )
    return result


def _or_dash(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _rounded(result: ColdStart) -> dict[str, Any]:
    return {
        k: round(v, 1 if k.endswith("_mb") else 3) if isinstance(v, float) else v
        for k, v in asdict(result).items()
    }


def write(result: ColdStart, path: str | Path) -> None:
    """The target's figures as one JSON object (ColdStart's fields; ms to the µs, MiB to 0.1)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(_rounded(result), indent=2) + "\n")


def write_failure(target: Target, failure: FormatFailure, path: str | Path) -> None:
    """The figures' file of a target whose accuracy job failed: status failed and the reason."""
    write(
        ColdStart(target.model, target.format, target.device, Status.FAILED, failure.reason[:2000]),
        path,
    )
