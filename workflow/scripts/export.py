from deploysnake import export, job
from deploysnake.sources.description import load_settings


def main(sm):
    settings = sm.params.settings
    recipe = load_settings(settings)
    export.export(
        recipe,
        settings["params"],
        sm.input.checkpoint,
        sm.params.fmt,
        sm.output.artifact,
        sm.output.io,
        sm.params.options,
        framework=settings["framework"],
        savedmodel=sm.input.get("savedmodel"),
    )


job.run(snakemake, main)
