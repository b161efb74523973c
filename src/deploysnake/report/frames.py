"""The report's tables as polars frames, computed from the loaded results (deploysnake.report.load):
served beside native and beside the serving floor, the summary, the served stages' failures,
provenance, hardware and the capacity figures. No HTML here: the templates show these frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from ..contracts import Header, Status
from ..measuring.capacity import cost_per_million, describe
from ..spread import ratio_text
from .load import ID, PROVENANCE, Searched
from .text import MISSING, WITHIN_SPREAD, fmt, fmt_any

CAPACITY = "capacity req/s"
COST = "cost per 1M inferences"


def served_vs_native(offline: pl.DataFrame, native: pl.DataFrame) -> pl.DataFrame:
    """Served offline points beside the in-process run of the same artifact and batch, with what each
    cost in CPU: server and client (perf_analyzer) cores, CPU ms per 1,000 inferences served and
    in-process, and their ratio (the serving overhead). served/native is a figure only where both
    are stable and it is at most 1; above 1 it reads "baseline suspect" (the native job measured
    again and still found it) or "≈ 1, within the spread"."""

    def col(frame: pl.DataFrame, name: str) -> pl.Expr:
        return pl.col(name) if name in frame.columns else pl.lit(None, pl.Float64)

    served = offline.select(
        *ID,
        "batch",
        "concurrency",
        pl.col("status").alias("served status"),
        pl.col(Header.THROUGHPUT).alias("served infer/s"),
        pl.col(Header.P50).alias("served p50 µs"),
        pl.col(Header.P99).alias("served p99 µs"),
        col(offline, "server_cpu").alias("server cores"),
        col(offline, "client_cpu").alias("client cores"),
        col(offline, "server_peak_rss_mb").alias("server peak MiB"),
        *spread_of(offline, "_served"),
    )
    nat = native.select(
        *ID,
        "batch",
        pl.col("status").fill_null(Status.OK).alias("native status"),
        pl.col("throughput_infer_per_s").alias("native infer/s"),
        pl.col("p50_latency_us").alias("native p50 µs"),
        pl.col("p99_latency_us").alias("native p99 µs"),
        col(native, "native_cpu_ms_per_1k").alias("native CPU ms/1k"),
        *spread_of(native, "_native"),
    )
    joined = served.join(nat, on=[*ID, "batch"], how="full", coalesce=True, nulls_equal=True)
    ratio = pl.col("served infer/s") / pl.col("native infer/s")
    status = (
        pl.when(pl.col("served status") != Status.OK)
        .then(pl.col("served status"))
        .when(
            pl.col("native status").is_in([Status.DISTURBED.value, Status.BASELINE_SUSPECT.value])
        )
        .then(pl.col("native status"))
        .when(ratio > 1)
        .then(pl.lit(WITHIN_SPREAD))
        .when(ratio.is_not_null())
        .then(pl.lit(Status.OK))
        .otherwise(None)
    )
    per_1k = pl.col("server cores") / pl.col("served infer/s") * 1e6
    return (
        joined.with_columns(status.alias("ratio status"))
        .with_columns(
            pl.when(pl.col("ratio status") == Status.OK)
            .then(ratio)
            .otherwise(None)
            .alias("served/native"),
            pl.when(pl.col("served status") == Status.OK)
            .then(per_1k)
            .otherwise(None)
            .alias("server CPU ms/1k"),
            pl.when(pl.col("served status") == Status.OK)
            .then(pl.col("client cores") / pl.col("served infer/s") * 1e6)
            .otherwise(None)
            .alias("client CPU ms/1k"),
        )
        .with_columns(
            (pl.col("server CPU ms/1k") / pl.col("native CPU ms/1k")).alias("serving overhead"),
            ratio_interval("served infer/s", "_served", "native infer/s", "_native")
            .fill_null("")
            .alias("served/native 95 %"),
        )
        .with_columns(  # an interval only beside a ratio that is a figure
            pl.when(pl.col("ratio status") == Status.OK)
            .then(pl.col("served/native 95 %"))
            .otherwise(pl.lit(""))
            .alias("served/native 95 %")
        )
        .select(
            *ID,
            "batch",
            "concurrency",
            "served status",
            "served infer/s",
            "served p50 µs",
            "served p99 µs",
            "native status",
            "native infer/s",
            "native p50 µs",
            "native p99 µs",
            "served/native",
            "served/native 95 %",
            "ratio status",
            "server cores",
            "client cores",
            "server peak MiB",
            "server CPU ms/1k",
            "native CPU ms/1k",
            "serving overhead",
            "client CPU ms/1k",
        )
        .sort(*ID, "batch", "concurrency", nulls_last=True)
    )


def served_vs_floor(online: pl.DataFrame, floor: pl.DataFrame) -> pl.DataFrame:
    """Per online point, the serving floor at the same concurrency (a model that computes nothing,
    same configuration and runner) and served/floor: near 1, the serving path limits single-sample
    traffic, not the model."""
    if floor.height == 0:
        return pl.DataFrame()
    fl = floor.select(
        *ID,
        "concurrency",
        pl.col("status").alias("floor status"),
        pl.col(Header.THROUGHPUT).alias("floor infer/s"),
        pl.col(Header.P99).alias("floor p99 µs"),
        *spread_of(floor, "_floor"),
    )
    served = online.select(
        *ID,
        "concurrency",
        pl.col("status").alias("served status"),
        pl.col(Header.THROUGHPUT).alias("served infer/s"),
        pl.col(Header.P99).alias("served p99 µs"),
        *spread_of(online, "_served"),
    )
    both_ok = (pl.col("served status") == Status.OK) & (pl.col("floor status") == Status.OK)
    return (
        fl.join(served, on=[*ID, "concurrency"], how="full", coalesce=True, nulls_equal=True)
        .with_columns(
            pl.when(both_ok)
            .then(pl.col("served infer/s") / pl.col("floor infer/s"))
            .otherwise(None)
            .alias("served/floor")
        )
        .with_columns(
            pl.when(both_ok)
            .then(ratio_interval("served infer/s", "_served", "floor infer/s", "_floor"))
            .otherwise(pl.lit(""))
            .alias("served/floor 95 %")
        )
        .drop("_floor n", "_floor cv", "_served n", "_served cv")
        .sort(*ID, "concurrency", nulls_last=True)
    )


def spread_of(frame: pl.DataFrame, prefix: str) -> list[pl.Expr]:
    """A perf or native frame's infer_s_n and infer_s_cv (perf.spread_columns, native's
    sub-windows) as "<prefix> n" / "<prefix> cv" (Float64); nulls for results without them."""
    return [
        (pl.col(f"infer_s_{k}") if f"infer_s_{k}" in frame.columns else pl.lit(None, pl.Float64))
        .cast(pl.Float64, strict=False)
        .alias(f"{prefix} {k}")
        for k in ("n", "cv")
    ]


def ratio_interval(num: str, num_spread: str, den: str, den_spread: str) -> pl.Expr:
    """The 95 % interval of num / den as a text cell (deploysnake.spread.ratio_text), from the two
    figures' columns and their repeats and CVs ("<spread> n", "<spread> cv")."""
    names = [num, f"{num_spread} n", f"{num_spread} cv", den, f"{den_spread} n", f"{den_spread} cv"]
    return pl.struct(names).map_elements(
        lambda r: ratio_text(*(r[n] for n in names)), return_dtype=pl.String
    )


def best_by(df: pl.DataFrame, at: str, name: str, *extra: pl.Expr) -> pl.DataFrame:
    """Per (model, format, device) the stable point of highest throughput: "best <name> infer/s"
    and "<name> <at>" (the batch or concurrency it was measured at), and the `extra` columns."""
    return (
        df.filter(pl.col("status") == Status.OK)
        .drop_nulls(Header.THROUGHPUT)
        .sort(Header.THROUGHPUT, descending=True)
        .group_by(ID, maintain_order=True)
        .first()
        .select(
            *ID,
            pl.col(Header.THROUGHPUT).alias(f"best {name} infer/s"),
            pl.col(at).alias(f"{name} {at}"),
            *extra,
        )
    )


def summary(
    corr: pl.DataFrame,
    acc: pl.DataFrame,
    offline: pl.DataFrame,
    online: pl.DataFrame,
    sv: pl.DataFrame,
    floor: pl.DataFrame | None = None,
    failures: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per model, format and device: correctness, served metrics against the source, the
    served stages that failed, best offline and online throughputs, served/native, online
    served/floor."""
    keys = (
        pl.concat([d.select(ID) for d in (acc, offline, online, sv)])
        .drop_nulls(["model", "format"])
        .unique()
    )
    verdict = corr.select(
        "model",
        "format",
        pl.when(pl.col("passed"))
        .then(pl.lit("passed"))
        .otherwise(pl.concat_str(pl.lit("FAILED — not served: "), pl.col("reason").fill_null("")))
        .alias("correctness"),
        # The format's build cost (export, compile) beside its throughput; None: not recorded.
        *([pl.col("build s")] if "build s" in corr.columns else []),
    )
    # Formats that failed correctness have no measurements and thus no device: they keep one row, device empty.
    rows = verdict.join(keys, on=["model", "format"], how="full", coalesce=True)

    metric_text: dict[tuple[str, str, str], list[str]] = {
        (r["model"], r["format"], r["device"]): []
        for r in acc.select(ID).unique().iter_rows(named=True)
    }
    for r in acc.sort(*ID, "metric").iter_rows(named=True):
        metric_text[(r["model"], r["format"], r["device"])].append(
            f"{r['metric']}: {fmt(r['served'])} (source {fmt(r['source'])}, Δ {fmt(r['served_minus_source'])})"
        )
    served_metric = pl.DataFrame(
        [
            {"model": k[0], "format": k[1], "device": k[2], "served vs source": "; ".join(v)}
            for k, v in metric_text.items()
        ],
        schema={
            "model": pl.String,
            "format": pl.String,
            "device": pl.String,
            "served vs source": pl.String,
        },
    )
    # The largest batch measured both ways, at its best offline concurrency; a ratio above 1 (or
    # beside a disturbed or suspect baseline) is never a result: its status reads instead.
    common = (
        sv.filter(pl.col("served status") == Status.OK)
        .drop_nulls(["served infer/s", "native infer/s"])
        .sort("batch", "served infer/s", descending=True)
        .group_by(ID, maintain_order=True)
        .first()
        .select(
            *ID,
            pl.when(pl.col("ratio status") == Status.OK)
            .then(pl.col("served/native").map_elements(fmt, return_dtype=pl.String))
            .otherwise(pl.col("ratio status"))
            .alias("served/native"),
            pl.col("served/native 95 %"),
            pl.col("batch").alias("at batch"),
            pl.col("concurrency").alias("at concurrency"),
        )
    )
    served_failed = (
        (failures if failures is not None else served_failures({}))
        .group_by(ID, maintain_order=True)
        .agg(
            pl.concat_str(
                pl.col("stage"),
                pl.when(pl.col("where") != "")
                .then(pl.concat_str(pl.lit(" ("), pl.col("where"), pl.lit(")")))
                .otherwise(pl.lit("")),
                pl.lit(": "),
                pl.col("reason"),
            )
            .str.join("; ")
            .alias("served stages failed")
        )
    )
    best_online = best_by(online, "concurrency", "online")
    parts = [served_metric, served_failed, best_by(offline, "batch", "offline"), best_online]
    best_online_spread = best_by(online, "concurrency", "online", *spread_of(online, "_served"))
    parts.append(common)
    if floor is not None and floor.height:
        # The best online point over the floor at its concurrency: near 1, the serving path limits.
        at_best = best_online_spread.join(
            floor.filter(pl.col("status") == Status.OK).select(
                *ID,
                pl.col("concurrency").alias("online concurrency"),
                pl.col(Header.THROUGHPUT).alias("floor"),
                *spread_of(floor, "_floor"),
            ),
            on=[*ID, "online concurrency"],
            how="inner",
            nulls_equal=True,
        )
        parts.append(
            at_best.select(
                *ID,
                (pl.col("best online infer/s") / pl.col("floor")).alias("online served/floor"),
                ratio_interval("best online infer/s", "_served", "floor", "_floor").alias(
                    "online served/floor 95 %"
                ),
            )
        )
    for part in parts:
        rows = rows.join(part, on=ID, how="left", nulls_equal=True)
    return rows.select(*ID, pl.exclude(ID)).sort(*ID, nulls_last=True)


def served_failures(frames: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """The failure records of the served stages, one row per (model, format, device, stage, where,
    reason): from accuracy/perf/native frames, the rows with status "failed" (a whole stage's
    record, or one perf point: `where` names its batch and concurrency)."""
    schema = {
        "model": pl.String,
        "format": pl.String,
        "device": pl.String,
        "stage": pl.String,
        "where": pl.String,
        "reason": pl.String,
        "log_excerpt": pl.String,
    }
    rows: list[dict[str, Any]] = []
    for name, frame in frames.items():
        if "status" not in frame.columns or not frame.height:
            continue
        for r in frame.filter(pl.col("status") == Status.FAILED).iter_rows(named=True):
            point = (
                f"batch {int(r['batch'])}, concurrency {int(r['concurrency'])}"
                if r.get("batch") is not None and r.get("concurrency") is not None
                else ""
            )
            rows.append(
                {
                    "model": r["model"],
                    "format": r["format"],
                    "device": r["device"],
                    "stage": str(r.get("stage") or name),
                    "where": point,
                    "reason": str(r.get("reason") or MISSING),
                    "log_excerpt": str(r.get("log_excerpt") or ""),
                }
            )
    return pl.DataFrame(rows, schema=schema).unique(maintain_order=True).sort(*ID, "stage")


def failed_keys(failures: pl.DataFrame) -> set[tuple[str, str, str]]:
    """(model, format, device) of every format with a failure in a served stage: never the best."""
    return {(r[0], r[1], r[2]) for r in failures.select(ID).iter_rows()}


def without_failure_records(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """The measurement rows only: a whole stage's failure record (status "failed" with no `key`,
    e.g. no batch) is listed with the failures, not as an empty measurement."""
    if "status" not in frame.columns or key not in frame.columns:
        return frame
    return frame.filter(~((pl.col("status") == Status.FAILED) & pl.col(key).is_null()))


def no_format_left(
    corr_fmt: pl.DataFrame, failures: pl.DataFrame, models: list[str], devices: list[str]
) -> set[tuple[str, str]]:
    """(model, device) where no format got through: none passed correctness, or every one that did
    failed a served stage on that device."""
    passed = {
        (r[0], r[1])
        for r in corr_fmt.filter(pl.col("passed")).select("model", "format").iter_rows()
    }
    failed = failed_keys(failures)
    return {
        (m, d)
        for m in models
        for d in devices
        if not any((m, f, d) not in failed for model, f in passed if model == m)
    }


def provenance(frames: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """What produced each result: model, format, device, stage and the PROVENANCE columns."""
    parts = [
        frame.select(["model", "format", "device", *PROVENANCE])
        .unique()
        .with_columns(pl.lit(stage).alias("stage"))
        for stage, frame in frames.items()
        if frame.height and all(c in frame.columns for c in PROVENANCE)
    ]
    if not parts:
        return pl.DataFrame()
    return (
        pl.concat(parts, how="diagonal_relaxed")
        .select(["model", "format", "device", "stage", *PROVENANCE])
        .sort(["model", "format", "device", "stage"])
    )


def hardware(envs: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """One row per device, as its own node described itself, with the GPU kind's datasheet peaks."""
    from ..devices import hardware_row

    rows = [hardware_row(str(env.get("device", "cpu")), env.get("hardware") or {}) for env in envs]
    return (
        pl.DataFrame([{k: fmt_any(v) for k, v in r.items()} for r in rows])
        if rows
        else pl.DataFrame()
    )


def packages(env: Mapping[str, Any]) -> pl.DataFrame:
    """The package versions one environment description lists, sorted by name."""
    found = env.get("packages") or {}
    return pl.DataFrame(
        {"package": [str(k) for k in found], "version": [fmt(v) for v in found.values()]},
        schema={"package": pl.String, "version": pl.String},
    ).sort("package")


def key_values(pairs: Sequence[tuple[str, Any]]) -> pl.DataFrame:
    """(item, value) pairs as a two-column frame of text."""
    return pl.DataFrame({"item": [k for k, _ in pairs], "value": [fmt_any(v) for _, v in pairs]})


def model_outline(
    model: str, corr_fmt: pl.DataFrame, offline: pl.DataFrame, online: pl.DataFrame
) -> str:
    """One line on a model's (closed) section: formats checked and passed, best throughputs."""
    mine = corr_fmt.filter(pl.col("model") == model)
    passed = mine.filter(pl.col("passed")).height
    text = f"{mine.height} format(s) checked, {passed} passed"
    for mode, frame in (("offline", offline), ("online", online)):
        ok = frame.filter((pl.col("model") == model) & (pl.col("status") == Status.OK))
        ok = ok.drop_nulls(Header.THROUGHPUT).sort(Header.THROUGHPUT, descending=True)
        if ok.height:
            top = ok.row(0, named=True)
            where = f"{top['format']} on {top['device']}"
            text += f"; best {mode}: {where}, {fmt(top[Header.THROUGHPUT])} infer/s"
    return text


def capacity_failures(loaded: list[Searched]) -> pl.DataFrame:
    """The searches that failed (status "failed"), as failure records for served_failures:
    model, format, device, status, stage, reason, log_excerpt."""
    columns = ["model", "format", "device", "status", "stage", "reason", "log_excerpt"]
    return pl.DataFrame(
        [
            {c: str(r.get(c) or "") for c in columns}
            for r, _ in loaded
            if r["status"] == Status.FAILED
        ],
        schema=dict.fromkeys(columns, pl.String),
    )


def capacity_figures(loaded: list[Searched], per_hour: Mapping[str, float]) -> pl.DataFrame:
    """One row per (model, format, device): capacity (requests/s; null when no rate meets the
    budget), its p99 (µs), the budget (ms) and the cost of a million inferences (null without a
    price for the device)."""
    rows = [
        {
            "model": r["model"],
            "format": r["format"],
            "device": r["device"],
            CAPACITY: r["capacity_rps"],
            "capacity p99 µs": r["p99_us"],
            "capacity budget ms": float(r["p99_budget_ms"]),
            COST: cost_per_million(r["capacity_infer_per_s"], dict(per_hour), r["device"]),
            "capacity": describe(r),
        }
        for r, _ in loaded
    ]
    return pl.DataFrame(
        rows,
        schema={
            "model": pl.String,
            "format": pl.String,
            "device": pl.String,
            CAPACITY: pl.Int64,
            "capacity p99 µs": pl.Float64,
            "capacity budget ms": pl.Float64,
            COST: pl.Float64,
            "capacity": pl.String,
        },
    )
