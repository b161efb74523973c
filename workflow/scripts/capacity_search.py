from deploysnake import capacity, job, provenance, server, tools
from deploysnake.repository import triton_model_name


def main(sm):
    w, p = sm.wildcards, sm.params
    executable = tools.perf_analyzer(p.perf["perf_analyzer"])
    with server.from_settings(sm.input.repository, p.server, sm.log.server) as running:
        capacity.measure(
            executable,
            running,
            w.model,
            w.format,
            w.device,
            triton_model_name(w.model, w.format),
            sm.input.io,
            sm.input.repository,
            p.capacity,
            p.perf,
            sm.output.csv,
            sm.output.json,
            sm.input.data,
            provenance.of_job(sm),
        )


def failed(sm, failure):
    w = sm.wildcards
    capacity.write_failure(
        failure, w.model, w.format, w.device, sm.params.capacity, sm.output.csv, sm.output.json
    )


job.run(snakemake, main, failed)
