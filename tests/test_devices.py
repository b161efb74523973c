"""Devices: GPU kinds matched by name, SLURM GRES read, resources per device, and a device this
machine lacks stopping a real local run before any job."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deploysnake import devices
from deploysnake.errors import UserError

from .conftest import ROOT, snakemake


def test_gpu_kinds_match_whole_words_of_nvidia_smi_names() -> None:
    gpus = [
        (0, "NVIDIA A100-SXM4-80GB"),
        (1, "NVIDIA A10"),
        (2, "Tesla T4"),
        (3, "NVIDIA H100 80GB HBM3"),
    ]
    assert devices.matching_gpus("a100", gpus) == [0]
    assert devices.matching_gpus("a10", gpus) == [1]  # not the A100
    assert devices.matching_gpus("t4", gpus) == [2]
    assert devices.matching_gpus("h100", gpus) == [3]
    assert devices.matching_gpus("gpu", gpus) == [0, 1, 2, 3]
    assert devices.matching_gpus("l4", gpus) == []


def test_cluster_gres_decides_which_gpus_a_cluster_has() -> None:
    gres = ["gpu:a100:4(S:0-1)", "gpu:nvidia_h100:8", "(null)"]
    assert devices.cluster_has("a100", gres)
    assert not devices.cluster_has("h100", gres)
    assert devices.cluster_has("h100", gres, {"h100": "nvidia_h100"})
    assert devices.cluster_has("gpu", gres) and not devices.cluster_has("gpu", ["(null)"])


def test_gpu_devices_ask_for_a_gpu_of_their_kind() -> None:
    assert devices.resources("cpu") == {"gpu": 0, "gpu_model": ""}
    assert devices.resources("a100") == {"gpu": 1, "gpu_model": "a100"}
    assert devices.resources("a100", {"a100": "nvidia_a100_80gb"}) == {
        "gpu": 1,
        "gpu_model": "nvidia_a100_80gb",
    }
    assert devices.resources("gpu") == {"gpu": 1, "gpu_model": ""}


def test_this_machine_is_checked_for_real() -> None:
    devices.check_available(["cpu"], "local")
    if devices.local_gpus():
        pytest.skip("this machine has a GPU; the refusal below needs one without")
    with pytest.raises(
        UserError, match=r"config.devices: \['t4'\] are not on this machine, which has no GPU"
    ):
        devices.check_available(["cpu", "t4"], "local")


def test_a_gpu_device_this_machine_lacks_stops_the_run_before_any_job(tmp_path: Path) -> None:
    if devices.local_gpus():
        pytest.skip("this machine has a GPU")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["devices"] = ["cpu", "t4"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(
        "results/report.html",
        "--cores",
        "2",
        "--configfile",
        "c.yaml",
        cwd=tmp_path,
        check=False,
        timeout=300,
    )
    assert done.returncode != 0
    assert "config.devices: ['t4'] are not on this machine" in done.stdout + done.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()
