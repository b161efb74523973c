import json
from pathlib import Path

from deploysnake import failures, job, provenance
from deploysnake.devices import instance_count
from deploysnake.measuring import native

KNOBS = ("inter_op_threads", "execution_mode", "graph_optimization_level")


def main(sm):
    w, settings = sm.wildcards, sm.params.native
    # The served configuration's instances and runtime threads: the tuned one's, where the format was
    # tuned (read here, not through deploysnake.tuning, which this runtime-only environment need not import).
    triton = (
        json.loads(Path(sm.input.tuned[0]).read_text())["triton"]
        if sm.input.tuned
        else sm.params.triton
    )
    # In a child process: a runtime that crashes (SIGSEGV) or hangs is this format's failure record.
    native.measure_isolated(
        model=w.model,
        fmt=w.format,
        device=w.device,
        artifact=sm.input.artifact,
        io_json=sm.input.io,
        batch_sizes=sm.params.batch_sizes,
        threads=triton["runtime_threads"],
        window_s=settings["window_s"],
        max_iterations=settings["max_iterations"],
        output=sm.output[0],
        provenance=provenance.of_job(sm),
        instances=instance_count(triton, w.device),
        served=[sm.input.served],
        spread=sm.params.sanity["spread"],
        max_foreign_cpu=sm.params.sanity["max_foreign_cpu"],
        max_batch_size=0 if sm.params.unbatched else 1,  # max_batch_size 0: whole samples
        input_data=sm.input.data,
        perf_input=sm.params.perf_input,  # perf.input_data: the samples, or random of their shapes
        sizing=sm.params.sizing,  # perf.sizing: probe lengthens a slow model's windows
        # the runtime's other knobs as served (the tuned ones where the format was tuned)
        runtime_options={k: triton[k] for k in KNOBS if k in triton},
    )


def failed(sm, failure):
    w = sm.wildcards
    keys = {"model": w.model, "format": w.format, "device": w.device}
    failures.write_failure_csv(sm.output[0], keys, "native", failure)


job.run(snakemake, main, failed)
