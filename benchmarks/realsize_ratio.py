"""Served / in-process throughput of a compute-bound model beside the digits CNN (issue 29, item 5).

    python benchmarks/realsize_ratio.py [--workdir DIR] [--batch-sizes 1 16 64 256] [--single-file]

Builds the ResNet-18-shaped CNN of tests/realsize/make_models.py (11.7 M parameters, random seeded
weights, exported with torch's default torch.onnx.export), runs the workflow on it and on the default
digits recipe (ONNX, CPU, offline sweep at --batch-sizes, the native baseline at the same batch
sizes and the same samples), and prints, per model, served / native at its best offline batch (the
batch of the highest `ok` served throughput) with both figures and their statuses. For a model that
computes milliseconds per batch the serving path's overhead should all but vanish (goal >= 0.95;
anchor: fastDeploy's published 0.85 for a BiLSTM tagger at batch 32). The last line is
machine-readable:

    bench: resnet_ratio=R resnet_batch=B digits_ratio=D digits_batch=E resnet_ratio_lo=L
    resnet_ratio_hi=H digits_ratio_lo=L digits_ratio_hi=H

with each ratio's 95 % interval (deploysnake.spread.ratio) from the served point's perf_analyzer
windows and the in-process run's sub-windows (nan where neither has a spread).

Figures from a machine where other work runs are not results: the perf and native rows say
`disturbed` where foreign load was seen, and a ratio from such rows is printed as such.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from deploysnake.contracts import Header, Status
from deploysnake.spread import Ratio, at_figure, describe_ratio, of_columns, ratio

ROOT = Path(__file__).resolve().parents[1]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def interval(served: dict[str, str], native: dict[str, str]) -> Ratio | None:
    """served / native infer/s with its 95 % interval (deploysnake.spread.ratio: delta method on
    the log ratio, Welch-Satterthwaite degrees of freedom) from each row's infer_s_n and
    infer_s_cv (perf's windows or runs, the native run's sub-windows; a row without them counts as
    one exact reading). None where a figure is missing."""
    try:
        num, den = float(served[Header.THROUGHPUT]), float(native["throughput_infer_per_s"])
    except (KeyError, TypeError, ValueError):
        return None
    if num <= 0 or den <= 0:
        return None
    return ratio(at_figure(num, of_columns(served)), at_figure(den, of_columns(native)))


def best_ratio(workdir: Path, model: str) -> dict[str, Any]:
    """Served / native at the batch of the best `ok` offline served throughput (any concurrency)."""
    served = [
        r
        for r in rows(workdir / f"results/perf_offline/{model}/onnx/cpu.csv")
        if r["status"] == Status.OK and r.get(Header.THROUGHPUT)
    ]
    native = {int(r["batch"]): r for r in rows(workdir / f"results/native/{model}/onnx/cpu.csv")}
    if not served:
        return {"model": model, "ratio": float("nan"), "batch": 0, "note": "no ok served point"}
    best = max(served, key=lambda r: float(r[Header.THROUGHPUT]))
    batch = int(best["batch"])
    base = native.get(batch, {})
    value = float(best[Header.THROUGHPUT]) / float(base.get("throughput_infer_per_s") or "nan")
    r = interval(best, base)
    return {
        "model": model,
        "batch": batch,
        "served": float(best[Header.THROUGHPUT]),
        "native": float(base.get("throughput_infer_per_s") or "nan"),
        "ratio": value,
        # the 95 % interval: served windows (or runs) against the in-process sub-windows
        "low": r.low if r is not None and r.df is not None else float("nan"),
        "high": r.high if r is not None and r.df is not None else float("nan"),
        "interval": describe_ratio(r, 3, "windows") if r is not None else "no interval",
        "native_status": base.get("status", "missing"),
        "input_shapes": best.get("input_shapes"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--single-file", action="store_true", help="weights inside model.onnx (no external data)"
    )
    opts = parser.parse_args()
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="deploysnake-realsize-"))
    workdir.mkdir(parents=True, exist_ok=True)
    given = workdir / "given"
    if not (given / "resnet" / "model.onnx").is_file():
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "tests" / "realsize" / "make_models.py"),
                str(given),
                *(["--single-file"] if opts.single_file else []),
            ],
            check=True,
        )
    config = {
        "models": {
            "resnet": {
                "onnx": str(given / "resnet" / "model.onnx"),
                "dataloader": str(given / "resnet" / "dataloader.py"),
            },
            "digits": {"recipe": str(ROOT / "recipes" / "digits")},
        },
        "formats": ["onnx"],
        "devices": ["cpu"],
        "triton": {"max_batch_size": max(opts.batch_sizes)},
        # the accuracy job's batches fit the served model's largest batch (the config refuses more)
        "accuracy": {"batch_size": min(64, max(opts.batch_sizes))},
        "perf": {
            "input_samples": 16,
            "offline": {"batch_sizes": opts.batch_sizes, "concurrency": [1, 2]},
        },
    }
    (workdir / "bench.yaml").write_text(yaml.safe_dump(config))
    targets = [
        f"results/{stage}/{m}/onnx/cpu.csv" for m in ("resnet", "digits") for stage in ("native",)
    ]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(ROOT / "Snakefile"),
            *targets,
            "--cores",
            str(opts.cores),
            "--configfile",
            "bench.yaml",
        ],
        cwd=workdir,
        check=True,
    )
    results = [best_ratio(workdir, m) for m in ("resnet", "digits")]
    for r in results:
        print(
            f"{r['model']}: served/native {r['ratio']:.3f} ({r.get('interval', 'no interval')}) "
            f"at batch {r['batch']} "
            f"({r.get('served', float('nan')):.0f} / {r.get('native', float('nan')):.0f} infer/s, "
            f"native {r.get('native_status', '-')}, shapes {r.get('input_shapes')}) "
            f"{r.get('note', '')}".rstrip()
        )
    resnet, digits = results
    print(bench_line(resnet, digits))


def bench_line(resnet: dict[str, Any], digits: dict[str, Any]) -> str:
    """The machine-readable last line, each ratio with its interval's ends (_lo, _hi; nan: none)."""
    return (
        f"bench: resnet_ratio={resnet['ratio']:.3f} resnet_batch={resnet['batch']} "
        f"digits_ratio={digits['ratio']:.3f} digits_batch={digits['batch']} "
        f"resnet_ratio_lo={resnet.get('low', float('nan')):.3f} "
        f"resnet_ratio_hi={resnet.get('high', float('nan')):.3f} "
        f"digits_ratio_lo={digits.get('low', float('nan')):.3f} "
        f"digits_ratio_hi={digits.get('high', float('nan')):.3f}"
    )


if __name__ == "__main__":
    main()
