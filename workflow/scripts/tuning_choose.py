import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the package, also under --sdm conda
from deploysnake import job, tuning


def main(sm):
    tuning.choose(sm.params.settings, sm.params.triton, sm.wildcards.model, sm.wildcards.device, list(sm.input.plans), list(sm.input.trials), sm.output.chosen, sm.output.trials, sm.input.io)


job.run(snakemake, main)
