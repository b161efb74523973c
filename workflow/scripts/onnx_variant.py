from deploysnake import job, onnx_variants
from deploysnake.sources.description import load_settings


def main(sm):
    settings = sm.params.settings
    onnx_variants.convert(
        sm.wildcards.format,
        sm.input.onnx,
        sm.input.io,
        sm.output.artifact,
        sm.output.io,
        load_settings(settings),
        settings["params"],
        sm.params.options,
    )


job.run(snakemake, main)
