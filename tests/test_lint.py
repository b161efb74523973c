"""The workflow follows Snakemake's conventions: its own linter and snakefmt are clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, snakemake


def test_snakemake_lint_is_clean(tmp_path: Path) -> None:
    done = snakemake("--lint", cwd=ROOT, check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Congratulations, your workflow is in a good condition!" in done.stdout + done.stderr


def test_snakefmt_check_is_clean() -> None:
    exe = shutil.which("snakefmt") or str(Path(sys.executable).parent / "snakefmt")
    done = subprocess.run(
        [exe, "--check", "."], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
