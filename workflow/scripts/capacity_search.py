from deploysnake import job, provenance, server, tools, underload
from deploysnake.contracts import ServedSettings
from deploysnake.measuring import open_loop


def main(sm):
    w, p = sm.wildcards, sm.params
    executable = tools.perf_analyzer(p.perf["perf_analyzer"])
    served = ServedSettings.read(sm.input.served_settings)
    name = served.model_name
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
            w.model,
            w.format,
            w.device,
            name,
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
    w = sm.wildcards
    open_loop.write_failure(
        failure, w.model, w.format, w.device, sm.params.capacity, sm.output.csv, sm.output.json
    )


job.run(snakemake, main, failed)
