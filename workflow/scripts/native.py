import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the package, also under --sdm conda
import json
from pathlib import Path

from deploysnake import job, native, provenance


def main(sm):
    w, settings = sm.wildcards, sm.params.native
    # Same threads as one served instance: the tuned configuration's, where the format was tuned
    # (read here, not through deploysnake.tuning, which this runtime-only environment need not import).
    threads = json.loads(Path(sm.input.tuned[0]).read_text())["triton"]["runtime_threads"] if sm.input.tuned else sm.params.threads
    native.measure(
        w.model, w.format, w.device, sm.input.artifact, sm.input.io, sm.params.batch_sizes, threads,
        settings["window_s"], settings["max_iterations"], sm.output[0], provenance.of_job(sm),
    )


job.run(snakemake, main)
