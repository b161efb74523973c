from pathlib import Path

from deploysnake import job, summary

# The per-model inputs arrive as one list; each result sits under results/<stage>/.
STAGES = {
    "accuracy": "accuracy",
    "perf_offline": "offline",
    "perf_online": "online",
    "tuning": "tuning",
    "capacity": "capacity",
    "native": "native",
}


def main(sm):
    paths = job.results_by_stage(sm.input, STAGES)
    doc = summary.build(
        sm.params.config,
        correctness=[Path(p) for p in sm.input.correctness],
        environment=[Path(p) for p in sm.input.environment],
        **paths,
    )
    summary.write(doc, sm.output[0])


job.run(snakemake, main)
