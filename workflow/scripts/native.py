from deploysnake import failures, job, provenance
from deploysnake.contracts import ServedSettings
from deploysnake.measuring import native


def main(sm):
    w, settings = sm.wildcards, sm.params.native
    # As served: the instances, runtime threads and knobs the repository job resolved (a tuned
    # format's chosen configuration's).
    served = ServedSettings.read(sm.input.served_settings)
    # In a child process: a runtime that crashes (SIGSEGV) or hangs is this format's failure record.
    native.measure_isolated(
        model=w.model,
        fmt=w.format,
        device=w.device,
        artifact=sm.input.artifact,
        io_json=sm.input.io,
        batch_sizes=sm.params.batch_sizes,
        threads=served.runtime_threads,
        window_s=settings["window_s"],
        max_iterations=settings["max_iterations"],
        output=sm.output[0],
        provenance=provenance.of_job(sm),
        instances=served.instances,
        served=[sm.input.served],
        spread=sm.params.sanity["spread"],
        max_foreign_cpu=sm.params.sanity["max_foreign_cpu"],
        max_batch_size=0 if served.max_batch_size == 0 else 1,  # 0: whole samples
        input_data=sm.input.data,
        perf_input=sm.params.perf_input,  # perf.input_data: the samples, or random of their shapes
        sizing=sm.params.sizing,  # perf.sizing: probe lengthens a slow model's windows
        runtime_options=served.runtime_options,
    )


def failed(sm, failure):
    w = sm.wildcards
    keys = {"model": w.model, "format": w.format, "device": w.device}
    failures.write_failure_csv(sm.output[0], keys, "native", failure)


job.run(snakemake, main, failed)
