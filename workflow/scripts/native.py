import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the package, also under --sdm conda
from deploysnake import job, native, provenance


def main(sm):
    w, settings = sm.wildcards, sm.params.native
    native.measure(
        w.model, w.format, w.device, sm.input.artifact, sm.input.io, sm.params.batch_sizes, sm.params.threads,
        settings["window_s"], settings["max_iterations"], sm.output[0], provenance.of_job(sm),
    )


job.run(snakemake, main)
