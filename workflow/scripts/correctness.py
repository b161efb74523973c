from deploysnake import correctness, job
from deploysnake.sources.description import load_settings


def main(sm):
    settings = sm.params.settings
    recipe = load_settings(settings)
    fmt = sm.wildcards.format
    correctness.check(
        recipe,
        settings["params"],
        sm.input.checkpoint,
        sm.wildcards.model,
        fmt,
        sm.input.artifact,
        sm.input.io,
        sm.params.tolerances,
        sm.output[0],
        settings["framework"],
        model_settings=settings,
    )


job.run(snakemake, main)
