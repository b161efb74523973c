import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the package, also under --sdm conda
from deploysnake import checkpoint, job
from deploysnake.sources import load_settings


def main(sm):
    settings = sm.params.settings
    recipe = load_settings(settings)
    checkpoint.make_checkpoint(
        recipe, settings["params"], settings["checkpoint"], sm.output[0], settings["framework"]
    )


job.run(snakemake, main)
