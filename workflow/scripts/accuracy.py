import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the package, also under --sdm conda
from deploysnake import accuracy, job, provenance, server
from deploysnake.plugins import load_settings
from deploysnake.repository import triton_model_name


def main(sm):
    w, settings, triton = sm.wildcards, sm.params.settings, sm.params.server
    recipe = load_settings(settings)
    with server.from_settings(sm.input.repository, triton, sm.log.server) as running:
        accuracy.evaluate(
            recipe,
            settings["params"],
            sm.input.checkpoint,
            running,
            w.model,
            w.format,
            w.device,
            triton_model_name(w.model, w.format),
            sm.input.artifact,
            sm.input.io,
            sm.params.batch_size,
            sm.output.dump,
            sm.output.csv,
            settings["framework"],
            provenance.of_job(sm),
            tolerances=sm.params.tolerances,
        )


def failed(sm, failure):
    accuracy.write_failure(sm.wildcards, failure, sm.output.csv, sm.output.dump)


job.run(snakemake, main, failed)
