from deploysnake import export, job
from deploysnake.frameworks import ModelSource


def main(sm):
    export.export(
        ModelSource.of(sm.params.settings, sm.input.checkpoint),
        sm.params.fmt,
        sm.output.artifact,
        sm.output.io,
        sm.params.options,
        savedmodel=sm.input.get("savedmodel"),
    )


job.run(snakemake, main)
