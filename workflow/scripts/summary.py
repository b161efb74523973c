import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the package, also under --sdm conda
from pathlib import Path

from deploysnake import job, summary

# The per-model inputs arrive as one list; each result sits under results/<stage>/.
STAGES = {
    "accuracy": "accuracy",
    "perf_offline": "offline",
    "perf_online": "online",
    "tuning": "tuning",
    "capacity": "capacity",
}


def main(sm):
    paths = {key: [] for key in STAGES.values()}
    for path in map(Path, sm.input):
        if len(path.parts) > 2 and path.parts[0] == "results" and path.parts[1] in STAGES:
            paths[STAGES[path.parts[1]]].append(path)
    doc = summary.build(
        sm.params.config,
        correctness=[Path(p) for p in sm.input.correctness],
        environment=[Path(p) for p in sm.input.environment],
        **paths,
    )
    summary.write(doc, sm.output[0])


job.run(snakemake, main)
