"""Deploy stage: the native Triton model repository (onnxruntime_onnx, pytorch_libtorch,
tensorflow_savedmodel, tensorrt_plan) of every format that passed correctness, for one device, with
the same batching and instances as the served repository, packed as one archive."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .contracts import TunedConfiguration
from .errors import UserError
from .repository import write_repository

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
        settings = TunedConfiguration.read(entry["tuned"]).triton if entry.get("tuned") else triton
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
    with _reproducible_tar(archive) as tar:
        for path in sorted(out_dir.rglob("*")):
            info = tar.gettarinfo(
                str(path), arcname=str(Path(out_dir.name) / path.relative_to(out_dir))
            )
            _anonymous(info)
            if path.is_file():
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    log.info("deploy repository %s (%s), archive %s", out_dir, ", ".join(names), archive)
    return names


@contextlib.contextmanager
def _reproducible_tar(archive: str | Path) -> Iterator[tarfile.TarFile]:
    """A gzip'd tar open for writing, its gzip header without a time stamp."""
    with (
        open(archive, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        yield tar


def _anonymous(info: tarfile.TarInfo) -> None:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""


def write_release(
    deploy_archive: str | Path, summary: Mapping[str, Any], release: str | Path
) -> None:
    """The release archive: the deploy archive's members (the repository folder <device>/...) and
    `summary` as <device>/summary.json (a file at the repository's top, beside MODELS.json: Triton
    loads the folder as before). What a CI keeps of a deployed version; a later run's `baseline:`
    may name it (summary.read finds the summary inside). Kept apart from the deploy archive, which is
    byte-for-byte reproducible from the model and config alone, while a summary holds measurements.
    Raises UserError when the deploy archive has no single top folder."""
    with tarfile.open(deploy_archive) as source:
        members = source.getmembers()
        tops = {Path(m.name).parts[0] for m in members}
        if len(tops) != 1:
            raise UserError(
                f"the deploy archive {deploy_archive} holds {sorted(tops)} at its top (one "
                "repository folder expected); rebuild it with rule triton_write_deploy"
            )
        (top,) = tops
        body = (json.dumps(dict(summary), indent=2) + "\n").encode()
        with _reproducible_tar(release) as tar:
            for member in members:
                if member.name == f"{top}/summary.json":
                    continue
                tar.addfile(member, source.extractfile(member) if member.isfile() else None)
            info = tarfile.TarInfo(f"{top}/summary.json")
            info.size, info.mode = len(body), 0o644
            _anonymous(info)
            tar.addfile(info, io.BytesIO(body))
    log.info("release archive %s: %s with summary.json", release, deploy_archive)
