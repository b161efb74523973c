from deploysnake import job, tuning
from deploysnake.contracts import Target


def main(sm):
    w, i = sm.wildcards, sm.input
    tuning.run_trial(
        Target.of(w),
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
