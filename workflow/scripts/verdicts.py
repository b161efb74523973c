import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the package, also under --sdm conda
from deploysnake import correctness, job


def main(sm):
    correctness.collect(sm.input.verdicts, sm.output[0])


job.run(snakemake, main)
