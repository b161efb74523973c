from deploysnake import failures, job, provenance, server, tools, underload
from deploysnake.contracts import ServedSettings, Target
from deploysnake.measuring import floor, perf


def main(sm):
    w, triton, settings = sm.wildcards, sm.params.server, sm.params.perf
    executable = tools.perf_analyzer(settings["perf_analyzer"])
    target, served = Target.of(w), ServedSettings.read(sm.input.served_settings)
    expected = underload.prepare(
        sm.input.artifact,
        w.format,
        sm.input.io,
        sm.input.data,
        served.max_batch_size,
        sm.params.tolerance,
        int(settings["check_requests"]),
    )
    with server.from_settings(sm.input.repository, triton, sm.log.server) as running:
        perf.measure(
            executable,
            running,
            target,
            served,
            sm.input.io,
            settings,
            sm.params.mode,
            sm.output[0],
            provenance.of_job(sm),
            sm.input.data,
            expected,
        )
    if sm.params.mode == "online":  # beside the sweep, the same sweep of the serving floor
        floor.measure_floor(
            executable,
            f"{sm.input.repository}/{served.model_name}",
            sm.input.io,
            triton,
            settings,
            target,
            served,
            sm.output.floor,
            sm.log.floor_server,
            provenance.of_job(sm),
            sm.input.data,
        )


def failed(sm, failure):
    keys = {**Target.of(sm.wildcards).columns(), "mode": sm.params.mode}
    failures.write_failure_csv(sm.output[0], keys, f"perf_{sm.params.mode}", failure, perf.COLUMNS)
    if sm.params.mode == "online":  # the floor is not measured for a format that failed
        failures.write_failure_csv(
            sm.output.floor, keys, f"perf_{sm.params.mode}", failure, perf.COLUMNS
        )


job.run(snakemake, main, failed)
