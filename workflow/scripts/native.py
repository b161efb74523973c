import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the package, also under --sdm conda
import json
from pathlib import Path

from deploysnake import job, native, provenance
from deploysnake.devices import instance_count


def main(sm):
    w, settings = sm.wildcards, sm.params.native
    # The served configuration's instances and runtime threads: the tuned one's, where the format was
    # tuned (read here, not through deploysnake.tuning, which this runtime-only environment need not import).
    triton = (
        json.loads(Path(sm.input.tuned[0]).read_text())["triton"]
        if sm.input.tuned
        else sm.params.triton
    )
    native.measure(
        w.model,
        w.format,
        w.device,
        sm.input.artifact,
        sm.input.io,
        sm.params.batch_sizes,
        triton["runtime_threads"],
        settings["window_s"],
        settings["max_iterations"],
        sm.output[0],
        provenance.of_job(sm),
        instance_count(triton, w.device),
        [sm.input.served],
        sm.params.sanity["spread"],
        sm.params.sanity["max_foreign_cpu"],
        0 if sm.params.unbatched else 1,  # max_batch_size 0: whole samples
        sm.input.data,
    )


job.run(snakemake, main)
