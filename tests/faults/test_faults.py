"""Faults driven through the real workflow: each asserts the message the user sees, what survives,
that no tritonserver/perf_analyzer/job process of the run remains, and that a rerun completes."""

from __future__ import annotations

import copy
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from ..conftest import ROOT
from .conftest import TINY, no_processes_left, processes_in, run, start, wait_until, write_config

pytestmark = pytest.mark.e2e


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def perf_csv(workdir: Path, mode: str, fmt: str = "onnx") -> Path:
    return workdir / "results" / f"perf_{mode}" / "digits" / fmt / "cpu.csv"


def job_log(workdir: Path, stage: str, fmt: str = "onnx") -> Path:
    return workdir / "logs" / stage / "digits" / fmt / "cpu.log"


@pytest.mark.parametrize("kind", ["truncated", "other_architecture"])
def test_bad_checkpoint_is_named(kind: str, tmp_path: Path) -> None:
    bad = tmp_path / f"{kind}.pt"
    state = torch.nn.Linear(3, 2).state_dict() if kind == "other_architecture" else None
    if state is not None:
        torch.save(state, bad)
    else:
        torch.save({"w": torch.zeros(1000)}, bad)
        bad.write_bytes(bad.read_bytes()[:300])
    config = copy.deepcopy(TINY)
    config["models"]["digits"]["checkpoint"] = str(bad)
    write_config(tmp_path, config)
    done = run(tmp_path, check=False)
    said = done.stdout + done.stderr
    assert done.returncode != 0
    expected = (
        "does not fit the recipe's model" if kind == "other_architecture" else "cannot be read"
    )
    assert f"checkpoint {bad} {expected}" in said, said[-3000:]
    assert not (tmp_path / "results" / "export").exists()
    no_processes_left(tmp_path)


def test_format_that_cannot_export_is_reported_and_the_others_go_on(tmp_path: Path) -> None:
    config = copy.deepcopy(TINY)
    config["models"]["digits"].update(
        recipe=str(ROOT / "tests" / "recipes" / "unexportable"),
        dataloader=str(ROOT / "recipes" / "digits" / "dataloader.py"),
        metrics=str(ROOT / "recipes" / "digits" / "metrics.py"),
    )
    write_config(tmp_path, config)
    done = run(tmp_path)
    assert "digits/onnx is not served: export failed" in done.stdout + done.stderr
    verdict = json.loads(
        (tmp_path / "results" / "correctness" / "digits" / "onnx.json").read_text()
    )
    assert verdict["stage"] == "export" and not verdict["passed"]
    assert "No ONNX function found" in verdict["reason"] and "_linalg_eigh" in verdict["reason"]
    assert (
        perf_csv(tmp_path, "offline", "torchscript_trace").exists()
        and not perf_csv(tmp_path, "offline").exists()
    )
    html = (tmp_path / "results" / "report.html").read_text()
    assert "not served: export failed" in html and "log excerpt" in html and "_linalg_eigh" in html


def test_model_the_server_cannot_load_is_a_failure_row_of_the_report(
    copy_of_finished: Path,
) -> None:
    """A model Triton cannot load fails that format's served stages, within the readiness timeout:
    the stage's output is a failure record with Triton's own error lines, the run ends well, and the
    report lists it and chooses no best among that format's points."""
    workdir = copy_of_finished
    model = (
        workdir
        / "results"
        / "repository"
        / "digits"
        / "onnx"
        / "cpu"
        / "digits_onnx"
        / "1"
        / "model.onnx"
    )
    model.write_bytes(b"corrupted on disk")
    perf_csv(workdir, "offline").unlink()
    started = time.monotonic()
    done = run(workdir, str(perf_csv(workdir, "offline").relative_to(workdir)))
    assert time.monotonic() - started < 60 + 30
    said = done.stdout + done.stderr
    assert "digits/onnx on cpu failed in perf_analyzer_offline (recorded" in said, said[-3000:]
    (record,) = rows(perf_csv(workdir, "offline"))
    assert record["status"] == "failed" and record["stage"] == "perf_offline"
    # Triton's own error lines, not just "it failed": the load error for this model.
    assert record["reason"].startswith("the server cannot load the model:")
    assert "digits_onnx" in record["reason"] and "failed to load" in record["reason"].lower()
    assert "before it was ready" in job_log(workdir, "perf_offline").read_text()
    no_processes_left(workdir)
    run(workdir)  # the report is built again, with the failure
    html = (workdir / "results" / "report.html").read_text()
    assert 'class="served-failures"' in html and "perf_offline failed: the server cannot" in html
    best = html.split('id="best"')[1].split("</section>")[0]
    assert ">onnx<" not in best
    # the other format is the best, where it has a point that can be chosen: stable, undisturbed
    # (a point measured while the machine was busy never is) and within the default p99 budget
    if any(
        r["status"] == "ok" and float(r["p99 latency"]) <= 10_000
        for mode in ("offline", "online")
        for r in rows(perf_csv(workdir, mode, "torchscript_trace"))
    ):
        assert "torchscript_trace" in best


def test_missing_perf_analyzer_still_stops_the_run(copy_of_finished: Path) -> None:
    """An infrastructure error is no format's failure: the job fails with the message."""
    workdir = copy_of_finished
    config = copy.deepcopy(TINY)
    config["perf"]["perf_analyzer"] = "/nowhere/perf_analyzer"
    write_config(workdir, config, "no_pa.yaml")
    target = str(perf_csv(workdir, "online").relative_to(workdir))
    done = run(workdir, target, config="no_pa.yaml", check=False)
    assert done.returncode != 0
    assert "perf.perf_analyzer is '/nowhere/perf_analyzer', which is not an executable" in (
        done.stdout + done.stderr
    )
    assert not perf_csv(workdir, "online").exists()
    no_processes_left(workdir)


def test_server_killed_mid_sweep_fails_cleanly_and_the_rerun_completes(
    copy_of_finished: Path,
) -> None:
    workdir = copy_of_finished
    config = copy.deepcopy(TINY)
    config["perf"]["offline"]["batch_sizes"] = [1, 2, 4, 8, 16, 32]
    write_config(workdir, config, "longer.yaml")
    target = str(perf_csv(workdir, "offline").relative_to(workdir))
    job = start(workdir, target, config="longer.yaml")
    try:
        log = job_log(workdir, "perf_offline")
        wait_until(
            lambda: log.exists() and "point 2 of 6" in log.read_text(),
            120,
            "the sweep to reach point 2",
        )
        servers = [
            p
            for p in psutil.process_iter(["name", "cwd"])
            if p.info["name"] == "tritonserver"
            and p.info["cwd"]
            and Path(p.info["cwd"]).is_relative_to(workdir)
        ]
        assert len(servers) == 1
        servers[0].kill()
        job.wait(timeout=120)
    finally:
        job.kill()
    output = (workdir / "snakemake.out").read_text()
    assert job.returncode != 0
    assert "tritonserver died during the measurement" in output + log.read_text()
    assert (
        not perf_csv(workdir, "offline").exists()
        and not perf_csv(workdir, "offline").with_suffix(".partial").exists()
    )
    no_processes_left(workdir)
    run(workdir, target, config="longer.yaml")
    with open(perf_csv(workdir, "offline")) as handle:
        assert [r["batch"] for r in csv.DictReader(handle)] == ["1", "2", "4", "8", "16", "32"]


@pytest.mark.parametrize("how", ["kill -9", "Ctrl-C"])
def test_interrupted_run_leaves_no_process_and_the_plain_rerun_completes(
    how: str, copy_of_finished: Path
) -> None:
    workdir = copy_of_finished
    for mode in ("offline", "online"):
        for fmt in ("onnx", "torchscript_trace"):
            perf_csv(workdir, mode, fmt).unlink()
    (workdir / "results" / "report.html").unlink()  # else Snakemake sees nothing to do
    job = start(workdir)
    try:
        wait_until(
            lambda: any("perf_analyzer" in p for p in processes_in(workdir)),
            120,
            "perf_analyzer to run",
        )
        if how == "kill -9":
            job.kill()  # snakemake alone; its jobs notice and stop
        else:
            os.killpg(
                job.pid, signal.SIGINT
            )  # what a terminal sends to the foreground group on Ctrl-C
        job.wait(timeout=120)
    finally:
        job.kill()
    no_processes_left(workdir)
    assert not list((workdir / "results").rglob("*.partial"))
    run(workdir)  # no --unlock, no manual cleanup
    assert all(
        perf_csv(workdir, m, f).exists()
        for m in ("offline", "online")
        for f in ("onnx", "torchscript_trace")
    )
    no_processes_left(workdir)


def test_measurement_under_load_is_reported_unstable(copy_of_finished: Path) -> None:
    workdir = copy_of_finished
    config = copy.deepcopy(TINY)
    # 3 windows in a row within 0.01 % of each other never happens on a busy machine.
    config["perf"].update(stability_percentage=0.01, max_trials=3)
    write_config(workdir, config, "strict.yaml")
    hog = "import time\nend = time.monotonic() + 90\nwhile time.monotonic() < end: pass\n"
    hogs = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(os.cpu_count() or 2)]
    try:
        done = run(workdir, config="strict.yaml")
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert "unstable measurement" in done.stdout + done.stderr
    with open(perf_csv(workdir, "online")) as handle:
        rows = list(csv.DictReader(handle))
    unstable = [r for r in rows if r["status"] == "unstable"]
    assert unstable and all(r["Inferences/Second"] == "" for r in unstable)
    assert ">unstable<" in (workdir / "results" / "report.html").read_text()
    # an unstable point was measured once more, with windows twice as long, before it was recorded so
    interval = config["perf"]["measurement_interval_ms"]
    log = job_log(workdir, "perf_online").read_text()
    assert (
        "(again, windows twice as long)" in log and f"--measurement-interval {2 * interval} " in log
    )


def test_pinned_port_in_use_is_a_clear_error(copy_of_finished: Path) -> None:
    workdir = copy_of_finished
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = copy.deepcopy(TINY)
        config["triton"]["grpc_port"] = port
        write_config(workdir, config, "pinned.yaml")
        accuracy = workdir / "results" / "accuracy" / "digits" / "onnx" / "cpu.csv"
        accuracy.unlink()
        done = run(workdir, str(accuracy.relative_to(workdir)), config="pinned.yaml", check=False)
    assert done.returncode != 0
    assert (
        f"triton.grpc_port {port} on 127.0.0.1 is in use by another process"
        in done.stdout + done.stderr
    )
    no_processes_left(workdir)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c.update(colour="red"), "config: unknown key(s) 'colour'"),
        (
            lambda c: c["triton"].update(max_batch_size="big"),
            "config.triton.max_batch_size: 'big' should be of type integer",
        ),
        (lambda c: c.update(formats=[]), "config.formats"),
        (
            lambda c: c["perf"]["offline"].update(batch_sizes=[1, 64]),
            "config.perf.offline.batch_sizes: [64] above triton.max_batch_size (32)",
        ),
        (
            lambda c: c.update(devices=["cpu", "tpu"]),
            "config.devices[1]: 'tpu' is not allowed; allowed values: cpu, gpu",
        ),
        (
            lambda c: c.update(models={"my model; rm -rf ~": c["models"]["digits"]}),
            "name 'my model; rm -rf ~' is not allowed",
        ),
        (
            lambda c: c["models"]["digits"].update(checkpoint="/nowhere/model.pt"),
            "config.models.digits.checkpoint: file /nowhere/model.pt does not exist",
        ),
    ],
    ids=[
        "unknown key",
        "wrong type",
        "no formats",
        "batch above max",
        "unknown device",
        "shell characters in name",
        "missing checkpoint",
    ],
)
def test_bad_config_is_rejected_before_any_job(edit, expected: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = copy.deepcopy(TINY)
    edit(config)
    write_config(tmp_path, config)
    done = run(tmp_path, check=False, timeout=120)
    assert done.returncode != 0
    assert expected in done.stdout + done.stderr, (done.stdout + done.stderr)[-2000:]
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()
