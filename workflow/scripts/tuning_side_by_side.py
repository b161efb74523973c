from deploysnake import job, tuning
from deploysnake.contracts import Target


def main(sm):
    w, i, p = sm.wildcards, sm.input, sm.params
    trials = tuning.shortlist(p.settings, p.triton, w.device, list(i.trials), w.format)
    rounds = p.settings["side_by_side_rounds"]
    tuning.side_by_side(
        Target.of(w),
        i.artifact,
        i.io,
        p.triton,
        p.flavour,
        p.perf,
        p.settings,
        trials,
        rounds,
        sm.output[0],
        i.data,
        sm.log.server,
    )


job.run(snakemake, main)
