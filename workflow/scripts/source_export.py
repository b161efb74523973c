from deploysnake import export, job


def main(sm):
    export.export_from_source(
        sm.wildcards.model,
        sm.params.settings,
        sm.input.checkpoint,
        sm.params.fmt,
        sm.output.artifact,
        sm.output.io,
        sm.params.options,
    )


job.run(snakemake, main)
