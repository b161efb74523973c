"""Find the external programs the workflow drives, with a message that says how to get them."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .errors import UserError


def perf_analyzer(setting: str = "auto") -> str:
    """`auto`: perf_analyzer on PATH or in this venv's bin (scripts/setup.sh installs a wrapper there)."""
    if setting != "auto":
        if not (Path(setting).is_file() and os.access(setting, os.X_OK)):
            raise UserError(
                f"perf.perf_analyzer is {setting!r}, which is not an executable file; use 'auto' "
                "or the path of perf_analyzer"
            )
        return setting
    venv_bin = Path(sys.executable).parent / "perf_analyzer"
    found = shutil.which("perf_analyzer") or (str(venv_bin) if venv_bin.exists() else None)
    if not found:
        raise UserError(
            "perf_analyzer not found: run `make run` or `scripts/setup.sh` (installs it into "
            ".venv/bin), or set perf.perf_analyzer to its path"
        )
    return found
