import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the package, also under --sdm conda
from deploysnake import job, sources


def main(sm):
    sources.write_description(sm.wildcards.model, sm.params.settings, sm.output[0])


job.run(snakemake, main)
