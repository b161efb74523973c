"""Benchmark of issue #7 on the default model (digits, ONNX, CPU): served vs native throughput, the
brute-force, hill-climbing and coordinate searches, and the tuned against the untuned configuration.

    make bench            (or: python benchmarks/tuning_bench.py [--workdir DIR] [--interval-ms N])

Everything is measured in one run, on this machine, by the workflow itself: one brute-force search of
the whole tuning space, then the hill-climbing and the coordinate (default) searches over the same
trial results (a trial is a cached job, so the strategies read the same measurement of each
configuration and differ only in which ones they ask for). The last line is machine-readable; its
search figures are the coordinate search's:

    bench: offline_ratio=R1 online_ratio=R2 search_quality=Q search_cost=C tuned_over_naive=T
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TUNED = Path("results/tuning/digits/onnx/cpu")


def snakemake(workdir: Path, config: dict, *targets: str) -> float:
    (workdir / "bench.yaml").write_text(yaml.safe_dump(config))
    exe = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    started = time.monotonic()
    with open(workdir / "snakemake.out", "a") as out:
        subprocess.run([exe, *targets, "--snakefile", str(ROOT / "Snakefile"), "--cores", "2", "--configfile", "bench.yaml"], cwd=workdir, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=7200)
    return time.monotonic() - started


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def throughput(path: Path, column: str, **where: int) -> float | None:
    for row in rows(path):
        if all(int(row[k]) == v for k, v in where.items()) and row.get(column):
            return float(row[column])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep results here (default: a temporary folder)")
    parser.add_argument("--interval-ms", type=int, default=500, help="perf_analyzer measurement window")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="deploysnake-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["models"]["digits"]["recipe"] = str(ROOT / "recipes" / "digits")
    config["formats"] = ["onnx"]
    config["perf"].update(measurement_interval_ms=args.interval_ms, offline={"batch_sizes": [1, 256], "concurrency": [1, 2], "shared_memory": "system"}, online={"batch_size": 1, "concurrency": [16]})
    config["tuning"].update(formats=["onnx"], strategy="brute_force", mode="online", concurrency=16)

    seconds = snakemake(workdir, config, str(TUNED / "chosen.json"))
    brute = json.loads((workdir / TUNED / "chosen.json").read_text())
    print(f"brute force: {brute['measurements']} measurements in {seconds:.0f} s; best {brute['trial']}: {brute['throughput']} infer/s, p99 {brute['p99_us']} us", flush=True)

    # The other strategies plan from the same trial files: they measure nothing new, they choose.
    (workdir / TUNED / "chosen.json").rename(workdir / "brute_chosen.json")
    config["tuning"]["strategy"] = "hill_climb"
    snakemake(workdir, config, str(TUNED / "chosen.json"))
    climb = json.loads((workdir / TUNED / "chosen.json").read_text())
    print(f"hill climbing: {climb['measurements']} measurements; best {climb['trial']}: {climb['throughput']} infer/s, p99 {climb['p99_us']} us", flush=True)
    (workdir / TUNED / "chosen.json").rename(workdir / "hill_climb_chosen.json")
    config["tuning"]["strategy"] = "coordinate"  # the default: the bench line reports it
    snakemake(workdir, config, "results/report.html")
    smart = json.loads((workdir / TUNED / "chosen.json").read_text())
    print(f"coordinate: {smart['measurements']} measurements; best {smart['trial']}: {smart['throughput']} infer/s, p99 {smart['p99_us']} us", flush=True)
    if smart["naive_throughput"] is None:  # no stable number even with the longer second measurement
        print(f"untuned ({smart['naive']}): unstable, no number (tuned_over_naive below is 0)", flush=True)
    else:
        print(f"untuned ({smart['naive']}): {smart['naive_throughput']} infer/s", flush=True)

    native = workdir / "results/native/digits/onnx/cpu.csv"
    offline = workdir / "results/perf_offline/digits/onnx/cpu.csv"
    online = workdir / "results/perf_online/digits/onnx/cpu.csv"
    n256, n1 = throughput(native, "throughput_infer_per_s", batch=256), throughput(native, "throughput_infer_per_s", batch=1)
    s256c1 = throughput(offline, "Inferences/Second", batch=256, concurrency=1)
    s256c2 = throughput(offline, "Inferences/Second", batch=256, concurrency=2)
    s16 = throughput(online, "Inferences/Second", concurrency=16)
    print(
        f"native b256 {n256} infer/s, served offline b256 {s256c1} (one request at a time), {s256c2} (two in flight); "
        f"native b1 {n1} infer/s, served online b1 c16 {s16} (tuned configuration)", flush=True,
    )  # fmt: skip
    # The offline ratio is the server's batch capacity: two requests in flight, so a request's transfer
    # overlaps the previous one's compute, as any batch client does (one at a time: the line above).
    s256 = max(s256c1 or 0.0, s256c2 or 0.0)

    def ratio(a: float | None, b: float | None) -> float:
        return (a / b) if a and b else 0.0

    print(f"results in {workdir}")
    print(
        f"bench: offline_ratio={ratio(s256, n256):.3f} online_ratio={ratio(s16, n1):.3f} "
        f"search_quality={ratio(smart['throughput'], brute['throughput']):.3f} search_cost={ratio(smart['measurements'], brute['measurements']):.3f} "
        f"tuned_over_naive={ratio(smart['throughput'], smart['naive_throughput']):.3f}"
    )


if __name__ == "__main__":
    main()
