"""Deploy stage: the native Triton model repository (onnxruntime_onnx, pytorch_libtorch,
tensorflow_savedmodel, tensorrt_plan) of every format that passed correctness, for one device, with
the same batching and instances as the served repository, packed as one archive."""

from __future__ import annotations

import gzip
import json
import logging
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .repository import write_repository
from .tuning import chosen_triton

log = logging.getLogger(__name__)


def write_deploy(
    models: list[dict[str, Any]],
    triton: dict[str, Any],
    device: str,
    out_dir: str | Path,
    archive: str | Path,
    instances: Mapping[tuple[str, str], int] | None = None,
) -> list[str]:
    """models: [{"model", "format", "artifact", "io"}] of the formats that passed; returns the Triton
    model names. instances: (model, format) -> the instance count the capacity plan asks for
    (plan.scale instances; summary.planned_instances), replacing the configured or tuned count."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for entry in models:
        # A tuned format is deployed with the configuration its search chose.
        settings = chosen_triton(entry["tuned"]) if entry.get("tuned") else triton
        planned = (instances or {}).get((entry["model"], entry["format"]))
        if planned:
            settings = {**settings, "instances": {**settings["instances"], device: planned}}
            log.info(
                "%s/%s: %d instances (the capacity plan)", entry["model"], entry["format"], planned
            )
        model_dir = write_repository(
            entry["model"],
            entry["artifact"],
            entry["io"],
            settings,
            device,
            "native",
            out_dir / entry["model"] / entry["format"],
            link=False,  # what is shipped: real files, independent of results/export
        )
        target = out_dir / model_dir.name
        model_dir.rename(target)
        for empty in (model_dir.parent, model_dir.parent.parent):
            if not any(empty.iterdir()):
                empty.rmdir()
        names.append(target.name)
    (out_dir / "MODELS.json").write_text(
        json.dumps({"device": device, "models": names}, indent=2) + "\n"
    )
    # A reproducible archive: fixed order, owner and mtime, so the same inputs give the same bytes.
    with (
        open(archive, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for path in sorted(out_dir.rglob("*")):
            info = tar.gettarinfo(
                str(path), arcname=str(Path(out_dir.name) / path.relative_to(out_dir))
            )
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_file():
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    log.info("deploy repository %s (%s), archive %s", out_dir, ", ".join(names), archive)
    return names
