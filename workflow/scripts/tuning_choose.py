from deploysnake import job, tuning


def main(sm):
    side = list(sm.input.side)
    tuning.choose(
        sm.params.settings,
        sm.params.triton,
        sm.wildcards.model,
        sm.wildcards.device,
        list(sm.input.plans),
        list(sm.input.trials),
        sm.output.chosen,
        sm.output.trials,
        sm.input.io,
        side[0] if side else None,
        sm.wildcards.format,
    )


job.run(snakemake, main)
