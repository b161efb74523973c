"""A failure is data: what goes wrong with one model x format in a served stage (accuracy, perf,
native) is written as that stage's output, a row with status "failed", its stage, reason and a log
excerpt, so the run goes on and the report shows it; what no format can fix (a bad config, a
missing tool, a port in use, a server killed from outside) still stops the job.

A failure record is the stage's usual CSV with one row: model, format, device, status "failed",
stage, reason, log_excerpt (perf CSVs add mode; a perf point that cannot be measured is one such row
among the sweep's)."""

from __future__ import annotations

import csv
import re
import signal
from pathlib import Path
from typing import Any

from .contracts import Status
from .errors import UserError
from .isolated import signal_name
from .server import ServerDied, ServerNotReady

COLUMNS = ["status", "stage", "reason", "log_excerpt"]
# A server that ends by one of these crashed by itself (the model's runtime); SIGKILL and SIGTERM
# come from outside (an operator, the OOM killer, a cancelled job): the job fails, a rerun measures.
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE, signal.SIGILL}
# Triton's lines that say the model, not the server, is what failed to load.
LOAD_ERROR = re.compile(r"failed to load|failed to initialize", re.I)


class FormatFailure(Exception):
    """This model x format cannot go through a stage: recorded as data, the run goes on."""

    def __init__(self, reason: str, log_excerpt: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_excerpt = log_excerpt


def classify(exc: BaseException) -> FormatFailure | None:
    """The format failure an exception of a served stage stands for, or None where the job must fail
    (UserError: config, tools, ports; a server that never started for another reason than the model;
    a server killed from outside; a cancelled job; I/O errors)."""
    if isinstance(exc, FormatFailure):
        return exc
    if isinstance(exc, ServerNotReady):
        lines = [line.strip() for line in exc.log_tail.splitlines() if LOAD_ERROR.search(line)]
        if exc.returncode is not None and lines:
            return FormatFailure(
                "the server cannot load the model: " + " | ".join(lines[-3:])[-1500:],
                exc.log_tail,
            )
        return None
    if isinstance(exc, ServerDied):
        code = exc.returncode
        if code is not None and code < 0 and -code in {int(s) for s in CRASH_SIGNALS}:
            return FormatFailure(
                f"tritonserver crashed ({signal_name(code)}) while it served the model",
                exc.log_tail,
            )
        return None
    if isinstance(exc, UserError | OSError) or not isinstance(exc, Exception):
        return None
    if type(exc).__name__ == "_Terminated":  # the job was cancelled (SIGTERM)
        return None
    message = " ".join(str(exc).split())[:1500]
    return FormatFailure(f"{type(exc).__name__}: {message}")


def write_failure_csv(
    output: str | Path,
    keys: dict[str, Any],
    stage: str,
    failure: FormatFailure,
    columns: list[str] | None = None,
) -> dict[str, Any]:
    """The stage's CSV as a failure record: one row of `keys` (model, format, device, ...), status
    "failed", stage, reason and log excerpt (its last 2,000 characters). columns: the stage's usual
    header, so a failed CSV reads like the others."""
    row = {
        **keys,
        "status": Status.FAILED,
        "stage": stage,
        "reason": failure.reason,
        "log_excerpt": failure.log_excerpt[-2000:],
    }
    header = list(dict.fromkeys([*(columns or []), *row]))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerow(row)
    partial.replace(output)
    return row


def failed_formats(csv_paths: list[str] | list[Path]) -> set[tuple[str, str]]:
    """(model, format) of the CSVs (a served stage's outputs) that hold a row with status "failed"."""
    failed = set()
    for path in csv_paths:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("status") == Status.FAILED:
                    failed.add((row["model"], row["format"]))
    return failed
