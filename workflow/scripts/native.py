from deploysnake import failures, job, provenance
from deploysnake.contracts import ServedSettings, Target
from deploysnake.measuring import native


def main(sm):
    settings = sm.params.native
    # In a child process: a runtime that crashes (SIGSEGV) or hangs is this format's failure record.
    native.measure_isolated(
        target=Target.of(sm.wildcards),
        # As served: the instances, runtime threads and knobs the repository job resolved (a tuned
        # format's chosen configuration's), and its batching (0: whole samples).
        served=ServedSettings.read(sm.input.served_settings),
        artifact=sm.input.artifact,
        io_json=sm.input.io,
        batch_sizes=sm.params.batch_sizes,
        window_s=settings["window_s"],
        max_iterations=settings["max_iterations"],
        output=sm.output[0],
        provenance=provenance.of_job(sm),
        served_csvs=[sm.input.served],
        spread=sm.params.sanity["spread"],
        max_foreign_cpu=sm.params.sanity["max_foreign_cpu"],
        input_data=sm.input.data,
        perf_input=sm.params.perf_input,  # perf.input_data: the samples, or random of their shapes
        sizing=sm.params.sizing,  # perf.sizing: probe lengthens a slow model's windows
    )


def failed(sm, failure):
    columns = Target.of(sm.wildcards).columns()
    failures.write_failure_csv(sm.output[0], columns, "native", failure)


job.run(snakemake, main, failed)
