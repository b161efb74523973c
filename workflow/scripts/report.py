from pathlib import Path

from deploysnake import job, report

# The per-model inputs arrive as one list; each result sits under results/<stage>/.
STAGES = {
    "accuracy": "accuracy",
    "perf_offline": "offline",
    "perf_online": "online",
    "native": "native",
    "tuning": "tuning",
    "capacity": "capacity",
}


def main(sm):
    paths = job.results_by_stage(sm.input, STAGES)
    # perf_online/ holds the online sweeps and, beside each, the serving floor's (.floor.csv)
    online = paths.pop("online")
    report.build_report(
        sm.params.config,
        online=[p for p in online if not p.name.endswith(".floor.csv")],
        floor=[p for p in online if p.name.endswith(".floor.csv")],
        environment=[Path(p) for p in sm.input.environment],
        output=Path(sm.output[0]),
        skipped=sm.params.skipped,
        p99_budget_ms=sm.params.p99_budget_ms,
        correctness=[Path(p) for p in sm.input.correctness],
        deploy=[Path(p) for p in sm.input.deploy],
        summary_json=Path(sm.input.summary),
        gate_json=Path(sm.input.gate),
        **paths,
    )


job.run(snakemake, main)
