"""The report's inputs read from disk: result CSVs as polars frames, correctness verdicts, tuning
choices, capacity searches, environment descriptions and the summary and gate documents.

A missing or empty input is logged and left out (the report shows what exists); the model, format
and device come from the files themselves, except for tuning's chosen.json, which does not hold them
and sits in results/tuning/<model>/<format>/<device>/.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from ..contracts import BREAKDOWN, PERCENTILES, Header
from ..paths import target_of
from .text import MISSING, num

log = logging.getLogger(__name__)

ID = ["model", "format", "device"]
# A failure record's columns (deploysnake.failures): status "failed", stage, reason, log excerpt.
FAILURE_TEXT = ["status", "stage", "reason", "log_excerpt"]
# Provenance columns (config_hash, code_version, packages, hardware) are text; shown in their own table.
PROVENANCE = ["config_hash", "code_version", "packages", "hardware"]
PERF_TEXT = [
    "model",
    "format",
    "device",
    "mode",
    *FAILURE_TEXT,
    *PROVENANCE,
]  # every other perf column is a number
PERF_NUMBERS = [
    "batch",
    "concurrency",
    Header.CONCURRENCY,
    Header.THROUGHPUT,
    *BREAKDOWN,
    *PERCENTILES,
]
ACCURACY_TEXT = ["model", "format", "device", "metric", *FAILURE_TEXT, *PROVENANCE]
ACCURACY_NUMBERS = [
    "source",
    "exported",
    "served",
    "served_minus_source",
    "samples",
    "max_abs_diff_served_vs_exported",
]
NATIVE_TEXT = ["model", "format", "device", *FAILURE_TEXT, *PROVENANCE]
NATIVE_NUMBERS = [
    "batch",
    "throughput_infer_per_s",
    "p50_latency_us",
    "p99_latency_us",
    "iterations",
]

Tuned = tuple[dict[str, Any], pl.DataFrame]  # (chosen.json plus model/format/device, trials)
Searched = tuple[dict[str, Any], pl.DataFrame]  # (capacity result JSON, every rate's row)


def existing(paths: Iterable[Path | str]) -> list[Path]:
    """The paths that are non-empty files; the others are logged as skipped."""
    out = []
    for p in map(Path, paths):
        if p.is_file() and p.stat().st_size > 0:
            out.append(p)
        else:
            log.warning("report: skipping missing or empty input %s", p)
    return out


def read_csvs(
    paths: Iterable[Path | str], text: Sequence[str], numbers: Sequence[str]
) -> pl.DataFrame:
    """All CSVs as one frame; read as text first, so all-empty (unstable) columns never get a wrong inferred type."""
    frames = []
    for p in existing(paths):
        try:
            frames.append(pl.read_csv(p, infer_schema=False))
        except pl.exceptions.NoDataError:
            log.warning("report: %s has no rows", p)
    df = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    df = df.with_columns(
        pl.lit(None, pl.String).alias(c) for c in (*text, *numbers) if c not in df.columns
    )
    casts = []
    for col in df.columns:
        if col in text:
            continue
        as_number = pl.col(col).cast(pl.Float64, strict=False)
        # Unknown (extra perf_analyzer) columns become numbers only when no non-empty value would be lost.
        lost = df.select(
            (as_number.is_null() & pl.col(col).is_not_null() & (pl.col(col) != "")).sum()
        ).item()
        if col in numbers or lost == 0:
            casts.append(as_number.fill_nan(None).alias(col))
    return df.with_columns(casts)


def perf(paths: Iterable[Path | str], *text: str) -> pl.DataFrame:
    """perf_analyzer sweep CSVs (offline, online or the serving floor) as one frame."""
    return read_csvs(paths, [*PERF_TEXT, *text], PERF_NUMBERS)


def accuracy(paths: Iterable[Path | str]) -> pl.DataFrame:
    return read_csvs(paths, ACCURACY_TEXT, ACCURACY_NUMBERS)


def native(paths: Iterable[Path | str]) -> pl.DataFrame:
    return read_csvs(paths, NATIVE_TEXT, NATIVE_NUMBERS)


def floor_paths(online: Iterable[Path | str]) -> list[Path]:
    """The serving floor's CSV beside each online CSV that has one (the online job writes both:
    results/perf_online/<model>/<format>/<device>.floor.csv)."""
    beside = (Path(p).with_name(Path(p).stem + ".floor.csv") for p in online)
    return [p for p in beside if p.is_file()]


def floor(paths: Iterable[Path | str]) -> pl.DataFrame:
    """The serving floor's sweeps (its .floor.csv files), without provenance columns."""
    frame = perf(paths, "served_model")
    return frame.drop([c for c in PROVENANCE if c in frame.columns])


def correctness(paths: Iterable[Path | str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(one row per checked output, one row per model/format with passed and reason)."""
    outputs: list[dict[str, Any]] = []
    formats: list[dict[str, Any]] = []
    for p in existing(paths):
        doc = json.loads(p.read_text())
        # Path is results/correctness/<model>/<format>.json: the fallback when the JSON lacks the names.
        model, fmt = str(doc.get("model") or p.parent.name), str(doc.get("format") or p.stem)
        passed = bool(doc.get("passed", False))
        reason = str(doc.get("reason") or "")
        formats.append(
            {
                "model": model,
                "format": fmt,
                "passed": passed,
                "reason": reason,
                "samples": num(doc.get("samples")),
                "log_excerpt": str(doc.get("log_excerpt") or ""),
                "build s": num(doc.get("build_seconds")),
            }
        )
        checks: Mapping[str, Any] = doc.get("outputs") or {}
        if not checks:  # e.g. the artifact failed to load: still one visible row
            checks = {MISSING: {"passed": passed}}
        for name, res in checks.items():
            ok = bool(res.get("passed", passed))
            status = "passed" if ok else f"FAILED: {reason}" if reason else "FAILED"
            outputs.append(
                {
                    "model": model,
                    "format": fmt,
                    "output": str(name),
                    "samples": num(doc.get("samples")),
                    "atol": num(res.get("atol")),
                    "rtol": num(res.get("rtol")),
                    "max abs err": num(res.get("max_abs_err")),
                    "max rel err": num(res.get("max_rel_err")),
                    "status": status,
                }
            )
    out_schema = {
        "model": pl.String,
        "format": pl.String,
        "output": pl.String,
        "samples": pl.Float64,
        "atol": pl.Float64,
        "rtol": pl.Float64,
        "max abs err": pl.Float64,
        "max rel err": pl.Float64,
        "status": pl.String,
    }
    fmt_schema = {
        "model": pl.String,
        "format": pl.String,
        "passed": pl.Boolean,
        "reason": pl.String,
        "samples": pl.Float64,
        "log_excerpt": pl.String,
        "build s": pl.Float64,
    }
    per_output = pl.DataFrame(outputs, schema=out_schema).sort("model", "format", "output")
    per_format = pl.DataFrame(formats, schema=fmt_schema).sort("model", "format")
    return per_output, per_format


def tuning(paths: Iterable[Path | str]) -> list[Tuned]:
    """(chosen.json, trials.csv) pairs, the side_by_side.csv beside them as the choice's
    "side_by_side_table" (None without one); model, format and device from chosen.json, else
    (the tuning job does not write them today) from its folder results/tuning/<model>/<format>/<device>/."""
    pairs = []
    for chosen_path in sorted(Path(p) for p in paths if Path(p).name == "chosen.json"):
        chosen = json.loads(chosen_path.read_text())
        target = target_of(chosen_path)
        folder = {"model": target.model, "format": target.format, "device": target.device}
        chosen.update({k: chosen.get(k) or folder[k] for k in ID})
        trials = pl.read_csv(chosen_path.with_name("trials.csv"), infer_schema_length=None)
        trials = trials.with_columns(pl.col("chosen").cast(pl.String).str.to_lowercase() == "true")
        side = chosen_path.with_name("side_by_side.csv")
        chosen["side_by_side_table"] = (
            pl.read_csv(
                side,
                infer_schema_length=None,
                schema_overrides={"throughput": pl.Float64, "p99_us": pl.Float64},
            )
            if side.exists()
            else None
        )
        pairs.append((chosen, trials))
    return pairs


def capacity(paths: Iterable[Path | str]) -> list[Searched]:
    """(result JSON, every rate's row) per searched model, format and device, in path order
    (results/capacity/<model>/<format>/<device>.json and the .csv beside it)."""
    loaded = []
    for json_path in sorted(Path(p) for p in paths if Path(p).suffix == ".json"):
        result = json.loads(json_path.read_text())
        csv_path = json_path.with_suffix(".csv")
        rows = (
            pl.read_csv(csv_path, infer_schema_length=None)
            if csv_path.exists() and csv_path.stat().st_size
            else pl.DataFrame()
        )
        loaded.append((result, rows))
    return loaded


def environments(environment: Path | Sequence[Path]) -> list[dict[str, Any]]:
    """Each device's results/environment/<device>.json."""
    paths = [environment] if isinstance(environment, (str, Path)) else list(environment)
    return [json.loads(Path(p).read_text()) for p in paths]


def json_or_none(path: Path | None) -> Any:
    """A JSON document (summary.json, gate.json), None when there is no such file."""
    return json.loads(Path(path).read_text()) if path and Path(path).is_file() else None
