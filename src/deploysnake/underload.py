"""Correct under load: while perf_analyzer loads the server at a point, a side client sends a few
requests of the same perf samples at the point's batch, and their answers are compared with the
in-process outputs of the same artifact on the same samples, each sample run alone (batch 1), within
the tolerance the correctness stage uses for the format (correctness.tolerance).

The correctness stage runs the artifact in-process; the server runs it behind the dynamic batcher,
which merges requests from several clients into one execution, and behind its instances' threads.
A fault there (a runner that mixes rows of a merged batch, a model whose rows depend on the others
in its batch, state shared between instances) gives answers that are correct at batch 1 and wrong
under load; the side client's requests merge with perf_analyzer's in the same batcher, so it sees
what perf_analyzer's clients get. MLPerf Inference's compliance TEST01 checks the same thing: the
outputs logged during the performance run against the accuracy run's
(mlcommons/inference, compliance/nvidia/TEST01).

Why not perf_analyzer's own validation (`validation_data` in its --input-data JSON), measured with
perf_analyzer 2.51 against the served row_mixer test model (tests/recipes/row_mixer): it compares
the output bytes exactly (expected outputs one ulp off fail: "Output doesn't match expected
output"), so any float difference between a batched and a batch-1 computation would fail the point;
with --shared-memory system it fails even correct answers ("Output size doesn't match expected
size"); and a mismatch ends the whole call (exit 99, "Thread [0] had error: ...") naming neither
the output nor the difference. See docs/concepts/measurements.md.

What it costs: perf.check_requests requests (default CHECK_REQUESTS) per measured point, sent in
bursts of the point's concurrency as soon as the server answered perf_analyzer's first requests, so
they fall in perf_analyzer's first window, before the three stable windows it reports.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .contracts import Status
from .formats import FORMATS
from .perfdata import read_samples
from .shapes import from_served
from .tolerance import compare, tolerance

log = logging.getLogger(__name__)

# perf.check_requests' default: side requests per point.
CHECK_REQUESTS = 4
# How long the side client waits for perf_analyzer's first answered request (it parses its input
# data first: seconds for a real-size image's).
LOAD_WAIT_S = 60.0
# How often the server's statistics are read while waiting for the load.
POLL_S = 0.02
# One side request's time bound (s): an overloaded server queues it behind perf_analyzer's.
REQUEST_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Expected:
    """The in-process outputs of the perf samples: samples[i] (served per-sample inputs, as
    perfdata.read_samples gives them) and outputs[i] ({output: array in the model's per-sample
    shape}: row 0 of the artifact's output at batch 1; unbatched, the whole output of the sample's
    call); tolerances {output: (atol, rtol)}; runtime: who computed them, for messages."""

    io: dict[str, Any]
    max_batch_size: int
    samples: list[dict[str, NDArray[Any]]]
    outputs: list[dict[str, NDArray[Any]]]
    tolerances: dict[str, tuple[float, float]]
    runtime: str
    requests: int = CHECK_REQUESTS


def expected_outputs(
    artifact: str | Path,
    fmt: str,
    io: dict[str, Any],
    input_data: str | Path,
    max_batch_size: int,
    tolerances: dict[str, Any],
    requests: int = CHECK_REQUESTS,
    limit: int | None = None,
) -> Expected:
    """Run the artifact in-process (deploysnake.runtime.ArtifactRuntime, one thread, CPU) on every
    sample of the perf input data (at most `limit`), each alone. tolerances: the correctness
    section's default/outputs/formats (correctness.tolerance). Raises what the runtime raises
    (ValueError for a format without an in-process runtime, ImportError for a missing one)."""
    from .runtime import ArtifactRuntime

    dtypes = {t["name"]: t["dtype"] for t in io["inputs"]}
    samples = read_samples(input_data, dtypes, limit)
    names = [t["name"] for t in io["outputs"]]
    runtime = ArtifactRuntime(artifact, fmt, list(dtypes), names, threads=1)
    outputs = []
    for sample in samples:
        # one sample alone, in the model's shapes (as native.perf_batches makes a call)
        call = {
            t["name"]: from_served(
                sample[t["name"]][np.newaxis] if max_batch_size > 0 else sample[t["name"]],
                t,
                1 if max_batch_size > 0 else 0,
            )
            for t in io["inputs"]
        }
        got = runtime(call)
        outputs.append(
            {n: np.asarray(got[n])[0] if max_batch_size > 0 else np.asarray(got[n]) for n in names}
        )
    return Expected(
        io,
        max_batch_size,
        samples,
        outputs,
        {n: tolerance(tolerances, fmt, n) for n in names},
        f"{FORMATS[fmt].runtime if fmt in FORMATS else fmt} in-process, each sample alone",
        int(requests),
    )


def prepare(
    artifact: str | Path | None,
    fmt: str,
    io_json: str | Path,
    input_data: str | Path | None,
    max_batch_size: int,
    tolerances: dict[str, Any] | None,
    requests: int,
) -> Expected | None:
    """expected_outputs for a perf job, or None (no check, logged) where requests is 0, a file is
    missing, or the artifact cannot be run in-process here (the check's `load_check` column then
    says "not checked")."""
    import json

    if requests <= 0 or not artifact or not tolerances or not input_data:
        return None
    if not Path(input_data).is_file() or not Path(artifact).exists():
        return None
    io = json.loads(Path(io_json).read_text())
    try:
        return expected_outputs(artifact, fmt, io, input_data, max_batch_size, tolerances, requests)
    except Exception as exc:  # no in-process runtime for this format here: measure unchecked
        log.warning(
            "outputs under load not checked: %s cannot run in-process here (%s: %s)",
            artifact,
            type(exc).__name__,
            str(exc)[:300],
        )
        return None


def sample_indices(request: int, batch: int, count: int) -> list[int]:
    """The samples of the side client's request number `request` at `batch`: consecutive, wrapping
    around the `count` samples (as perf_analyzer cycles them), so each request sends others."""
    return [(request * batch + j) % count for j in range(batch)]


def _rows_differ(reference: NDArray[Any], got: NDArray[Any], atol: float, rtol: float) -> list[int]:
    """Indices along axis 0 where some value is outside atol + rtol * |reference| (strings:
    unequal)."""
    if reference.ndim == 0 or reference.shape != got.shape:
        return []
    if reference.dtype.kind in "OSU" or got.dtype.kind in "OSU":
        bad = reference.astype(str) != got.astype(str)
    else:
        ref, cand = reference.astype(np.float64), got.astype(np.float64)
        bad = ~(np.abs(ref - cand) <= atol + rtol * np.abs(ref))
    return [int(k) for k in np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))]


def _text(array: NDArray[Any]) -> NDArray[Any]:
    """A BYTES output as the server returns it (bytes) in str, as the in-process runtime gives it."""
    if array.dtype.kind not in "OS":
        return array
    out = np.empty(array.shape, dtype=object)
    out.ravel()[:] = [
        v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v
        for v in array.ravel().tolist()
    ]
    return out


def check_response(
    expected: Expected, indices: list[int], outputs: dict[str, NDArray[Any]]
) -> list[str]:
    """Compare one response with the in-process outputs of its samples (indices into
    expected.samples): {output: array as the server returned it, served shape, [batch, ...] or
    unbatched the whole}. Returns one line per output that differs beyond its tolerance, naming the
    output, the rows that differ and the worst errors ([] where every output is within)."""
    problems = []
    batched = expected.max_batch_size > 0
    for tensor in expected.io["outputs"]:
        name = tensor["name"]
        if name not in outputs:
            problems.append(f"{name}: missing from the response")
            continue
        got = _text(from_served(np.asarray(outputs[name]), tensor, expected.max_batch_size))
        reference = (
            np.stack([expected.outputs[i][name] for i in indices])
            if batched
            else expected.outputs[indices[0]][name]
        )
        atol, rtol = expected.tolerances[name]
        result = compare(reference, got, atol, rtol)
        if result["passed"]:
            continue
        if "reason" in result:
            problems.append(f"{name}: {result['reason']}")
            continue
        rows = _rows_differ(reference, got, atol, rtol) if batched else []
        where = f"rows {rows[:8]} ({len(rows)} of {len(indices)})" if rows else "values"
        problems.append(
            f"{name}: {where} differ, max abs err {result['max_abs_err']:.3g} (atol {atol:g}), "
            f"max rel err {result['max_rel_err']:.3g} (rtol {rtol:g})"
        )
    return problems


@dataclass
class Outcome:
    """What the side client saw at one point: requests compared, the problems of the first request
    that differed, how many differed, and why nothing was checked (None where something was)."""

    checked: int = 0
    differed: int = 0
    problems: list[str] = field(default_factory=list)
    not_checked: str | None = None

    def columns(self) -> dict[str, Any]:
        """The point's row columns: load_check ("passed", "failed" or "not checked: why") and
        load_check_requests (side requests compared)."""
        if self.differed:
            verdict = str(Status.FAILED)
        elif self.checked:
            verdict = str(Status.PASSED)
        else:
            verdict = f"not checked: {self.not_checked or 'no side request was answered'}"
        return {"load_check": verdict, "load_check_requests": self.checked}

    def reason(self, point: str, runtime: str) -> str:
        """The failed point's reason, one line; point: its load ("batch 8, concurrency 2")."""
        return (
            f"outputs differ under load (a batching or threading fault in serving): "
            f"{self.differed} of {self.checked} side request(s) sent while perf_analyzer loaded "
            f"the server ({point}) differ from the {runtime}: " + "; ".join(self.problems)
        )


class SideCheck:
    """Context manager around one perf_analyzer call, started (start) once perf_analyzer runs: a
    thread waits until the server has answered
    a request beyond those it had answered when the call began (perf_analyzer's load has started),
    then sends expected.requests requests of `batch` samples, in bursts of `concurrency`, and
    compares each answer (check_response). Stops sending when the call ends (__exit__); `outcome`
    holds the result after __exit__."""

    def __init__(
        self, expected: Expected, url: str, model_name: str, batch: int, concurrency: int
    ) -> None:
        self.expected = expected
        self.url = url
        self.model_name = model_name
        self.batch = batch if expected.max_batch_size > 0 else 1
        self.burst = max(1, min(int(concurrency), expected.requests))
        self.outcome = Outcome()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SideCheck:
        return self

    def start(self) -> None:
        """Start checking: call once perf_analyzer runs (after its fork: a process that forks
        while gRPC's threads run may lose the child)."""
        self._thread.start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(REQUEST_TIMEOUT_S + 5.0)

    def _run(self) -> None:
        try:
            import tritonclient.grpc as grpcclient

            client = grpcclient.InferenceServerClient(self.url)
        except Exception as exc:
            self.outcome.not_checked = f"no client ({exc})"[:300]
            return
        try:
            self._check(client)
        except Exception as exc:  # the server refused or timed out: perf_analyzer says why
            self.outcome.not_checked = f"side request failed: {' '.join(str(exc).split())}"[:300]
        finally:
            client.close()

    def _answered(self, client: Any) -> int:
        stats = client.get_inference_statistics(self.model_name, as_json=True)
        return sum(
            int(s.get("inference_stats", {}).get("success", {}).get("count", 0))
            for s in stats.get("model_stats", [])
        )

    def _check(self, client: Any) -> None:
        before = self._answered(client)
        waited = time.monotonic()
        while self._answered(client) <= before:
            if self._stop.wait(POLL_S):
                self.outcome.not_checked = "perf_analyzer ended before the server answered it"
                return
            if time.monotonic() - waited > LOAD_WAIT_S:
                self.outcome.not_checked = f"no load within {LOAD_WAIT_S:.0f} s"
                return
        sent = 0
        count = len(self.expected.samples)
        while sent < self.expected.requests and not self._stop.is_set():
            burst = list(range(sent, min(sent + self.burst, self.expected.requests)))
            answers: queue.Queue[tuple[int, Any, Any]] = queue.Queue()
            for k in burst:
                indices = sample_indices(k, self.batch, count)
                client.async_infer(
                    self.model_name,
                    self._inputs(indices),
                    lambda result, error, k=k, to=answers: to.put((k, result, error)),
                    client_timeout=REQUEST_TIMEOUT_S,
                )
            for _ in burst:
                try:
                    k, result, error = answers.get(timeout=REQUEST_TIMEOUT_S + 5.0)
                except queue.Empty:
                    self.outcome.not_checked = f"no answer within {REQUEST_TIMEOUT_S:.0f} s"
                    return
                if error is not None:
                    raise error
                indices = sample_indices(k, self.batch, count)
                outputs = {
                    t["name"]: result.as_numpy(t["name"]) for t in self.expected.io["outputs"]
                }
                problems = check_response(self.expected, indices, outputs)
                self.outcome.checked += 1
                if problems:
                    self.outcome.differed += 1
                    self.outcome.problems = self.outcome.problems or problems
            sent += len(burst)

    def _inputs(self, indices: list[int]) -> list[Any]:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import np_to_triton_dtype

        inputs = []
        for tensor in self.expected.io["inputs"]:
            name = tensor["name"]
            parts = [self.expected.samples[i][name] for i in indices]
            array = np.ascontiguousarray(
                np.stack(parts) if self.expected.max_batch_size > 0 else parts[0]
            )
            item = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            item.set_data_from_numpy(array)
            inputs.append(item)
        return inputs
