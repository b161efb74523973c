import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the package, also under --sdm conda
from pathlib import Path

from deploysnake import job, report


def main(sm):
    paths = {
        key: [Path(p) for p in sm.input[key]]
        for key in ("correctness", "accuracy", "offline", "online", "native")
    }
    report.build_report(
        sm.params.config,
        environment=[Path(p) for p in sm.input.environment],
        output=Path(sm.output[0]),
        skipped=sm.params.skipped,
        p99_budget_ms=sm.params.p99_budget_ms,
        deploy=[Path(p) for p in sm.input.deploy],
        tuning=[Path(p) for p in sm.input.tuning],
        capacity=[Path(p) for p in sm.input.capacity],
        **paths,
    )


job.run(snakemake, main)
