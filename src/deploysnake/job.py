"""Run one stage inside a Snakemake `script:` job: log to the rule's log file, and turn a UserError
into a one-paragraph message (on the console too) instead of a traceback."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .devices import pin_local_gpu
from .errors import UserError
from .processes import size_thread_pools, watch_snakemake


def run(snakemake: Any, stage: Callable[[Any], object]) -> None:
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
        except BaseException:
            logging.getLogger("deploysnake").exception("rule %s failed", snakemake.rule)
            raise
