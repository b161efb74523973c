import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the package, also under --sdm conda
from pathlib import Path

from deploysnake import environment, job


def main(sm):
    environment.describe(Path(sm.scriptdir).resolve().parents[1], sm.output[0], sm.wildcards.device)


job.run(snakemake, main)
