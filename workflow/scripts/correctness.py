from deploysnake import correctness, job
from deploysnake.frameworks import ModelSource


def main(sm):
    correctness.check(
        ModelSource.of(sm.params.settings, sm.input.checkpoint),
        sm.wildcards.model,
        sm.wildcards.format,
        sm.input.artifact,
        sm.input.io,
        sm.params.tolerances,
        sm.output[0],
    )


job.run(snakemake, main)
