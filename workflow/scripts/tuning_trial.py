from deploysnake import job, tuning


def main(sm):
    w, i = sm.wildcards, sm.input
    tuning.run_trial(
        w.model,
        w.format,
        w.device,
        i.artifact,
        i.io,
        sm.params.triton,
        sm.params.flavour,
        sm.params.perf,
        sm.params.settings,
        w.trial,
        sm.output[0],
        i.data,
        sm.log.server,
    )


job.run(snakemake, main)
