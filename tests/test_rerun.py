"""What re-runs after a change, counted in the jobs Snakemake plans, on a copy of the project (so
editing its code cannot touch this checkout)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT
from .test_workflow import planned_jobs

pytestmark = pytest.mark.e2e

CONFIG = {
    "models": {"digits": {"recipe": "recipes/digits", "params": {"channels": 8, "epochs": 2}}},
    "formats": ["torchscript_trace", "onnx"],
    "devices": ["cpu"],
    "triton": {"max_batch_size": 16},
    "accuracy": {"batch_size": 16},
    "perf": {
        "measurement_interval_ms": 300,
        "stability_percentage": 50,
        # one point per sweep: the tests count the jobs Snakemake plans, not the points
        "offline": {"batch_sizes": [8], "concurrency": [1]},
        "online": {"concurrency": [1]},
    },
    "native": {"window_s": 0.2},
}


def snakemake(project: Path, *args: str) -> str:
    exe = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    done = subprocess.run(
        [exe, "results/report.html", "--cores", "2", "--configfile", "c.yaml", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("project")
    for name in (
        "Snakefile",
        "config",
        "envs",
        "workflow",
        "src",
        "recipes",
        "profiles",
        "README.md",
    ):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, project / name)
    (project / "c.yaml").write_text(yaml.safe_dump(CONFIG))
    snakemake(project)
    return project


def test_touching_the_readme_reruns_nothing(project: Path) -> None:
    (project / "README.md").write_text((project / "README.md").read_text() + "\nedited\n")
    assert planned_jobs(snakemake(project, "--dry-run")) == {}


def test_a_perf_setting_reruns_only_perf_and_report(project: Path) -> None:
    config = yaml.safe_load((project / "c.yaml").read_text())
    config["perf"]["stability_percentage"] = 40
    (project / "perf.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(project, "--dry-run", "--configfile", "perf.yaml")
    # The native baseline checks the offline figures (served above in-process: measured again).
    assert planned_jobs(out) == {
        "perf_analyzer_offline": 2,
        "perf_analyzer_online": 2,
        "runtime_native_baseline": 2,
        "python_write_summary": 1,
        "python_compare_baseline": 1,
        "altair_report": 1,
    }


def test_editing_the_exporter_reruns_the_exports_and_what_depends_on_them(project: Path) -> None:
    exporter = project / "src" / "deploysnake" / "export" / "to_onnx.py"
    exporter.write_text(exporter.read_text() + "\n# a change to the exporter\n")
    planned = planned_jobs(snakemake(project, "--dry-run"))
    assert "torch_train" not in planned
    assert planned["torch_export_torchscript"] == 1 and planned["torch_export_onnx"] == 1
    assert planned["runtime_check_correctness"] == 2 and planned["altair_report"] == 1
    assert not [rule for rule in planned if re.match(r"python_describe_environment", rule)]
