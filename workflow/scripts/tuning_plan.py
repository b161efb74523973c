from deploysnake import job, tuning


def main(sm):
    w = sm.wildcards
    tuning.plan_round(
        sm.params.settings,
        sm.params.triton,
        w.device,
        int(w.round),
        list(sm.input.earlier),
        sm.output[0],
        w.format,
    )


job.run(snakemake, main)
