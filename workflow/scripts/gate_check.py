import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the package, also under --sdm conda
from deploysnake import gate, job


def main(sm):
    gate.check(sm.input.gate, sm.input.report, sm.output[0])


job.run(snakemake, main)
