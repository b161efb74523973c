from pathlib import Path

from deploysnake import environment, job


def main(sm):
    environment.describe(Path(sm.scriptdir).resolve().parents[1], sm.output[0], sm.wildcards.device)


job.run(snakemake, main)
