from deploysnake import failures, job, provenance, server, tools, underload
from deploysnake.contracts import ServedSettings
from deploysnake.measuring import floor, perf


def main(sm):
    w, triton, settings = sm.wildcards, sm.params.server, sm.params.perf
    executable = tools.perf_analyzer(settings["perf_analyzer"])
    served = ServedSettings.read(sm.input.served_settings)
    name, instances, max_batch_size = served.model_name, served.instances, served.max_batch_size
    expected = underload.prepare(
        sm.input.artifact,
        w.format,
        sm.input.io,
        sm.input.data,
        max_batch_size,
        sm.params.tolerance,
        int(settings["check_requests"]),
    )
    with server.from_settings(sm.input.repository, triton, sm.log.server) as running:
        perf.measure(
            executable,
            running,
            w.model,
            w.format,
            w.device,
            name,
            sm.input.io,
            settings,
            sm.params.mode,
            sm.output[0],
            provenance.of_job(sm),
            sm.input.data,
            instances,
            max_batch_size,
            expected,
        )
    if sm.params.mode == "online":  # beside the sweep, the same sweep of the serving floor
        floor.measure_floor(
            executable,
            f"{sm.input.repository}/{name}",
            sm.input.io,
            triton,
            settings,
            w.model,
            w.format,
            w.device,
            sm.output.floor,
            sm.log.floor_server,
            provenance.of_job(sm),
            sm.input.data,
        )


def failed(sm, failure):
    w = sm.wildcards
    keys = {"model": w.model, "format": w.format, "device": w.device, "mode": sm.params.mode}
    failures.write_failure_csv(sm.output[0], keys, f"perf_{sm.params.mode}", failure, perf.COLUMNS)
    if sm.params.mode == "online":  # the floor is not measured for a format that failed
        failures.write_failure_csv(
            sm.output.floor, keys, f"perf_{sm.params.mode}", failure, perf.COLUMNS
        )


job.run(snakemake, main, failed)
