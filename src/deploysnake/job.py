"""Run one stage inside a Snakemake `script:` job: log to the rule's log file, and turn a UserError
into a one-paragraph message (on the console too) instead of a traceback."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .devices import pin_local_gpu
from .errors import UserError
from .failures import FormatFailure, classify
from .processes import size_thread_pools, watch_snakemake


def run(
    snakemake: Any,
    stage: Callable[[Any], object],
    record_failure: Callable[[Any, FormatFailure], object] | None = None,
) -> None:
    """Run `stage(snakemake)` with the rule's log as stdout/stderr.

    record_failure: for the served stages (accuracy, perf, native), what writes the stage's outputs
    as a failure record when the model x format fails (deploysnake.failures.classify); the job then
    ends well, so the run goes on to the report. Without it, or for an infrastructure error, the job
    fails: a UserError with its one-paragraph message, anything else with its traceback."""
    log_path = Path(snakemake.log[0])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console = os.fdopen(os.dup(2), "w", buffering=1)
    with open(log_path, "a", buffering=1) as log_file:
        # fd-level redirect: output of subprocesses and C libraries lands in the log too.
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
            force=True,
        )
        logging.captureWarnings(True)
        # Warnings and errors (a format not served, an unstable point) also reach the console.
        to_console = logging.StreamHandler(console)
        to_console.setLevel(logging.WARNING)
        to_console.setFormatter(logging.Formatter(f"deploysnake [{snakemake.rule}]: %(message)s"))
        logging.getLogger("deploysnake").addHandler(to_console)
        watch_snakemake()
        # Snakemake exported OMP_NUM_THREADS and its siblings from --cores: size from the real CPUs.
        size_thread_pools()
        try:
            if device := getattr(snakemake.wildcards, "device", None):
                pin_local_gpu(device)
            stage(snakemake)
        except UserError as exc:
            logging.getLogger("deploysnake").error("error: %s", exc)
            sys.exit(1)
        except Exception as exc:
            failure = classify(exc) if record_failure is not None else None
            if failure is None or record_failure is None:
                logging.getLogger("deploysnake").exception("rule %s failed", snakemake.rule)
                raise
            logging.getLogger("deploysnake").info("the failure:", exc_info=True)
            if not failure.log_excerpt:
                failure.log_excerpt = "".join(traceback.format_exception(exc))[-2000:]
            record_failure(snakemake, failure)
            w = snakemake.wildcards
            logging.getLogger("deploysnake").warning(
                "%s/%s on %s failed in %s (recorded; the report shows it): %s",
                w.model,
                w.format,
                getattr(w, "device", "-"),
                snakemake.rule,
                failure.reason,
            )
        except BaseException:
            logging.getLogger("deploysnake").exception("rule %s failed", snakemake.rule)
            raise


def results_by_stage(inputs: list[str], stages: dict[str, str]) -> dict[str, list[Path]]:
    """A rule's inputs sorted by the stage folder they sit in: {key: paths} for each
    `results/<folder>/...` of stages ({folder: key}); every key present, inputs elsewhere left out.
    The report and the summary take their per-model results this way (one input list per rule)."""
    found: dict[str, list[Path]] = {key: [] for key in stages.values()}
    for path in map(Path, inputs):
        if len(path.parts) > 2 and path.parts[0] == "results" and path.parts[1] in stages:
            found[stages[path.parts[1]]].append(path)
    return found
