"""`snakemake --report report.zip` on the fault suite's tiny finished run: Snakemake's own
archive of the results flagged with report() in the rules, with their categories and captions."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from ..conftest import snakemake
from .conftest import TINY

pytestmark = pytest.mark.e2e

STAGES = ("accuracy", "perf_offline", "perf_online", "native")


def test_report_archive_holds_the_flagged_results(copy_of_finished: Path) -> None:
    workdir = copy_of_finished
    snakemake("--configfile", "tiny.yaml", "--report", "report.zip", cwd=workdir)
    with zipfile.ZipFile(workdir / "report.zip") as archive:
        names = archive.namelist()
        raw = {n: archive.read(n) for n in names if n.startswith("report/data/raw/")}
        page = archive.read("report/report.html").decode()
    # each flagged result, byte for byte: the page, every per-stage CSV, the deploy archive
    results = workdir / "results"
    expected = [results / "report.html", results / "deploy" / "cpu.tar.gz"]
    expected += [results / s / "digits" / f / "cpu.csv" for s in STAGES for f in TINY["formats"]]
    assert sorted(Path(n).name for n in raw) == sorted(p.name for p in expected), names
    assert sorted(raw.values()) == sorted(p.read_bytes() for p in expected)
    # categories and captions, the captions filled in with each result's wildcards
    for category in ("Report", "Accuracy", "Performance offline", "Performance online"):
        assert f'"{category}"' in page, category
    assert "Native baseline" in page and "Deploy" in page
    assert re.search(r"Offline \(throughput\) sweep of <strong>digits</strong>", page)
    assert "native Triton model repository for <strong>cpu</strong>" in page
