"""Environment stage: the hardware, software and code version a run's numbers came from."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from . import __version__
from .devices import nvidia_smi

PACKAGES = [
    "torch",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "tritonclient",
    "nvidia-pytriton",
    "numpy",
    "polars",
    "altair",
    "snakemake",
    "scikit-learn",
    "tensorflow-cpu",
    "tf2onnx",
    "tensorrt",
]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[dict[str, str]]:
    return [
        # strict=False: a row nvidia-smi could not fill (an error line) still names what it has.
        dict(zip(("name", "memory", "driver"), row, strict=False))
        for row in nvidia_smi(["name", "memory.total", "driver_version"])
    ]


def git_commit(root: Path) -> str | None:
    if not (root / ".git").exists() or not shutil.which("git"):
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return None
    return commit + ("-dirty" if dirty else "")


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def describe(root: str | Path, output: str | Path, device: str = "cpu") -> dict[str, Any]:
    """Describe the node this runs on: a job per device, so a GPU device's description comes from its node."""
    env = {
        "device": device,
        "hardware": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "gpus": gpus(),
        },
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "deploysnake": __version__,
        "git_commit": git_commit(Path(root)),
        "packages": versions(),
    }
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(env, indent=2) + "\n")
    return env
