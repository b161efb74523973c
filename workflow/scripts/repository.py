import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the package, also under --sdm conda
from deploysnake import job, repository


def main(sm):
    w = sm.wildcards
    repository.write_repository(w.model, sm.input.artifact, sm.input.io, sm.params.triton, w.device, sm.params.flavour, sm.output[0])


job.run(snakemake, main)
