"""Run the part of a stage that can kill its process (an artifact's runtime: a segfault in ONNX
Runtime, an abort in libtorch, a hang) in a child process, so that what happens becomes a verdict
instead of a dead job.

The child is `python -X faulthandler -m deploysnake.isolated REQUEST`: a fresh interpreter (no fork
of a process that already holds runtime threads), whose output lands in the job's log. It calls
`module:function(**kwargs)` and writes the return value back (pickle). While it works it names what
it is doing with `phase("loading ... with onnxruntime (session creation)")`, so a crash is reported
with the step it happened in: "crashed (SIGSEGV) while loading ... (session creation)".
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .processes import die_with_parent

PHASE_ENV = "DEPLOYSNAKE_PHASE_FILE"


@dataclass(frozen=True)
class Outcome:
    """What the child returned, or why it returned nothing.

    failure: None when the call returned; else one line: "crashed (SIGSEGV) while <phase>", "timed
    out after 600 s while <phase>", or "<ExceptionType>: <message> (while <phase>)".
    log_excerpt: the end of the child's output (faulthandler's stack after a crash, a traceback)."""

    result: Any
    failure: str | None
    log_excerpt: str
    phase: str
    # The message of a UserError the call raised (the user's to fix), whole; None otherwise.
    user_error: str | None = None


def phase(text: str) -> None:
    """In the child: record the step now running (read by the parent when the child dies)."""
    path = os.environ.get(PHASE_ENV)
    if path:
        Path(path).write_text(text)


def signal_name(returncode: int) -> str:
    """-11 -> "SIGSEGV"; a shell-style 128+n exit code too (139 -> "SIGSEGV")."""
    number = -returncode if returncode < 0 else returncode - 128
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def call(function: str, kwargs: dict[str, Any], timeout_s: float) -> Outcome:
    """Run `module:function(**kwargs)` in a child interpreter, at most timeout_s seconds.

    kwargs and the result must pickle. The child's stdout and stderr are copied to this process's
    stderr (the job's log) when it ends. Never raises for what the child does: an exception in it,
    its death by a signal and a timeout all come back as Outcome.failure."""
    with tempfile.TemporaryDirectory(prefix="deploysnake-isolated-") as tmp:
        folder = Path(tmp)
        request, result, phase_file, output = (
            folder / name for name in ("request.pkl", "result.pkl", "phase.txt", "output.txt")
        )
        request.write_bytes(
            pickle.dumps({"function": function, "kwargs": kwargs, "result": result})
        )
        phase_file.write_text("starting")
        env = {**os.environ, PHASE_ENV: str(phase_file)}
        # The child runs this very package (a worktree's src/ before an installed copy).
        package_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(
            [package_root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
        )
        with open(output, "wb") as out:
            child = subprocess.Popen(
                [sys.executable, "-X", "faulthandler", "-m", "deploysnake.isolated", str(request)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
            try:
                returncode: int | None = child.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                returncode = None
            except BaseException:  # cancelled (SIGTERM) or interrupted: the child goes too
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                raise
        text = output.read_text(errors="replace")
        sys.stderr.write(text)
        sys.stderr.flush()
        excerpt = text[-4000:]
        step = phase_file.read_text()
        if returncode is None:
            return Outcome(None, f"timed out after {timeout_s:g} s while {step}", excerpt, step)
        if returncode != 0 and not result.exists():
            if returncode < 0 or returncode > 128:
                how = f"crashed ({signal_name(returncode)})"
            else:
                how = f"exited with code {returncode}"
            return Outcome(None, f"{how} while {step}", excerpt, step)
        done = pickle.loads(result.read_bytes())
        if "error" in done:
            return Outcome(
                None,
                f"{done['error']} (while {step})",
                done["traceback"][-4000:],
                step,
                done.get("user_error"),
            )
        return Outcome(done["value"], None, excerpt, step)


def _main(request_path: str) -> int:
    import logging

    # The child's log lines land in its output, which the parent copies into the job's log.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    request = pickle.loads(Path(request_path).read_bytes())
    module, name = request["function"].split(":")
    try:
        value = getattr(importlib.import_module(module), name)(**request["kwargs"])
        done: dict[str, Any] = {"value": value}
    except BaseException as exc:  # everything becomes the verdict's reason
        root = exc
        while root.__cause__ is not None:
            root = root.__cause__
        message = " ".join(str(root).split())[:1500]
        done = {
            "error": f"{type(root).__name__}: {message}",
            "traceback": "".join(traceback.format_exception(exc)),
            "user_error": str(exc) if isinstance(exc, UserError) else None,
        }
        if not isinstance(exc, UserError):  # a UserError's one sentence is logged by the parent
            traceback.print_exc()
    Path(request["result"]).write_bytes(pickle.dumps(done))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
