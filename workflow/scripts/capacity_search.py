from deploysnake import job, provenance, server, tools, underload
from deploysnake.contracts import ServedSettings, Target
from deploysnake.measuring import open_loop


def main(sm):
    w, p = sm.wildcards, sm.params
    executable = tools.perf_analyzer(p.perf["perf_analyzer"])
    served = ServedSettings.read(sm.input.served_settings)
    expected = underload.prepare(
        sm.input.artifact,
        w.format,
        sm.input.io,
        sm.input.data,
        served.max_batch_size,
        p.tolerance,
        int(p.perf["check_requests"]),
    )
    with server.from_settings(sm.input.repository, p.server, sm.log.server) as running:
        open_loop.measure(
            executable,
            running,
            Target.of(w),
            served,
            sm.input.io,
            sm.input.repository,
            p.capacity,
            p.perf,
            sm.output.csv,
            sm.output.json,
            sm.input.data,
            provenance.of_job(sm),
            expected,
        )


def failed(sm, failure):
    open_loop.write_failure(
        failure, Target.of(sm.wildcards), sm.params.capacity, sm.output.csv, sm.output.json
    )


job.run(snakemake, main, failed)
