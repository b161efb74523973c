import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the package, also under --sdm conda
from deploysnake import deploy, job


def main(sm):
    deploy.write_deploy(
        sm.params.entries,
        sm.params.triton,
        sm.wildcards.device,
        sm.output.repository,
        sm.output.archive,
    )


job.run(snakemake, main)
