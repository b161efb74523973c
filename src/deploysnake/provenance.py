"""Provenance of a result row: the settings, code, packages and hardware that produced it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from . import __version__
from .environment import cpu_name, git_commit, gpus, versions

COLUMNS = ("config_hash", "code_version", "packages", "hardware")
# The packages whose versions can change a measured number.
RELEVANT = (
    "torch",
    "onnx",
    "onnxruntime",
    "tritonclient",
    "nvidia-pytriton",
    "numpy",
    "tensorflow-cpu",
    "tf2onnx",
    "tensorrt",
)


def config_hash(settings: dict[str, Any]) -> str:
    """Hash of the settings the job read (its params), not the whole config: a row's hash changes
    exactly when something that produced it changes."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[
        :12
    ]


def stamp(settings: dict[str, Any], root: str | Path, device: str) -> dict[str, str]:
    found = versions()
    gpu_names = [g["name"] for g in gpus()]
    hardware = f"{cpu_name()}" + (
        f"; {', '.join(gpu_names)}" if device != "cpu" and gpu_names else ""
    )
    return {
        "config_hash": config_hash(settings),
        "code_version": git_commit(Path(root)) or f"deploysnake {__version__}",
        "packages": ";".join(f"{name}={found[name]}" for name in RELEVANT if name in found),
        "hardware": hardware,
    }


def of_job(snakemake: Any) -> dict[str, str]:
    """The stamp of the running Snakemake job (its params, this checkout, its device)."""
    settings = dict(snakemake.params.items())
    # scriptdir is workflow/rules/../scripts: resolve it, or parents[1] is workflow/rules, not the checkout.
    return stamp(
        settings,
        Path(snakemake.scriptdir).resolve().parents[1],
        getattr(snakemake.wildcards, "device", "cpu"),
    )
